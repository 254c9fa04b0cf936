"""Hostile and malformed documents never crash the orchestrator, and never hide the valid ones."""

from __future__ import annotations

from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from strategy_manager.core.errors import InvalidStrategy
from strategy_manager.core.orchestrator import MultiStrategyOrchestrator
from strategy_manager.core.settings import Settings
from strategy_manager.core.spec import parse_strategy
from strategy_manager.core.worker import WorkerState

VALID = {"user_id": "u", "symbol": "600000.SH", "strategy_key": "ok", "engine": "demo", "params": {}}

json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20)
)
json_value = st.recursive(
    json_leaf,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
hostile_key = st.sampled_from(["$where", "a.b", "$set", "\x00", "", "ok"])


def deep(levels: int) -> dict:
    value: dict = {}
    for _ in range(levels):
        value = {"x": value}
    return value


hostile_params = st.one_of(
    json_value,
    st.dictionaries(hostile_key, json_value, max_size=3),
    st.just(deep(200)),
    st.just({"blob": "x" * 2_000_000}),
    st.just({"bad": "\ud800"}),
)

field_values = st.one_of(json_value, st.text(max_size=5), st.just("engine:with:colons"))

documents = st.one_of(
    json_value,
    st.fixed_dictionaries(
        {},
        optional={
            "user_id": field_values,
            "symbol": field_values,
            "strategy_key": field_values,
            "engine": st.one_of(field_values, st.sampled_from(["demo", "python", "nope"])),
            "enabled": json_value,
            "engine_class": st.one_of(json_value, st.just("os.system")),
            "params": hostile_params,
            "schedule": json_value,
            "calendar": json_value,
        },
    ),
)


@given(documents)
@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_parse_either_accepts_or_names_the_problem(document):
    try:
        spec = parse_strategy(document)
    except InvalidStrategy as exc:
        message = str(exc)
        assert message and "\n" not in message
        assert len(message) < 600
    else:
        assert spec.id.count(":") >= 2


class NullStore:
    """reconcile() reads nothing from the store; the loop is not started here."""


@given(st.lists(documents, max_size=8))
@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_reconcile_survives_any_batch_and_the_valid_document_is_unaffected(batch):
    orch = MultiStrategyOrchestrator(Settings(), NullStore())  # type: ignore[arg-type]
    orch.reconcile([*batch, dict(VALID)])
    slot = orch.slots["u:600000.SH:ok"]
    assert slot.spec is not None and slot.state is not WorkerState.BLOCKED
    for ident, other in orch.slots.items():
        if other.state is WorkerState.BLOCKED:
            assert other.reason, ident


HOSTILE = [
    {"symbol": "T1", "engine": "demo", "params": {"fast": "three"}},  # the engine rejects it
    {"symbol": "T2", "engine": "python", "engine_class": "os.system"},  # outside the allow-list
    {"symbol": "T3", "engine": "nope"},  # unknown engine
    {"symbol": "T4", "engine": "demo", "enabled": "yes"},  # wrong type
    {"symbol": "T5", "engine": "demo", "schedule": {"mode": "sometimes"}},  # bad schedule
    {"symbol": "T6", "engine": "demo", "params": {"blob": "x" * 2_000_000}},  # huge
    {"symbol": "T7", "engine": "demo", "params": deep(100)},  # deep
    {"symbol": "T8", "engine": 42},  # wrong type
]


def test_hostile_documents_in_the_store_surface_in_status_and_the_valid_one_runs(tmp_path):
    import time

    from strategy_manager.core.clock import SystemClock
    from strategy_manager.core.store import open_store

    settings = Settings(
        data_dir=str(tmp_path), poll_interval=0.05, restart_max=1, backoff_base=0.01, backoff_cap=0.02
    )
    store = open_store(settings)
    store.upsert_strategy({**VALID, "params": {"bar_seconds": 0.01}, "schedule": {"mode": "always"}})
    for doc in HOSTILE:
        store.upsert_strategy({"user_id": "u", "strategy_key": "bad", "schedule": {"mode": "always"}, **doc})
    orch = MultiStrategyOrchestrator(settings, store, clock=SystemClock())
    orch.start()
    try:
        deadline = time.monotonic() + 15
        while True:
            status = {r.strategy_id: r for r in store.read_status()}
            settled = all(
                status.get(f"u:{d['symbol']}:bad")
                and status[f"u:{d['symbol']}:bad"].state in ("BLOCKED", "FAILED")
                for d in HOSTILE
            )
            if settled and status.get("u:600000.SH:ok") and status["u:600000.SH:ok"].state == "RUNNING":
                break
            assert time.monotonic() < deadline, {k: (v.state, v.last_error) for k, v in status.items()}
            time.sleep(0.05)
    finally:
        orch.stop()
    reasons = {ident: status[ident].last_error for ident in status}
    assert "fast" in reasons["u:T1:bad"]
    assert "refused" in reasons["u:T2:bad"]
    assert "engine 'nope' is not installed" in reasons["u:T3:bad"]
    assert "field 'enabled'" in reasons["u:T4:bad"]
    assert "field 'schedule.mode'" in reasons["u:T5:bad"]
    assert "bytes, the limit is" in reasons["u:T6:bad"]
    assert "nested deeper than" in reasons["u:T7:bad"]
    assert "field 'engine'" in reasons["u:T8:bad"]
    assert all("\n" not in r for r in reasons.values() if r)
    assert store.get_strategy("u:T6:bad")["params"]["blob"] == "x" * 2_000_000  # nothing rewritten
