"""Accounts on vnpy: every CTA strategy of an account in one MainEngine and CtaEngine
on one gateway connection. Fifty strategies of mixed symbols on one replay account
connect once and each trades as vnpy's backtester, across a restart; two
DoubleMaStrategy instances on one symbol trade as two backtests; a position the
broker disagrees with halts that account and symbol only; an exception or a lowered
fence in one strategy leaves the others trading; documents on a live gateway share
the account the adapter derives."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from vn_support import DOUBLE_MA, START, backtest, load, trades

from qsm_vnpy import events, plugin
from qsm_vnpy.examples.minute_bars import write_csv
from qsm_vnpy.replay import ReplayGateway
from strategy_manager.core.context import Account, Member
from strategy_manager.core.errors import EngineHalted
from strategy_manager.core.orchestrator import MultiStrategyOrchestrator
from strategy_manager.core.settings import Settings
from strategy_manager.core.spec import parse_strategy
from strategy_manager.core.store import open_store
from strategy_manager.testing import wait_for_snapshot

SYMBOLS = {"002050.SZ": 3, "600000.SH": 5, "000001.SZ": 7, "rb2605.SHFE": 11, "IF2512.CFFEX": 13}
#: 12 days: ten of history, two replayed (480 bars), enough for DoubleMa to trade.
SHORT_DAYS = 12
SHORT_BARS = 480
PARAM_SETS = [{"fast_window": 10, "slow_window": 20}, {"fast_window": 5, "slow_window": 15}]


@pytest.fixture(scope="module")
def bars_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("account-bars")
    for symbol, seed in SYMBOLS.items():
        write_csv(folder / f"{symbol}.csv", SHORT_DAYS, seed)
    return folder


@pytest.fixture(scope="module")
def oracles(bars_dir: Path, vnpy_home: Path) -> dict[tuple[str, int], list[tuple[Any, ...]]]:
    """DoubleMaStrategy in vnpy's BacktestingEngine, per symbol and parameter set."""
    found = {}
    for symbol in SYMBOLS:
        for index, params in enumerate(PARAM_SETS):
            found[symbol, index] = backtest(bars_dir / f"{symbol}.csv", load(DOUBLE_MA), params).trades
            assert found[symbol, index], f"the test needs trades on {symbol}"
    return found


def account_doc(symbol: str, key: str, params: dict[str, Any], account: str = "paper", **stream: Any) -> dict:
    return {
        "user_id": "u",
        "symbol": symbol,
        "strategy_key": key,
        "engine": "vnpy",
        "engine_class": DOUBLE_MA,
        "account": account,
        "params": {**params, "vnpy": {"gateway": {"name": "REPLAY", "setting": {"start": START, **stream}}}},
        "schedule": {"mode": "always"},
    }


def settings_for(tmp_path: Path, csv: str, **account: Any) -> Settings:
    return Settings(
        data_dir=str(tmp_path / "data"),
        poll_interval=0.1,
        snapshot_interval=3600,
        backoff_base=0.05,
        backoff_cap=0.1,
        accounts={"paper": {"engine": "vnpy", "gateway": "REPLAY", "setting": {"csv": csv, **account}}},
    )


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every ReplayGateway connect in this process, by gateway name."""
    seen: list[str] = []
    original = ReplayGateway.connect

    def counted(self: ReplayGateway, setting: dict[str, Any]) -> None:
        seen.append(self.gateway_name)
        original(self, setting)

    monkeypatch.setattr(ReplayGateway, "connect", counted)
    return seen


def _states(orchestrator: MultiStrategyOrchestrator, ids: list[str], state: str) -> bool:
    return all(str(orchestrator.slots[s].state) == state for s in ids if s in orchestrator.slots) and all(
        s in orchestrator.slots for s in ids
    )


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_fifty_strategies_of_mixed_symbols_on_one_replay_account_connect_once_and_resume_exactly(
    tmp_path, bars_dir, oracles, connects
):
    settings = settings_for(tmp_path, str(bars_dir / "{symbol}.csv"))
    store = open_store(settings)
    which: dict[str, tuple[str, int]] = {}
    for n in range(50):
        symbol = list(SYMBOLS)[n % len(SYMBOLS)]
        index = (n // len(SYMBOLS)) % len(PARAM_SETS)
        key = f"dma{n}"
        store.upsert_strategy(account_doc(symbol, key, PARAM_SETS[index], hold_after_bars=200))
        which[f"u:{symbol}:{key}"] = (symbol, index)
    ids = sorted(which)

    first = MultiStrategyOrchestrator(settings, store)
    first.start()
    try:
        for sid in ids:
            _wait(lambda sid=sid: _held(first, sid), 120, f"{sid} at its 200th bar")
        sessions = {id(first.slots[s].worker.context.session) for s in ids}
        assert len(sessions) == 1 and None not in sessions
    finally:
        first.stop()
    assert connects == ["REPLAY"]  # fifty strategies, five symbols, one connection
    held = store.latest_snapshots(ids)
    for sid in ids:
        state = held[sid].state
        assert state["gateway"]["bars"] == 200
        assert trades(state) == [t for t in oracles[which[sid]] if t[4] <= state["gateway"]["last_bar"]]

    for sid in ids:  # no longer held: each plays to the end of its file
        symbol = which[sid][0]
        key = sid.rsplit(":", 1)[1]
        store.upsert_strategy(account_doc(symbol, key, PARAM_SETS[which[sid][1]]))
    second = MultiStrategyOrchestrator(settings, store)
    second.start()
    try:
        finals = {
            sid: wait_for_snapshot(store, sid, lambda s: s["gateway"]["bars"] == SHORT_BARS, 180)
            for sid in ids
        }
    finally:
        second.stop()
    assert connects == ["REPLAY", "REPLAY"]  # one more for the second orchestrator, not fifty
    for sid in ids:
        assert trades(finals[sid].state) == oracles[which[sid]], sid


def _held(orchestrator: MultiStrategyOrchestrator, sid: str) -> bool:
    slot = orchestrator.slots.get(sid)
    engine = slot.worker.engine if slot is not None and slot.worker is not None else None
    return engine is not None and engine.stream is not None and engine.stream.holding.is_set()


def test_two_double_ma_on_one_account_and_symbol_trade_as_two_separate_backtests(
    tmp_path, bars_csv, vnpy_home
):
    folder = tmp_path / "bars"
    folder.mkdir()
    (folder / "002050.SZ.csv").write_bytes(bars_csv.read_bytes())
    settings = settings_for(tmp_path, str(folder))
    store = open_store(settings)
    fast, slow = PARAM_SETS
    store.upsert_strategy(account_doc("002050.SZ", "fast", slow))
    store.upsert_strategy(account_doc("002050.SZ", "slow", fast))
    expected = {
        "u:002050.SZ:fast": backtest(bars_csv, load(DOUBLE_MA), slow).trades,
        "u:002050.SZ:slow": backtest(bars_csv, load(DOUBLE_MA), fast).trades,
    }
    assert expected["u:002050.SZ:fast"] != expected["u:002050.SZ:slow"]
    orchestrator = MultiStrategyOrchestrator(settings, store)
    orchestrator.start()
    try:
        finals = {
            sid: wait_for_snapshot(store, sid, lambda s: s["gateway"]["bars"] == 3600, 120)
            for sid in expected
        }
        _wait(lambda: _states(orchestrator, list(expected), "FINISHED"), 30, "both finished")
        gateway = orchestrator.accounts.entries["paper"].session.gateway  # open for the grace period
        paper = events.call_on_event_thread(
            gateway.event_engine, lambda: gateway.broker_position("002050.SZSE")
        )
    finally:
        orchestrator.stop()
    for sid, oracle in expected.items():
        assert trades(finals[sid].state) == oracle
    # one paper broker: its position is the sum of the two strategies'
    assert paper == sum(f.state["variables"]["pos"] for f in finals.values())


def test_a_mismatch_halts_that_account_and_symbol_only(tmp_path, bars_dir, oracles):
    settings = settings_for(tmp_path, str(bars_dir / "{symbol}.csv"))
    store = open_store(settings)
    halted = ["u:600000.SH:a", "u:600000.SH:b"]
    running = ["u:002050.SZ:a", "u:002050.SZ:b"]
    for sid in halted + running:
        _, symbol, key = sid.split(":")
        store.upsert_strategy(account_doc(symbol, key, PARAM_SETS[key == "b"], hold_after_bars=300))
    first = MultiStrategyOrchestrator(settings, store)
    first.start()
    try:
        for sid in halted + running:
            _wait(lambda sid=sid: _held(first, sid), 120, f"{sid} held")
    finally:
        first.stop()
    saved = {sid: store.latest_snapshot(sid).state for sid in halted}
    total = sum(s["variables"]["pos"] for s in saved.values())

    # the broker now says three more in 600000.SH than the two strategies hold together
    disagreeing = settings_for(tmp_path, str(bars_dir / "{symbol}.csv"), positions={"600000.SH": total + 3})
    events: list[tuple[str, str, str]] = []
    second = MultiStrategyOrchestrator(disagreeing, store, on_event=lambda *e: events.append(e))
    second.start()
    try:
        _wait(lambda: _states(second, halted, "FAILED"), 60, "600000.SH's strategies halted")
        # the other symbol's strategies resume and play to the end of their file
        ends = {
            sid: wait_for_snapshot(store, sid, lambda s: s["gateway"]["bars"] == SHORT_BARS, 60)
            for sid in running
        }
        second._flush_status()
        status = {r.strategy_id: r for r in store.read_status()}
    finally:
        second.stop()
    for sid in running:
        index = int(sid.endswith(":b"))
        assert trades(ends[sid].state) == oracles["002050.SZ", index]
    for sid in halted:
        error = status[sid].last_error
        assert status[sid].state == "FAILED"
        assert "position mismatch on 600000.SSE in account paper:" in error
        assert all(other in error for other in halted)  # which strategies
        # the numbers (the gateway's name, one of the account's settings, is masked in the store)
        assert re.search(rf"sum to {total:g}, gateway \S+ reports {total + 3:g};", error), error
        assert "keeps the 2 strategies of 600000.SSE in account paper stopped" in error
        assert store.latest_snapshot(sid).state == saved[sid]  # a halted strategy's snapshot stays
    assert [e for e in events if e[0] == "halted" and e[1] in running] == []
    assert {e[1] for e in events if e[0] == "halted"} == set(halted)
    assert not [e for e in events if e[0] == "error" and e[1] in halted]  # no restarts


def test_a_disabled_strategy_s_position_still_counts_in_the_check_of_its_account_and_symbol(
    tmp_path, bars_dir, oracles
):
    """Its position is still at the broker: a broker that holds both strategies'
    positions agrees with the one that resumes."""
    settings = settings_for(tmp_path, str(bars_dir / "{symbol}.csv"))
    store = open_store(settings)
    resumed, disabled = "u:600000.SH:a", "u:600000.SH:b"
    for sid in (resumed, disabled):
        store.upsert_strategy(
            account_doc("600000.SH", sid[-1], PARAM_SETS[sid == disabled], hold_after_bars=300)
        )
    first = MultiStrategyOrchestrator(settings, store)
    first.start()
    try:
        for sid in (resumed, disabled):
            _wait(lambda sid=sid: _held(first, sid), 120, f"{sid} held")
    finally:
        first.stop()
    saved = {sid: store.latest_snapshot(sid).state for sid in (resumed, disabled)}
    assert saved[disabled]["variables"]["pos"] != 0, "the test needs a position of the disabled one"
    store.upsert_strategy(account_doc("600000.SH", "a", PARAM_SETS[0]))  # no longer held
    store.update_strategy(disabled, {"enabled": False})

    both = sum(s["variables"]["pos"] for s in saved.values())
    broker = settings_for(tmp_path, str(bars_dir / "{symbol}.csv"), positions={"600000.SH": both})
    second = MultiStrategyOrchestrator(broker, store)
    second.start()
    try:
        end = wait_for_snapshot(store, resumed, lambda s: s["gateway"]["bars"] == SHORT_BARS, 60)
        assert str(second.slots[disabled].state) == "DISABLED"
    finally:
        second.stop()
    assert trades(end.state) == oracles["600000.SH", 0]
    assert store.latest_snapshot(disabled).state == saved[disabled]


# -- one session through the plugin's hooks, as the core drives them ----------------------
@pytest.fixture
def replay_account(tmp_path, bars_csv) -> Account:
    folder = tmp_path / "bars"
    folder.mkdir()
    (folder / "002050.SZ.csv").write_bytes(bars_csv.read_bytes())
    return Account("paper", "vnpy", {"gateway": "REPLAY", "setting": {"csv": str(folder)}})


def spec_on(account: Account, key: str, params: dict[str, Any], **stream: Any) -> Any:
    return parse_strategy(account_doc("002050.SZ", key, params, account=account.name, **stream))


def test_an_exception_in_one_strategy_stops_it_alone(driver, replay_account, oracle, monkeypatch):
    from vnpy_ctastrategy.strategies.double_ma_strategy import DoubleMaStrategy

    original = DoubleMaStrategy.on_bar
    seen = {"bars": 0}

    def on_bar(self, bar):
        if self.strategy_name.endswith(":boom") and self.trading:
            seen["bars"] += 1
            if seen["bars"] == 100:
                raise ZeroDivisionError("boom in on_bar")
        original(self, bar)

    monkeypatch.setattr(DoubleMaStrategy, "on_bar", on_bar)
    session = driver.open_session(replay_account)
    crashes = []
    boom, boom_context = driver.create(
        spec_on(replay_account, "boom", PARAM_SETS[0]), session=session, account=replay_account
    )
    boom_context.on_crash = crashes.append
    plugin.qsm_start_engine(engine=boom, context=boom_context)
    calm, calm_context = driver.start(
        spec_on(replay_account, "calm", PARAM_SETS[0]), session=session, account=replay_account
    )
    assert not calm_context.join_threads(120)
    final = driver.snapshot(calm, calm_context)
    assert len(crashes) == 1 and "on_tick raised ZeroDivisionError: boom in on_bar" in str(crashes[0])
    assert trades(final) == oracle and final["gateway"]["bars"] == 3600
    assert boom.cta is calm.cta and boom.gateway is calm.gateway  # one engine, one connection
    assert session.gateway.connects == 1


def test_a_lowered_fence_stops_the_orders_of_its_strategy_only(driver, replay_account, oracle):
    session = driver.open_session(replay_account)
    fenced, fenced_context = driver.create(
        spec_on(replay_account, "fenced", PARAM_SETS[0]), session=session, account=replay_account
    )
    fenced_context.fence = lambda: False
    plugin.qsm_start_engine(engine=fenced, context=fenced_context)
    free, free_context = driver.start(
        spec_on(replay_account, "free", PARAM_SETS[0]), session=session, account=replay_account
    )
    assert not free_context.join_threads(120) and not fenced_context.join_threads(120)
    assert trades(driver.snapshot(free, free_context)) == oracle
    nothing = driver.snapshot(fenced, fenced_context)
    assert (
        trades(nothing) == [] and nothing["variables"]["pos"] == 0 and nothing["gateway"]["order_count"] == 0
    )


def test_a_running_strategy_of_the_symbol_is_halted_with_the_one_whose_restore_disagrees(
    driver, replay_account, tmp_path
):
    alone = driver.start(
        spec_on(replay_account, "first", PARAM_SETS[0], hold_after_bars=600),
        session=driver.open_session(replay_account),
        account=replay_account,
    )
    assert alone[0].stream.holding.wait(60)
    mid = driver.stop(*alone)
    assert mid["variables"]["pos"] != 0, "the test needs a position at bar 600"

    told = Account(
        replay_account.name,
        "vnpy",
        {
            "gateway": "REPLAY",
            "setting": {
                **replay_account.settings["setting"],
                "positions": {"002050.SZ": mid["variables"]["pos"] + 5},
            },
        },
    )
    session = driver.open_session(told)
    halted = []
    fresh, fresh_context = driver.create(
        spec_on(told, "fresh", PARAM_SETS[1], hold_after_bars=10), session=session, account=told
    )
    fresh_context.on_crash = halted.append
    plugin.qsm_start_engine(engine=fresh, context=fresh_context)  # fresh: not checked
    engine, context = driver.create(
        spec_on(told, "first", PARAM_SETS[0], hold_after_bars=600),
        snapshot=mid,
        session=session,
        account=told,
    )
    with pytest.raises(EngineHalted) as caught:
        plugin.qsm_start_engine(engine=engine, context=context)
    assert "u:002050.SZ:first" in str(caught.value) and "u:002050.SZ:fresh 0 (running)" in str(caught.value)
    assert len(halted) == 1 and isinstance(halted[0], EngineHalted)
    # no order of the symbol passes any more in the account
    strategy = fresh.cta.strategies["u:002050.SZ:fresh"]
    assert events.call_on_event_thread(session.event_engine, lambda: strategy.buy(1000.0, 1)) == []


def test_a_strategy_that_left_the_session_counts_with_what_it_held_not_an_older_stored_snapshot(
    driver, replay_account
):
    """A start planned before another strategy of the symbol ran and left reads that
    one's stored snapshot from before: the check counts what it held when it left,
    as the paper broker does, and does not halt the symbol."""
    early = spec_on(replay_account, "early", PARAM_SETS[1], hold_after_bars=300)
    before = driver.start(early, session=driver.open_session(replay_account), account=replay_account)
    assert before[0].stream.holding.wait(60)
    saved = driver.stop(*before)

    session = driver.open_session(replay_account)
    left = spec_on(replay_account, "left", PARAM_SETS[0], hold_after_bars=600)
    planned = {  # as the core read them when it planned both starts: "left" had no snapshot
        left.id: Member(left, None),
        early.id: Member(early, saved),
    }
    ran = driver.start(left, session=session, account=replay_account, members=planned)
    assert ran[0].stream.holding.wait(60)
    held = driver.stop(*ran)["variables"]["pos"]
    assert held != 0, "the test needs a position at bar 600"

    engine, context = driver.start(
        early, snapshot=saved, session=session, account=replay_account, members=planned
    )
    both = events.call_on_event_thread(session.event_engine, lambda: session.broker_position("002050.SZSE"))
    assert both == held + saved["variables"]["pos"]
    assert engine.started and "002050.SZSE" not in engine.cta.halted
    driver.stop(engine, context)


def test_the_late_stop_of_an_evicted_engine_leaves_its_successor_trading(driver, replay_account):
    """An engine the core abandoned is evicted from the session when the strategy
    starts again there; the abandoned engine's stop, returning later, must not take
    the new engine's strategy out of vnpy's engines."""
    spec = spec_on(replay_account, "again", PARAM_SETS[0], hold_after_bars=300)
    session = driver.open_session(replay_account)
    old, old_context = driver.start(spec, session=session, account=replay_account)
    assert old.stream.holding.wait(60)
    old_context.fence.revoke()  # abandoned by the core
    new, new_context = driver.start(spec, session=session, account=replay_account)
    plugin.qsm_stop_engine(engine=old, context=old_context)  # its stop comes back late
    cta = new.cta
    strategy = events.call_on_event_thread(session.event_engine, lambda: cta.strategies.get(spec.id))
    assert strategy is not None and strategy.trading
    assert cta.contexts[spec.id] is new_context and session.runners[spec.id] is new
    assert session.gateway.streams[spec.id] is new.stream and spec.id not in session.departed
    assert new.stream.holding.wait(60)
    assert driver.stop(new, new_context)["gateway"]["bars"] == 300


# -- a live gateway: the derived account ----------------------------------------------------
def live_doc(key: str) -> dict[str, Any]:
    return {
        "user_id": "u",
        "symbol": "002050.SZ",
        "strategy_key": key,
        "engine": "vnpy",
        "engine_class": DOUBLE_MA,
        "params": {
            **PARAM_SETS[0],
            "vnpy": {
                "gateway": {"name": "FAKE", "class": "test_vn_live_orders.FakeGateway"},
                "position_wait": 0,
            },
        },
        "schedule": {"mode": "always"},
    }


def test_documents_on_one_live_gateway_share_the_derived_account_and_its_one_login(tmp_path, monkeypatch):
    from test_vn_live_orders import FakeGateway

    logins: list[str] = []
    original = FakeGateway.connect
    monkeypatch.setattr(
        FakeGateway, "connect", lambda self, setting: (logins.append("login"), original(self, setting))
    )
    settings = Settings(
        data_dir=str(tmp_path / "data"),
        poll_interval=0.1,
        snapshot_interval=3600,
        engine_class_allow=("test_vn_live_orders",),
    )
    store = open_store(settings)
    ids = [f"u:002050.SZ:{key}" for key in ("a", "b", "c")]
    for sid in ids:
        store.upsert_strategy(live_doc(sid.rsplit(":", 1)[1]))
    orchestrator = MultiStrategyOrchestrator(settings, store)
    orchestrator.start()
    try:
        _wait(lambda: _states(orchestrator, ids, "RUNNING"), 60, "three strategies running")
        sessions = {id(orchestrator.slots[s].worker.context.session) for s in ids}
        account = orchestrator.slots[ids[0]].worker.context.account
        orchestrator._flush_status()
        status = {r.strategy_id: r for r in store.read_status()}
    finally:
        orchestrator.stop()
    assert logins == ["login"] and len(sessions) == 1
    assert account.name == "vnpy:FAKE" and account.derived
    assert all(
        status[s].details["account"] == "vnpy:FAKE" and status[s].details["session"] == "OPEN" for s in ids
    )


def test_a_document_on_a_replay_account_may_set_only_its_own_replay(tmp_path, replay_account, vnpy_home):
    from strategy_manager.core.context import EngineContext
    from strategy_manager.core.errors import InvalidStrategy

    doc = account_doc("002050.SZ", "k", PARAM_SETS[0])
    doc["params"]["vnpy"]["gateway"]["setting"]["csv"] = "mine.csv"
    spec = parse_strategy(doc)
    context = EngineContext(spec=spec, data_dir=tmp_path / "engines" / "vnpy" / "k", account=replay_account)
    with pytest.raises(
        InvalidStrategy, match=r"csv belong to the replay account paper \(a strategy on it may set"
    ):
        plugin.qsm_validate_engine(spec=spec, context=context)
    doc["params"]["vnpy"]["gateway"] = {"name": "CTP"}
    spec = parse_strategy(doc)
    context = EngineContext(spec=spec, data_dir=tmp_path / "engines" / "vnpy" / "k", account=replay_account)
    with pytest.raises(InvalidStrategy, match="names gateway CTP, but account paper is on gateway REPLAY"):
        plugin.qsm_validate_engine(spec=spec, context=context)


def test_a_halted_account_resumes_each_strategy_exactly_where_it_stopped(tmp_path, bars_dir, oracles):
    from datetime import UTC, datetime

    from strategy_manager.core.store import AccountHalt

    settings = settings_for(tmp_path, str(bars_dir / "{symbol}.csv"))
    store = open_store(settings)
    which = {f"u:{symbol}:k": (symbol, 0) for symbol in list(SYMBOLS)[:3]}
    for symbol, index in which.values():
        store.upsert_strategy(account_doc(symbol, "k", PARAM_SETS[index], pace=400))
    orchestrator = MultiStrategyOrchestrator(settings, store)
    orchestrator.start()
    try:
        _wait(lambda: all(_cursor(orchestrator, s) > 40 for s in which), 60, "every strategy part-way")
        store.halt_account(AccountHalt("paper", "kill switch test", halted_at=datetime.now(UTC), by="test"))
        _wait(lambda: _states(orchestrator, list(which), "HALTED"), 30, "every strategy halted")
        _wait(
            lambda: all(orchestrator.slots[s].worker.context is None for s in which),
            30,
            "every engine stopped",
        )
        # the halt's final snapshots reach the store through the snapshot writer
        stopped = {sid: wait_for_snapshot(store, sid, lambda st: True, 30).state for sid in which}
        assert all(0 < state["gateway"]["bars"] < SHORT_BARS for state in stopped.values())
        store.resume_account("paper")
        finals = {
            s: wait_for_snapshot(store, s, lambda st: st["gateway"]["bars"] == SHORT_BARS, 60) for s in which
        }
    finally:
        orchestrator.stop()
    for sid in which:
        assert trades(finals[sid].state) == oracles[which[sid]], sid


def _cursor(orchestrator: MultiStrategyOrchestrator, sid: str) -> int:
    slot = orchestrator.slots.get(sid)
    engine = slot.worker.engine if slot is not None and slot.worker is not None else None
    stream = engine.stream if engine is not None else None
    return stream.cursor - stream.start_index if stream is not None else 0
