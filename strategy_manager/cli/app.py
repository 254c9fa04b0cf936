"""Shared state of one CLI invocation: settings, registry and store, built on first use."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from strategy_manager.core.registry import EngineRegistry
    from strategy_manager.core.settings import LoadedSettings
    from strategy_manager.core.store import Store


class App:
    def __init__(self, config_dir: str | None, debug: bool) -> None:
        self.config_dir = config_dir
        self.debug = debug
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

    def store(self) -> Store:
        if self._store is None:
            from strategy_manager.core.store import open_store

            self._store = open_store(self.settings)
        return self._store


pass_app = click.make_pass_decorator(App)


def emit_json(data: Any) -> None:
    import json

    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str, ensure_ascii=False))
