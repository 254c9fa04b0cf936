"""Fixtures for the backtrader adapter's tests: a fixed price file, a plain-cerebro
reference run, and a driver calling the plugin's hooks as the core does.

No ``__init__.py`` here and every test module is named ``test_bt_*`` so that these
tests never clash with the root ``tests`` package.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import backtrader as bt
import pytest

from qsm_backtrader import plugin
from qsm_backtrader.examples.prices import write_csv
from strategy_manager.core.context import EngineContext
from strategy_manager.core.spec import StrategySpec, parse_strategy
from strategy_manager.testing import HookDriver

BARS = 3000
SEED = 11
SMA = "backtrader.strategies.SMA_CrossOver"
COOLDOWN = "qsm_backtrader.examples.cooldown.SmaCrossCooldown"
STAKE = 10
COMMISSION = 0.001
CASH = 10000.0
TERMINAL = ("Completed", "Canceled", "Expired", "Margin", "Rejected")


def order_key(order: Any) -> tuple[Any, ...]:
    """A backtrader order, as the facts we compare (refs differ between runs)."""
    iso = lambda num: bt.num2date(num).isoformat() if num else None  # noqa: E731
    return (
        "buy" if order.isbuy() else "sell",
        order.getstatusname(),
        iso(order.created.dt),
        order.created.size,
        order.created.price,
        iso(order.executed.dt),
        order.executed.size,
        order.executed.price,
        order.executed.value,
        order.executed.comm,
        order.executed.pnl,
    )


def record_key(rec: dict[str, Any]) -> tuple[Any, ...]:
    """An order record from a snapshot's history, as the same facts."""
    names = ("side", "status", "created", "size", "price", "executed", "executed_size",
             "executed_price", "value", "comm", "pnl")
    return tuple(rec[n] for n in names)


def plain_run(csv: Path, strategy: str, params: dict[str, Any]) -> dict[str, Any]:
    """The oracle: backtrader by itself, as a user would write it."""
    module, _, name = strategy.rpartition(".")
    cls = getattr(__import__(module, fromlist=[name]), name)
    cerebro = bt.Cerebro()
    cerebro.adddata(bt.feeds.GenericCSVData(dataname=str(csv), dtformat="%Y-%m-%d", openinterest=-1), name="SYM")
    cerebro.addstrategy(cls, **params)
    cerebro.addsizer(bt.sizers.FixedSize, stake=STAKE)
    cerebro.broker.setcash(CASH)
    cerebro.broker.setcommission(commission=COMMISSION)
    strat = cerebro.run()[0]
    orders = cerebro.broker.orders
    return {
        "value": cerebro.broker.getvalue(),
        "cash": cerebro.broker.getcash(),
        "finished": sorted(order_key(o) for o in orders if o.getstatusname() in TERMINAL),
        "open": sum(1 for o in orders if o.alive()),
        "orders": orders,
        "strategy": strat,
        "dates": [bt.num2date(x).date().isoformat() for x in strat.data.datetime.array],
    }


def finished(snapshot: dict[str, Any]) -> list[tuple[Any, ...]]:
    return sorted(record_key(r) for r in snapshot["history"])


def assert_same_as_oracle_json(final: dict[str, Any], oracle: dict[str, Any]) -> None:
    """A final snapshot against the plain run: value, cash, every order, exactly."""
    assert final["bars"] == BARS
    assert final["broker"]["value"] == oracle["value"]
    assert final["broker"]["cash"] == oracle["cash"]
    assert finished(final) == oracle["finished"]
    assert len(final["submitted"]) + len(final["pending"]) == oracle["open"]


class Driver(HookDriver):
    """The backtrader plugin's hooks, called as the core's worker does, on the fixed price file."""

    def __init__(self, tmp_path: Path, csv: Path) -> None:
        super().__init__(plugin, tmp_path / "engines", ["test_bt_oracle", "test_bt_hooks"])
        self.csv = csv

    def spec(
        self,
        engine_class: str = SMA,
        params: dict[str, Any] | None = None,
        feed: dict[str, Any] | None = None,
        **settings: Any,
    ) -> StrategySpec:
        adapter = {
            # a None in ``feed`` removes that key (``{"csv": None}`` for another source)
            "feed": {k: v for k, v in {"csv": str(self.csv), **(feed or {})}.items() if v is not None},
            "cash": CASH,
            "commission": {"commission": COMMISSION},
            "sizer": {"factory": "backtrader.sizers:FixedSize", "kwargs": {"stake": STAKE}},
            **settings,
        }
        return parse_strategy({
            "user_id": "u", "symbol": "SYM", "strategy_key": "k", "engine": "backtrader",
            "engine_class": engine_class,
            "params": {"fast": 10, "slow": 30, **(params or {}), "backtrader": adapter},
        })

    def hold_at(self, bars: int, spec_or_none: StrategySpec | None = None,
                snapshot: dict[str, Any] | None = None, **spec_kw: Any) -> tuple[Any, EngineContext]:
        spec = spec_or_none or self.spec(feed={"hold_after_bars": bars}, **spec_kw)
        engine, context = self.start(spec, snapshot)
        assert engine.holding.wait(60), f"engine never reached bar {bars}"
        return engine, context


@pytest.fixture(scope="session")
def prices_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_csv(tmp_path_factory.mktemp("prices") / "prices.csv", BARS, SEED)


@pytest.fixture(scope="session")
def sma_oracle(prices_csv: Path) -> dict[str, Any]:
    return plain_run(prices_csv, SMA, {"fast": 10, "slow": 30})


@pytest.fixture
def driver(tmp_path: Path, prices_csv: Path) -> Iterator[Driver]:
    d = Driver(tmp_path, prices_csv)
    yield d
    d.close()
