"""Helpers and fixtures for the vnpy adapter's tests: a fixed minute-bar file, vnpy's own
BacktestingEngine run on it (the oracle), and a driver calling the plugin's hooks
as the core does.

No ``__init__.py`` here and every test module is named ``test_vn_*`` so that these
tests never clash with the root ``tests`` package (nor this module with
qsm_backtrader's conftest: both folders are on sys.path). vnpy is imported only after
``home.prepare`` has given it a folder under pytest's temporary directory.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from qsm_vnpy import home, plugin
from qsm_vnpy.examples.minute_bars import write_csv
from strategy_manager.core.context import EngineContext
from strategy_manager.core.spec import StrategySpec, parse_strategy
from strategy_manager.testing import HookDriver

DAYS = 25  # 6,000 bars; the first ten days are history, 3,600 bars are replayed
SEED = 3
START = "2026-09-15T09:30:00"
REPLAYED = 3600
DOUBLE_MA = "vnpy_ctastrategy.strategies.double_ma_strategy.DoubleMaStrategy"
PARAMS = {"fast_window": 10, "slow_window": 20}
ZONE = ZoneInfo("Asia/Shanghai")


def trades(snapshot: dict[str, Any]) -> list[tuple[Any, ...]]:
    """A snapshot's trades as the facts compared with the oracle."""
    return [
        (t["direction"], t["offset"], t["price"], t["volume"], t["datetime"])
        for t in snapshot["gateway"]["trades"]
    ]


def document(key: str, csv_path: Path, **replay: Any) -> dict[str, Any]:
    return {
        "user_id": "u",
        "symbol": "002050.SZ",
        "strategy_key": key,
        "engine": "vnpy",
        "engine_class": DOUBLE_MA,
        "params": {
            **PARAMS,
            "vnpy": {
                "gateway": {"name": "REPLAY", "setting": {"csv": str(csv_path), "start": START, **replay}}
            },
        },
        "schedule": {"mode": "always"},
    }


@pytest.fixture(scope="session", autouse=True)
def vnpy_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return home.prepare(tmp_path_factory.mktemp("vnpy-engines"))


@pytest.fixture(scope="session")
def bars_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_csv(tmp_path_factory.mktemp("bars") / "bars.csv", DAYS, SEED)


@pytest.fixture(scope="session")
def oracle(bars_csv: Path, vnpy_home: Path) -> list[tuple[Any, ...]]:
    """DoubleMaStrategy in vnpy's BacktestingEngine, bar mode, on the same bars."""
    from vnpy.trader.constant import Exchange, Interval
    from vnpy.trader.object import BarData
    from vnpy_ctastrategy.backtesting import BacktestingEngine
    from vnpy_ctastrategy.strategies.double_ma_strategy import DoubleMaStrategy

    bars = []
    with bars_csv.open() as handle:
        for row in csv.DictReader(handle):
            bars.append(
                BarData(
                    symbol="002050",
                    exchange=Exchange.SZSE,
                    interval=Interval.MINUTE,
                    gateway_name="BACKTESTING",
                    datetime=datetime.fromisoformat(row["datetime"]).replace(tzinfo=ZONE),
                    open_price=float(row["open"]),
                    high_price=float(row["high"]),
                    low_price=float(row["low"]),
                    close_price=float(row["close"]),
                    volume=float(row["volume"]),
                )
            )
    start = datetime.fromisoformat(START).replace(tzinfo=ZONE)
    engine = BacktestingEngine()
    engine.output = lambda msg: None
    engine.set_parameters(
        vt_symbol="002050.SZSE",
        interval=Interval.MINUTE,
        start=start,
        end=bars[-1].datetime,
        rate=0,
        slippage=0,
        size=1,
        pricetick=0.01,
        capital=1_000_000,
    )
    engine.add_strategy(DoubleMaStrategy, dict(PARAMS))
    engine.history_data = [b for b in bars if b.datetime >= start]
    # load_bar(days) reads the days before the start; vnpy would read them from its database
    engine.load_bar = lambda vt_symbol, days, interval, callback, use_database: [  # type: ignore[method-assign]
        b for b in bars if start - timedelta(days=days) <= b.datetime < start
    ]
    engine.run_backtesting()
    result = [
        (t.direction.name, t.offset.name, t.price, t.volume, t.datetime.isoformat())
        for t in engine.get_all_trades()
    ]
    assert len(engine.history_data) == REPLAYED and len(result) > 100
    return result


class Driver(HookDriver):
    """The vnpy plugin's hooks, called as the core's worker does, on the fixed bar file."""

    def __init__(self, tmp_path: Path, csv_path: Path) -> None:
        super().__init__(plugin, tmp_path / "engines" / "vnpy", ["vn_fake_gateway"])
        self.csv = csv_path

    def spec(self, key: str = "k", vnpy: dict[str, Any] | None = None, **replay: Any) -> StrategySpec:
        doc = document(key, self.csv, **replay)
        doc["params"]["vnpy"].update(vnpy or {})
        return parse_strategy(doc)

    def hold_at(self, bars: int, snapshot: dict[str, Any] | None = None) -> tuple[Any, EngineContext]:
        engine, context = self.start(self.spec(hold_after_bars=bars), snapshot)
        assert engine.gateway.holding.wait(60), f"replay never reached bar {bars}"
        return engine, context


@pytest.fixture
def driver(tmp_path: Path, bars_csv: Path) -> Iterator[Driver]:
    d = Driver(tmp_path, bars_csv)
    yield d
    d.close()
