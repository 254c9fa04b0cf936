"""A store shared per account: the strategies of an account take their feeds from one
store, made once (one connection) when the first of them starts and stopped when the
session closes."""

from __future__ import annotations

import time
from typing import Any

import pytest

from qsm_backtrader import plugin
from qsm_backtrader.examples.prices import GeneratedFeed
from strategy_manager.core.context import Account, EngineContext
from strategy_manager.core.errors import InvalidStrategy
from strategy_manager.core.orchestrator import MultiStrategyOrchestrator
from strategy_manager.core.settings import Settings
from strategy_manager.core.spec import parse_strategy
from strategy_manager.core.store import open_store
from strategy_manager.testing import wait_for_snapshot


class CountingStore:
    """A live store as far as the adapter can tell: it connects once when it is made,
    and each ``getdata`` is a feed on that connection."""

    connects = 0
    stops = 0
    feeds: list[str] = []
    made_with: list[dict[str, Any]] = []

    def __init__(self, host: str = "", clientId: int = 0, account: str | None = None) -> None:
        CountingStore.connects += 1
        CountingStore.made_with.append({"host": host, "clientId": clientId, "account": account})

    def getdata(self, dataname: str, bars: int = 200, seed: int = 7) -> Any:
        CountingStore.feeds.append(dataname)
        return GeneratedFeed(bars=bars, seed=seed)

    def stop(self) -> None:
        CountingStore.stops += 1


class NoGetdata:
    def __init__(self, **kwargs: Any) -> None: ...


@pytest.fixture(autouse=True)
def fresh_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(CountingStore, "connects", 0)
    monkeypatch.setattr(CountingStore, "stops", 0)
    monkeypatch.setattr(CountingStore, "feeds", [])
    monkeypatch.setattr(CountingStore, "made_with", [])


ACCOUNT = {
    "engine": "backtrader",
    "store": {"factory": "test_bt_accounts:CountingStore", "kwargs": {"host": "gw.example", "clientId": 7}},
}


def document(symbol: str, seed: int, account: str | None = "ibkr") -> dict[str, Any]:
    doc = {
        "user_id": "u",
        "symbol": symbol,
        "strategy_key": "sma",
        "engine": "backtrader",
        "engine_class": "backtrader.strategies.SMA_CrossOver",
        "params": {
            "fast": 5,
            "slow": 15,
            "backtrader": {"feed": {"store": {"dataname": symbol, "seed": seed}}},
        },
        "schedule": {"mode": "always"},
    }
    if account is not None:
        doc["account"] = account
    return doc


def test_the_strategies_of_an_account_share_one_store_and_its_one_connection(tmp_path):
    settings = Settings(
        data_dir=str(tmp_path / "data"),
        poll_interval=0.1,
        snapshot_interval=3600,
        engine_class_allow=("test_bt_accounts",),
        accounts={"ibkr": ACCOUNT},
    )
    store = open_store(settings)
    symbols = {"AAPL": 1, "MSFT": 2, "NVDA": 3}
    for symbol, seed in symbols.items():
        store.upsert_strategy(document(symbol, seed))
    orchestrator = MultiStrategyOrchestrator(settings, store)
    orchestrator.start()
    try:
        finals = {s: wait_for_snapshot(store, f"u:{s}:sma", lambda st: st["bars"] == 200) for s in symbols}
        deadline = time.monotonic() + 30
        while orchestrator.accounts.entries["ibkr"].users and time.monotonic() < deadline:
            time.sleep(0.05)  # every strategy finished its 200 bars and stopped
        stops_before_shutdown = CountingStore.stops
    finally:
        orchestrator.stop()
    assert CountingStore.connects == 1
    assert CountingStore.made_with == [{"host": "gw.example", "clientId": 7, "account": "ibkr"}]
    assert sorted(CountingStore.feeds) == sorted(symbols)
    assert stops_before_shutdown == 0  # the grace period keeps it open after the last strategy
    assert CountingStore.stops == 1  # closed once, at shutdown
    assert all(final.state["bars"] == 200 for final in finals.values())


def test_a_store_feed_needs_an_account_with_a_store(tmp_path):
    spec = parse_strategy(document("AAPL", 1, account=None))
    context = EngineContext(spec=spec, data_dir=tmp_path / "k")
    with pytest.raises(
        InvalidStrategy, match=r"feed\.store takes its bars from the shared store of the strategy's"
    ):
        plugin.qsm_validate_engine(spec=spec, context=context)


def test_a_store_class_without_getdata_is_refused(tmp_path):
    from strategy_manager.core.classloader import ClassLoader

    spec = parse_strategy(document("AAPL", 1))
    account = Account("ibkr", "backtrader", {"store": {"factory": "test_bt_accounts:NoGetdata"}})
    context = EngineContext(
        spec=spec, data_dir=tmp_path / "k", classes=ClassLoader((), ["test_bt_accounts"]), account=account
    )
    with pytest.raises(
        InvalidStrategy, match=r"account ibkr: accounts\.ibkr\.store\.factory NoGetdata has no getdata"
    ):
        plugin.qsm_validate_engine(spec=spec, context=context)
