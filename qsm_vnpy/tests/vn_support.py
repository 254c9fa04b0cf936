"""Helpers and fixtures for the vnpy adapter's tests: fixed minute-bar files, vnpy's own
BacktestingEngine run on them (the oracle), and a driver calling the plugin's hooks
as the core does.

Two files: ``bars_csv`` (25 days without opening gaps, for DoubleMaStrategy) and
``gapped_csv`` (35 days, each day opening away from the last close), on which the
strategies that exit through stop orders, AtrRsiStrategy and TurtleSignalStrategy,
trade hundreds of times over 6,000 replayed bars.

No ``__init__.py`` here and every test module is named ``test_vn_*`` so that these
tests never clash with the root ``tests`` package (nor this module with
qsm_backtrader's conftest: both folders are on sys.path). vnpy is imported only after
``home.prepare`` has given it a folder under pytest's temporary directory.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass, field
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
GAPPED_DAYS = 35  # 8,400 bars: ten days of history, then 25 sessions = 6,000 bars replayed
GAPPED_REPLAYED = 6000
SESSION_BARS = 240
#: Test modules whose strategy and gateway classes documents may name.
TEST_MODULES = ("test_vn_working_orders", "test_vn_live_orders")
#: Strategies that exit (AtrRsi) or trade only (Turtle) through stop orders.
STOP_STRATEGIES = {
    "atr_rsi": "vnpy_ctastrategy.strategies.atr_rsi_strategy.AtrRsiStrategy",
    "turtle": "vnpy_ctastrategy.strategies.turtle_signal_strategy.TurtleSignalStrategy",
}


def trades(snapshot: dict[str, Any]) -> list[tuple[Any, ...]]:
    """A snapshot's trades as the facts compared with the oracle."""
    return [
        (t["direction"], t["offset"], t["price"], t["volume"], t["datetime"])
        for t in snapshot["gateway"]["trades"]
    ]


def document(
    key: str,
    csv_path: Path,
    engine_class: str = DOUBLE_MA,
    params: dict[str, Any] | None = None,
    **replay: Any,
) -> dict[str, Any]:
    return {
        "user_id": "u",
        "symbol": "002050.SZ",
        "strategy_key": key,
        "engine": "vnpy",
        "engine_class": engine_class,
        "params": {
            **(PARAMS if params is None else params),
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
def gapped_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_csv(tmp_path_factory.mktemp("gapped") / "bars.csv", GAPPED_DAYS, SEED, overnight_gap=0.01)


@dataclass
class Backtest:
    """What vnpy's BacktestingEngine did on a file: its trades as :func:`trades` gives
    ours, and per bar what was working after the bar's crossing."""

    trades: list[tuple[Any, ...]]
    #: How many trades came from stop orders.
    stop_trades: int
    #: Bar time (ISO) -> (stop orders, limit orders, pos) after that bar's crossing,
    #: what a snapshot taken at the boundary after that bar holds.
    working: dict[str, tuple[int, int, float]] = field(default_factory=dict)


def backtest(csv_path: Path, strategy_class: type, params: dict[str, Any], begin: str = START) -> Backtest:
    """``strategy_class`` in vnpy's BacktestingEngine, bar mode, from ``begin`` to the end."""
    from vnpy.trader.constant import Exchange, Interval
    from vnpy.trader.object import BarData
    from vnpy_ctastrategy.backtesting import BacktestingEngine

    bars = []
    with csv_path.open() as handle:
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
    start = datetime.fromisoformat(begin).replace(tzinfo=ZONE)
    working: dict[str, tuple[int, int, float]] = {}

    class Recording(BacktestingEngine):  # type: ignore[misc]
        def cross_stop_order(self) -> None:
            super().cross_stop_order()
            working[self.bar.datetime.isoformat()] = (
                len(self.active_stop_orders),
                len(self.active_limit_orders),
                float(self.strategy.pos),
            )

    engine = Recording()
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
    engine.add_strategy(strategy_class, dict(params))
    engine.history_data = [b for b in bars if b.datetime >= start]
    # load_bar(days) reads the days before the start; vnpy would read them from its database
    engine.load_bar = lambda vt_symbol, days, interval, callback, use_database: [  # type: ignore[method-assign]
        b for b in bars if start - timedelta(days=days) <= b.datetime < start
    ]
    engine.run_backtesting()
    from_stops = {vt_orderid for stop in engine.stop_orders.values() for vt_orderid in stop.vt_orderids}
    result = [
        (t.direction.name, t.offset.name, t.price, t.volume, t.datetime.isoformat())
        for t in engine.get_all_trades()
    ]
    stop_trades = sum(t.vt_orderid in from_stops for t in engine.get_all_trades())
    return Backtest(result, stop_trades, working)


def session_end_with_a_stop_working(oracle: Backtest) -> tuple[int, str]:
    """The first session's last bar after which a stop order is working and the
    strategy holds a position: (bars played, bar time)."""
    times = sorted(oracle.working)
    for played in range(SESSION_BARS, len(times) - SESSION_BARS, SESSION_BARS):
        stops, _, pos = oracle.working[times[played - 1]]
        if stops and pos:
            return played, times[played - 1]
    raise AssertionError("no session ends with a stop order working and a position")


def load(dotted: str) -> type:
    module, _, name = dotted.rpartition(".")
    return getattr(__import__(module, fromlist=[name]), name)  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def oracle(bars_csv: Path, vnpy_home: Path) -> list[tuple[Any, ...]]:
    """DoubleMaStrategy in vnpy's BacktestingEngine, bar mode, on the same bars."""
    result = backtest(bars_csv, load(DOUBLE_MA), PARAMS).trades
    assert len(result) > 100
    return result


@pytest.fixture(scope="session")
def stop_oracles(gapped_csv: Path, vnpy_home: Path) -> dict[str, Backtest]:
    """AtrRsiStrategy and TurtleSignalStrategy (default parameters) in the backtester."""
    return {name: backtest(gapped_csv, load(dotted), {}) for name, dotted in STOP_STRATEGIES.items()}


class Driver(HookDriver):
    """The vnpy plugin's hooks, called as the core's worker does, on the fixed bar file."""

    def __init__(self, tmp_path: Path, csv_path: Path) -> None:
        super().__init__(plugin, tmp_path / "engines" / "vnpy", [*TEST_MODULES, "vn_fake_gateway"])
        self.csv = csv_path

    def spec(
        self,
        key: str = "k",
        vnpy: dict[str, Any] | None = None,
        engine_class: str = DOUBLE_MA,
        params: dict[str, Any] | None = None,
        **replay: Any,
    ) -> StrategySpec:
        doc = document(key, self.csv, engine_class, params, **replay)
        doc["params"]["vnpy"].update(vnpy or {})
        return parse_strategy(doc)

    def hold_at(
        self, bars: int, snapshot: dict[str, Any] | None = None, **spec: Any
    ) -> tuple[Any, EngineContext]:
        engine, context = self.start(self.spec(hold_after_bars=bars, **spec), snapshot)
        assert engine.stream.holding.wait(60), f"replay never reached bar {bars}"
        return engine, context


@pytest.fixture
def driver(tmp_path: Path, bars_csv: Path) -> Iterator[Driver]:
    d = Driver(tmp_path, bars_csv)
    yield d
    d.close()


@pytest.fixture
def gapped_driver(tmp_path: Path, gapped_csv: Path) -> Iterator[Driver]:
    d = Driver(tmp_path, gapped_csv)
    yield d
    d.close()
