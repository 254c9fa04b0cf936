"""Shared state of one CLI invocation: settings, registry and store, built on first use."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from strategy_manager.cli.output import color_enabled, emit_json
from strategy_manager.core.errors import StoreError

if TYPE_CHECKING:
    from strategy_manager.core.registry import EngineRegistry
    from strategy_manager.core.settings import LoadedSettings
    from strategy_manager.core.store import Store


class NoStore(StoreError):
    """A read-only command found no store: it never creates one."""


class App:
    def __init__(self, config_dir: str | None, debug: bool, quiet: bool = False) -> None:
        self.config_dir = config_dir
        self.debug = debug
        self.quiet = quiet
        self.color = color_enabled()
        self._store: Store | None = None

    @functools.cached_property
    def loaded(self) -> LoadedSettings:
        from strategy_manager.core.settings import load_settings

        return load_settings(self.config_dir)

    @property
    def settings(self) -> Any:
        return self.loaded.settings

    @functools.cached_property
    def registry(self) -> EngineRegistry:
        from strategy_manager.core.registry import EngineRegistry

        return EngineRegistry.from_entry_points(self.settings)

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

__all__ = ["App", "NoStore", "emit_json", "pass_app", "quiet_option"]
