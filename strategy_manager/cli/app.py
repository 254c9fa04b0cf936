"""Shared state of one CLI invocation: settings, registry and store, built on first use;
and the guard that keeps secrets out of everything the CLI prints."""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from strategy_manager.cli.output import color_enabled, emit_json
from strategy_manager.core.errors import QsmError, StoreError
from strategy_manager.core.masking import RedactingFilter, Redactor

if TYPE_CHECKING:
    from strategy_manager.core.registry import EngineRegistry
    from strategy_manager.core.settings import LoadedSettings
    from strategy_manager.core.store import Store


class RedactingStream(io.TextIOBase):
    """A text stream that passes everything written through the current redactor."""

    def __init__(self, stream: Any, redactor: Callable[[], Redactor]) -> None:
        self.stream = stream
        self._redactor = redactor

    def write(self, text: str | bytes) -> int:  # type: ignore[override]
        if isinstance(text, bytes):  # click writes bytes (shell completion, echo of bytes)
            encoding = self.encoding
            masked = self._redactor().text(text.decode(encoding, "replace")).encode(encoding, "replace")
            target = getattr(self.stream, "buffer", None)
            if target is not None:
                self.stream.flush()
                target.write(masked)
            else:
                self.stream.write(masked.decode(encoding, "replace"))
            return len(text)
        self.stream.write(self._redactor().text(text))
        return len(text)

    @property
    def buffer(self) -> RedactingStream:
        """Binary writes go through the same masking (click looks for ``buffer``)."""
        return self

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

    def log_filter(self) -> logging.Filter:
        """A filter that masks log records as this guard masks output (for a log file)."""
        guard = self

        class Masking(logging.Filter):
            def filter(self, record: logging.LogRecord) -> bool:
                return RedactingFilter(guard.redactor).filter(record)

        return Masking()


class _GuardedStream(RedactingStream):
    def __init__(self, stream: Any, guard: OutputGuard) -> None:
        super().__init__(stream, lambda: guard.redactor)
        self.guard = guard


class NoStore(StoreError):
    """A read-only command found no store: it never creates one."""


class App:
    def __init__(
        self, config_dir: str | None, debug: bool, quiet: bool = False, guard: OutputGuard | None = None
    ) -> None:
        self.config_dir = config_dir
        self.debug = debug
        self.quiet = quiet
        self.guard = guard
        self.color = color_enabled()
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

    def store_exists(self) -> bool:
        """False only for an embedded store whose file is not there yet."""
        return bool(self.settings.mongo_uri) or Path(self.settings.embedded_path).is_file()

    def store(self, create: bool = False) -> Store:
        """The configured store. Only commands that write documents or run pass
        ``create=True``; the others say there is no store rather than make one."""
        if self._store is None:
            if not create and not self.store_exists():
                raise NoStore(
                    f"no store at {self.settings.embedded_path}: nothing was imported or run with "
                    f"this configuration (see 'strategy-manager config')"
                )
            from strategy_manager.core.store import open_store

            self._store = open_store(self.settings)
        return self._store


pass_app = click.make_pass_decorator(App)


def _quiet(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    app = ctx.find_object(App)
    if value and app is not None:
        app.quiet = True
    return value


#: ``-q`` after the command too (``strategies import big.json -q``), as before it.
quiet_option = click.option(
    "-q",
    "--quiet",
    is_flag=True,
    expose_value=False,
    callback=_quiet,
    help="No progress bar, events or summary line; errors still show.",
)

__all__ = ["App", "NoStore", "OutputGuard", "emit_json", "pass_app", "quiet_option"]
