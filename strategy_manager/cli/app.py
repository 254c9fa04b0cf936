"""Shared state of one CLI invocation: settings, registry and store, built on first use;
and the guard that keeps secrets out of everything the CLI prints."""

from __future__ import annotations

import contextlib
import functools
import io
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from strategy_manager.core.errors import QsmError
from strategy_manager.core.masking import Redactor

if TYPE_CHECKING:
    from strategy_manager.core.registry import EngineRegistry
    from strategy_manager.core.settings import LoadedSettings
    from strategy_manager.core.store import Store


class RedactingStream(io.TextIOBase):
    """A text stream that passes everything written through the current redactor."""

    def __init__(self, stream: Any, redactor: Callable[[], Redactor]) -> None:
        self.stream = stream
        self._redactor = redactor

    def write(self, text: str) -> int:
        self.stream.write(self._redactor().text(text))
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return bool(self.stream.isatty())

    def fileno(self) -> int:
        return int(self.stream.fileno())

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return str(getattr(self.stream, "encoding", "utf-8"))

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self.stream, "errors", None)


class OutputGuard:
    """Wraps stdout and stderr so that no secret the settings hold is ever printed,
    whatever prints it (a command, a log record, an error, a ``--debug`` traceback).

    Until the settings are loaded it masks URIs' credentials only; :meth:`learn`
    gives it the secrets of the loaded settings.
    """

    def __init__(self) -> None:
        self.redactor = Redactor()
        self._saved: tuple[Any, Any] | None = None

    @classmethod
    def current(cls) -> OutputGuard | None:
        stream = sys.stdout
        return stream.guard if isinstance(stream, _GuardedStream) else None

    def install(self) -> None:
        self._saved = (sys.stdout, sys.stderr)
        sys.stdout = _GuardedStream(sys.stdout, self)
        sys.stderr = _GuardedStream(sys.stderr, self)

    def uninstall(self) -> None:
        if self._saved is not None:
            sys.stdout, sys.stderr = self._saved
            self._saved = None

    def learn(self, settings: Any, registry: EngineRegistry | None) -> None:
        declared = registry.secret_options() if registry is not None else {}
        self.redactor = Redactor.for_settings(settings, declared)


class _GuardedStream(RedactingStream):
    def __init__(self, stream: Any, guard: OutputGuard) -> None:
        super().__init__(stream, lambda: guard.redactor)
        self.guard = guard


class App:
    def __init__(self, config_dir: str | None, debug: bool, guard: OutputGuard | None = None) -> None:
        self.config_dir = config_dir
        self.debug = debug
        self.guard = guard
        self._store: Store | None = None

    @functools.cached_property
    def loaded(self) -> LoadedSettings:
        from strategy_manager.core.settings import load_settings

        loaded = load_settings(self.config_dir)
        if self.guard is not None:
            self.guard.learn(loaded.settings, None)  # at once, then with the engines' declarations
            with contextlib.suppress(QsmError):
                self.guard.learn(loaded.settings, self._registry(loaded.settings))
        return loaded

    @property
    def settings(self) -> Any:
        return self.loaded.settings

    @functools.cached_property
    def registry(self) -> EngineRegistry:
        return self._registry(self.settings)

    def _registry(self, settings: Any) -> EngineRegistry:
        from strategy_manager.core.registry import EngineRegistry

        registry = self.__dict__.get("registry")
        if registry is None:
            registry = self.__dict__["registry"] = EngineRegistry.from_entry_points(settings)
        return registry

    def store(self) -> Store:
        if self._store is None:
            from strategy_manager.core.store import open_store

            self._store = open_store(self.settings)
        return self._store


pass_app = click.make_pass_decorator(App)


def emit_json(data: Any) -> None:
    import json

    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str, ensure_ascii=False))
