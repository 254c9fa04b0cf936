"""Accounts through the orchestrator: one session shared by an account's strategies,
opened and closed on the hook pool, its failures shown on every strategy of the
account; the kill switch (a stored halt) honoured at once, across restarts."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import attrs
import pytest

from strategy_manager.core.clock import SystemClock
from strategy_manager.core.orchestrator import MultiStrategyOrchestrator
from strategy_manager.core.registry import EngineRegistry
from strategy_manager.core.settings import Settings
from strategy_manager.core.store import AccountHalt, open_store
from strategy_manager.core.worker import WorkerState
from tests.conftest import wait_for
from tests.core.session_plugins import SessionEngine
from tests.core.test_orchestrator import Events

ALWAYS = {"mode": "always"}


@pytest.fixture
def settings(tmp_path):
    return Settings(
        data_dir=str(tmp_path / "data"),
        poll_interval=0.05,
        resync_interval=3600,  # no resync heals a missed wake-up: events alone drive these tests
        snapshot_interval=3600,
        backoff_base=0.05,
        backoff_cap=0.1,
        stop_timeout=5,
        accounts={
            "acct": {"engine": "sess", "host": "broker-1", "password": "hunter22"},
            "other": {"engine": "sess"},
            "paper": {"engine": "demo"},
            "broken": {"engine": "sess", "broken": True},
        },
    )


def doc(symbol, key="k", engine="sess", params=None, **extra):
    return {
        "user_id": "u",
        "symbol": symbol,
        "strategy_key": key,
        "engine": engine,
        "params": params or {},
        "schedule": ALWAYS,
        **extra,
    }


class Run:
    """An orchestrator with the session engine installed, its store and its events."""

    def __init__(self, settings: Settings, plugin: SessionEngine | None = None, store=None) -> None:
        self.plugin = plugin or SessionEngine()
        registry = EngineRegistry.from_entry_points(settings)
        registry.add_plugin("sess", self.plugin)
        self.store = store or open_store(settings)
        self.events = Events(SystemClock())
        self.orch = MultiStrategyOrchestrator(settings, self.store, registry, on_event=self.events)

    def state(self, sid: str) -> str:
        slot = self.orch.slots.get(sid)
        return str(slot.state) if slot is not None else "-"

    def wait_states(self, sids, state: str, timeout: float = 20) -> None:
        wait_for(lambda: all(self.state(s) == state for s in sids), timeout, f"{sids} {state}")

    def status(self) -> dict:
        return {r.strategy_id: r for r in self.store.read_status()}


@pytest.fixture
def run(settings):
    runs: list[Run] = []

    def make(settings=settings, **kwargs) -> Run:
        r = Run(settings, **kwargs)
        runs.append(r)
        return r

    yield make
    for r in runs:
        r.orch.stop()


def members(n: int, account: str = "acct") -> list[str]:
    return [f"u:S{i}:k" for i in range(n)]


def put(store, n: int, account: str = "acct", prefix: str = "S", **extra) -> list[str]:
    ids = []
    for i in range(n):
        store.upsert_strategy(doc(f"{prefix}{i}", account=account, **extra))
        ids.append(f"u:{prefix}{i}:k")
    return ids


# -- one session per account ------------------------------------------------------------
def test_the_strategies_of_an_account_share_one_session_opened_on_the_hook_pool(run):
    r = run()
    ids = put(r.store, 4)
    r.store.upsert_strategy(doc("LONE"))
    r.orch.start()
    r.wait_states([*ids, "u:LONE:k"], "RUNNING")
    assert r.plugin.open_attempts == 1 and len(r.plugin.opened) == 1
    session = r.plugin.opened[0]
    assert all(r.plugin.sessions_seen[s] == [session] for s in ids)
    assert r.plugin.sessions_seen["u:LONE:k"] == [None]  # no account, no session
    assert session.account.name == "acct"
    assert session.account.settings == {"host": "broker-1", "password": "hunter22"}
    assert all(t.startswith("qsm-hooks-") for t in r.plugin.open_threads)
    # each engine has its own fence, and knows the members of its account and symbol
    context = r.plugin.contexts[ids[0]]
    assert context.account.name == "acct" and sorted(context.members) == [ids[0]]
    r.orch._flush_status()
    details = r.status()[ids[0]].details
    assert details["account"] == "acct" and details["session"] == "OPEN"


def test_shutdown_closes_the_session_once_after_its_engines_stopped(run):
    r = run()
    ids = put(r.store, 3)
    r.orch.start()
    r.wait_states(ids, "RUNNING")
    r.orch.stop()
    [session] = r.plugin.opened
    assert session.closed and session.closed_under == [] and session.cancelled_orders is False
    assert all(t.startswith("qsm-hooks-") for t in r.plugin.close_threads)
    assert len(r.plugin.close_threads) == 1


def test_a_strategy_stopped_and_started_within_the_grace_period_reuses_the_session(run, settings):
    r = run(attrs.evolve(settings, session_grace_seconds=3600))
    ids = put(r.store, 2)
    r.orch.start()
    r.wait_states(ids, "RUNNING")
    for sid in ids:  # both stop: the session is left open for the grace period
        r.store.update_strategy(sid, {"enabled": False})
    r.wait_states(ids, "DISABLED")
    wait_for(lambda: not r.plugin.opened[0].engines, 10, "both engines detached")
    assert r.orch.accounts.entries["acct"].state == "OPEN"
    for sid in ids:
        r.store.update_strategy(sid, {"enabled": True})
    r.wait_states(ids, "RUNNING")
    assert len(r.plugin.opened) == 1 and not r.plugin.opened[0].closed


def test_after_the_grace_period_the_session_closes_and_a_new_start_reopens_it(run, settings):
    r = run(attrs.evolve(settings, session_grace_seconds=0.3))
    [sid] = put(r.store, 1)
    r.orch.start()
    r.wait_states([sid], "RUNNING")
    r.store.update_strategy(sid, {"enabled": False})
    r.events.wait_for("acct", "account", count=2)  # opened, then closed
    stopped_at = r.events.of(sid, "stopped")[0][0] if r.events.of(sid, "stopped") else None
    closed_at = r.events.of("acct", "account")[1][0]
    assert [d for _, _, d in r.events.of("acct", "account")] == ["session opened", "session closed"]
    assert r.plugin.opened[0].closed
    if stopped_at is not None:
        assert (closed_at - stopped_at).total_seconds() >= 0.3 - 0.05
    r.store.update_strategy(sid, {"enabled": True})
    r.wait_states([sid], "RUNNING")
    assert len(r.plugin.opened) == 2 and r.plugin.sessions_seen[sid] == r.plugin.opened


def test_a_session_that_fails_to_open_shows_on_every_member_and_is_retried(run, settings):
    plugin = SessionEngine()
    plugin.refuse = 2
    r = run(plugin=plugin)
    ids = put(r.store, 3)
    r.store.upsert_strategy(doc("LONE"))
    r.orch.start()
    r.wait_states(["u:LONE:k"], "RUNNING")
    r.wait_states(ids, "RUNNING")
    assert plugin.open_attempts == 3
    failures = [d for _, _, d in r.events.of("acct", "account-error")]
    assert len(failures) == 2 and all("login refused by the broker" in d for d in failures)


def test_while_a_session_cannot_open_its_strategies_say_why(run):
    plugin = SessionEngine()
    plugin.refuse = 10**6
    r = run(plugin=plugin)
    ids = put(r.store, 2)
    r.orch.start()

    def backing_off():
        r.orch._flush_status()
        rows = r.status()
        return all(
            s in rows and rows[s].state == "BACKOFF" and "login refused" in (rows[s].last_error or "")
            for s in ids
        )

    wait_for(backing_off, 20, "every member showing the refused login")
    assert not plugin.opened


def test_while_a_retry_connects_its_strategies_still_say_why_the_last_try_failed(run):
    plugin = SessionEngine()
    plugin.refuse = 1
    plugin.hang.set()  # the retry after the refusal connects until released
    r = run(plugin=plugin)
    try:
        ids = put(r.store, 2)
        r.orch.start()

        def shown(state, text):
            r.orch._flush_status()
            rows = r.status()
            return all(s in rows and rows[s].state == state and text in (rows[s].last_error or "") for s in ids)

        wait_for(
            lambda: shown("WAITING", "(opening; the last try failed: login refused by the broker)"),
            20,
            "the retry showing the refused login",
        )
        plugin.release.set()
        r.wait_states(ids, "RUNNING")
    finally:
        plugin.release.set()


def test_bad_account_settings_are_not_retried(run):
    r = run()
    [sid] = put(r.store, 1, account="broken")
    r.orch.start()
    r.wait_states([sid], "FAILED")
    assert "setting 'broken' is set" in r.orch.slots[sid].reason
    attempts = r.plugin.open_attempts
    r.store.upsert_strategy(doc("X", account="acct"))
    r.wait_states(["u:X:k"], "RUNNING")
    assert r.plugin.open_attempts == attempts + 1  # only acct's


def test_a_session_problem_shows_on_every_member_until_it_is_well(run):
    r = run()
    ids = put(r.store, 3)
    r.orch.start()
    r.wait_states(ids, "RUNNING")
    session = r.plugin.opened[0]
    session.report("front 180.168.146.187 disconnected; reconnecting")

    def shown(text):
        r.orch._flush_status()
        rows = r.status()
        return all(text in (rows[s].last_error or "") for s in ids)

    wait_for(lambda: shown("account acct: session: front 180.168.146.187 disconnected"), 10, "the problem")
    assert all(r.state(s) == "RUNNING" for s in ids)  # reconnecting is the session's job
    session.report(None)
    wait_for(lambda: all(not (r.status()[s].last_error or "") for s in ids), 10, "the problem cleared")


def test_a_hung_open_is_abandoned_at_its_deadline_and_other_strategies_run(run, settings):
    plugin = SessionEngine()
    plugin.hang.set()
    r = run(attrs.evolve(settings, start_timeout=0.5), plugin=plugin)
    try:
        ids = put(r.store, 2)
        r.store.upsert_strategy(doc("LONE"))
        r.orch.start()
        r.wait_states(["u:LONE:k"], "RUNNING")
        r.events.wait_for("acct", "account-error")
        assert "did not return within 0.5s" in r.events.of("acct", "account-error")[0][2]
        assert all(r.state(s) in ("BACKOFF", "WAITING") for s in ids)
        plugin.hang.clear()  # the broker answers again: a later open succeeds
        r.wait_states(ids, "RUNNING")
    finally:
        plugin.release.set()


def test_a_start_knows_the_strategies_of_its_account_and_symbol_a_disabled_one_included(run, settings):
    """What a resume check sums: the strategies of the account trading the symbol, a
    disabled one with its last snapshot (its position is still at the broker), also
    after a restart; not those of the account's other symbols, of another account, or
    of a document that no longer resolves (its account is unknown now)."""
    store = open_store(settings)
    same = ["u:X:a", "u:X:off", "u:X:bad"]
    for sid in same:
        store.upsert_strategy(doc("X", sid.rsplit(":", 1)[1], account="acct"))
    store.upsert_strategy(doc("Y", "a", account="acct"))
    store.upsert_strategy(doc("X", "o", account="other"))
    first = run(store=store)
    first.orch.start()
    first.wait_states([*same, "u:Y:a", "u:X:o"], "RUNNING")
    assert sorted(first.plugin.contexts["u:X:a"].members) == sorted(same)
    assert sorted(first.plugin.contexts["u:Y:a"].members) == ["u:Y:a"]
    assert sorted(first.plugin.contexts["u:X:o"].members) == ["u:X:o"]
    store.update_strategy("u:X:off", {"enabled": False})
    store.update_strategy("u:X:bad", {"engine": "not-installed"})
    first.wait_states(["u:X:off"], "DISABLED")
    first.wait_states(["u:X:bad"], "BLOCKED")
    first.orch._flush_status()
    assert first.status()["u:X:off"].details["account"] == "acct"  # disabled, still in its account
    assert "account" not in first.status()["u:X:bad"].details
    first.orch.stop()
    saved = store.latest_snapshot("u:X:off")
    assert saved is not None

    second = run(store=store)  # the disabled document is disabled from the outset
    second.orch.start()
    second.wait_states(["u:X:a"], "RUNNING")
    second.wait_states(["u:X:off"], "DISABLED")
    members = second.plugin.contexts["u:X:a"].members
    assert sorted(members) == ["u:X:a", "u:X:off"]
    assert members["u:X:off"].snapshot == saved.state and members["u:X:off"].spec.enabled is False
    assert "u:X:off" not in second.plugin.sessions_seen  # never started


# -- derived accounts ----------------------------------------------------------------------
def test_documents_without_an_account_share_the_account_their_engine_derives(run):
    r = run()
    for key in ("a", "b"):
        r.store.upsert_strategy(doc("X", key, params={"desk": "D1"}))
    r.store.upsert_strategy(doc("Y", params={"desk": "D2"}))
    r.orch.start()
    r.wait_states(["u:X:a", "u:X:b", "u:Y:k"], "RUNNING")
    r.store.upsert_strategy(doc("Z", params={"desk": "D1", "host": "elsewhere"}))
    r.store.upsert_strategy(doc("Z", "off", params={"desk": "D1", "host": "elsewhere"}, enabled=False))
    r.wait_states(["u:Z:k"], "BLOCKED")
    wait_for(lambda: r.orch.accounts._of.get("u:Z:off", "-") is None, 10, "u:Z:off's derivation refused")
    assert r.state("u:Z:off") == "DISABLED"  # disabled says more than why it could not run
    sessions = {sid: r.plugin.sessions_seen[sid][0] for sid in ("u:X:a", "u:X:b", "u:Y:k")}
    assert sessions["u:X:a"] is sessions["u:X:b"] is not sessions["u:Y:k"]
    assert sessions["u:X:a"].account.name == "desk:D1" and sessions["u:X:a"].account.derived
    assert "derives account 'desk:D1' with other settings than u:X:" in r.orch.slots["u:Z:k"].reason


def test_an_unknown_account_or_one_of_another_engine_blocks_the_document(run):
    r = run()
    r.store.upsert_strategy(doc("A", account="nope"))
    r.store.upsert_strategy(doc("B", account="paper"))
    r.orch.start()
    r.wait_states(["u:A:k", "u:B:k"], "BLOCKED")
    assert "account 'nope' is not defined in the settings" in r.orch.slots["u:A:k"].reason
    assert "account 'paper' is for engine 'demo', not for this document's engine 'sess'" in (
        r.orch.slots["u:B:k"].reason
    )


# -- the kill switch --------------------------------------------------------------------------
def halt(store, account: str, cancel: bool = False) -> None:
    store.halt_account(AccountHalt(account, "runaway losses", cancel, datetime.now(UTC), by="ops@desk"))


def test_a_halt_stops_every_strategy_of_the_account_and_no_other(run):
    r = run()
    ids = put(r.store, 50, account="paper", engine="demo", params={"bar_seconds": 0.01})
    others = put(r.store, 2, account="acct", prefix="O")
    r.orch.start()
    r.wait_states([*ids, *others], "RUNNING", timeout=60)
    contexts = [r.orch.slots[s].worker.context for s in ids]
    halt(r.store, "paper")
    r.wait_states(ids, "HALTED")
    assert all(not c.lease_valid() for c in contexts)  # no order passes any more
    wait_for(lambda: all(r.orch.slots[s].worker.context is None for s in ids), 20, "every engine stopped")
    assert all(r.state(s) == "RUNNING" for s in others)
    [event] = r.events.of("paper", "account-halt")
    assert "account paper halted by ops@desk" in event[2] and "runaway losses" in event[2]
    assert "stopping 50 strategies" in event[2]
    r.orch._flush_status()
    row = r.status()[ids[0]]
    assert row.state == "HALTED" and "accounts resume paper" in row.last_error


def test_a_halted_account_is_never_started_and_the_halt_survives_a_restart(run, settings):
    store = open_store(settings)
    ids = put(store, 3, account="acct")
    halt(store, "acct", cancel=False)
    first = run(store=store)
    first.orch.start()
    first.wait_states(ids, "HALTED")
    first.orch.stop()
    second = run(store=store)
    second.orch.start()
    second.wait_states(ids, "HALTED")
    assert first.plugin.sessions_seen == {} and second.plugin.sessions_seen == {}
    assert first.plugin.open_attempts == second.plugin.open_attempts == 0
    assert not any(second.events.of(s, "started") for s in ids)
    assert store.resume_account("acct") is True
    second.wait_states(ids, "RUNNING")
    second.events.wait_for("acct", "account")


def test_resume_starts_the_strategies_again_from_their_snapshots(run):
    r = run()
    ids = put(r.store, 2, account="acct")
    r.orch.start()
    r.wait_states(ids, "RUNNING")
    halt(r.store, "acct")
    r.wait_states(ids, "HALTED")
    wait_for(lambda: all(r.store.latest_snapshot(s) is not None for s in ids), 10, "the halt's snapshots")
    r.store.resume_account("acct")
    r.wait_states(ids, "RUNNING")
    assert all(len(r.plugin.sessions_seen[s]) == 2 for s in ids)
    assert all("restored snapshot" in r.events.of(s, "started")[-1][2] for s in ids)


def test_a_halt_with_cancel_orders_closes_the_session_at_once_cancelling_orders(run, settings):
    r = run(attrs.evolve(settings, session_grace_seconds=3600))
    ids = put(r.store, 3, account="acct")
    r.orch.start()
    r.wait_states(ids, "RUNNING")
    halt(r.store, "acct", cancel=True)
    wait_for(lambda: r.plugin.opened[0].closed, 20, "the session closed")
    session = r.plugin.opened[0]
    assert session.cancelled_orders is True and session.closed_under == []
    assert all(r.state(s) == "HALTED" for s in ids)


def test_a_session_hook_never_runs_on_the_control_thread(run):
    r = run()
    ids = put(r.store, 2)
    r.orch.start()
    r.wait_states(ids, "RUNNING")
    r.orch.stop()
    names = r.plugin.open_threads + r.plugin.close_threads
    assert names and "qsm-orchestrator" not in names
    assert threading.current_thread().name not in names


def test_engine_states_the_strategies_of_a_halted_account_keep_are_not_overwritten(run):
    """A FAILED strategy of a halted account stays FAILED (its error matters more)."""
    r = run()
    [sid] = put(r.store, 1, account="broken")
    r.orch.start()
    r.wait_states([sid], "FAILED")
    halt(r.store, "broken")
    r.events.wait_for("broken", "account-halt")
    assert r.state(sid) == "FAILED"
    assert r.orch.slots[sid].state is WorkerState.FAILED
