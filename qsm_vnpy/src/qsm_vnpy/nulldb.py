"""A database for vnpy when its configured driver (``vnpy_sqlite`` by default) is not
installed: it holds no data, so ``load_bar`` falls back to what the gateway serves."""

from __future__ import annotations

from typing import Any

from vnpy.trader.database import BaseDatabase


class NullDatabase(BaseDatabase):
    def __init__(self) -> None:
        pass

    def save_bar_data(self, bars: Any, stream: bool = False) -> bool:
        raise RuntimeError("no vnpy database driver is installed (set engine_options.vnpy.settings)")

    def save_tick_data(self, ticks: Any, stream: bool = False) -> bool:
        return self.save_bar_data(ticks, stream)

    def load_bar_data(self, *args: Any, **kwargs: Any) -> list[Any]:
        return []

    def load_tick_data(self, *args: Any, **kwargs: Any) -> list[Any]:
        return []

    def delete_bar_data(self, *args: Any, **kwargs: Any) -> int:
        return 0

    def delete_tick_data(self, *args: Any, **kwargs: Any) -> int:
        return 0

    def get_bar_overview(self) -> list[Any]:
        return []

    def get_tick_overview(self) -> list[Any]:
        return []
