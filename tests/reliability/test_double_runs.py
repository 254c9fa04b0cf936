"""No strategy ever trades in two processes at once: a partition, a paused process,
two processes with one pid, and two healthy orchestrators side by side.

Measured from the engines' own order logs (see harness.py and scenarios.py), not
from ``status``. `make soak` runs the same scenarios at a larger scale.
"""

from __future__ import annotations

import pytest

from tests.reliability import scenarios
from tests.wire_server import mongoeco_uri  # noqa: F401  (a fixture)


def _no_double_run(report: scenarios.DoubleRunReport) -> None:
    assert report.problems == [], report.problems
    assert report.exit_codes == [0, 0], report
    assert report.overlap == 0.0, f"{report.overlap:.3f} s in which two processes ordered for one strategy"
    assert report.epoch_violations == 0, "an older epoch ordered after a newer one"
    assert report.late_orders == 0, "the faulty process ordered after the takeover"


@pytest.mark.slow
def test_a_partitioned_owner_stops_ordering_before_the_other_takes_over(tmp_path, mongoeco_uri):  # noqa: F811
    report = scenarios.partition(tmp_path, mongoeco_uri, strategies=20, cut_leases=3.0)
    _no_double_run(report)
    assert report.moved == 20  # every strategy was taken over once
    # no order once its lease could expire, and no takeover before its lease expired
    # (both checked per strategy by the scenario); the takeover comes within 3 leases
    assert report.takeover < 3 * scenarios.LEASE


@pytest.mark.slow
def test_a_paused_owner_orders_and_writes_nothing_after_the_takeover(tmp_path):
    report = scenarios.paused_owner(tmp_path, strategies=5, paused_leases=2.0)
    _no_double_run(report)
    assert report.moved == 5


@pytest.mark.slow
@pytest.mark.skipif(
    not scenarios.unshare_works(), reason="no PID namespaces here (unshare --pid needs privileges)"
)
def test_two_processes_with_the_same_pid_in_separate_namespaces_never_share_a_strategy(tmp_path):
    report = scenarios.same_pid(tmp_path, strategies=10)
    _no_double_run(report)
    assert report.moved == 0


@pytest.mark.slow
def test_two_healthy_orchestrators_share_the_fleet_without_a_hand_over(tmp_path, mongoeco_uri):  # noqa: F811
    report = scenarios.healthy_pair(tmp_path, mongoeco_uri, strategies=200, seconds=120.0)
    _no_double_run(report)
    assert report.moved == 0, "strategies moved without a fault"


def test_two_orchestrators_of_one_process_never_run_one_strategy(tmp_path):
    """The fallback where PID namespaces are not available: two orchestrators in one
    process share host and pid exactly, and still own disjoint strategies."""
    import time

    from strategy_manager.core.clock import SystemClock
    from strategy_manager.core.orchestrator import MultiStrategyOrchestrator
    from strategy_manager.core.settings import Settings
    from strategy_manager.core.store import open_store
    from tests.conftest import wait_for
    from tests.reliability.harness import demo_document

    settings = Settings(
        data_dir=str(tmp_path), poll_interval=0.05, lease_seconds=1.5, lease_renew_seconds=0.25
    )
    ids = [f"o:F{i}:k" for i in range(10)]
    store = open_store(settings)
    for i in range(len(ids)):
        store.upsert_strategy(demo_document(i, "o", bar_seconds=0.01))
    pair = [MultiStrategyOrchestrator(settings, open_store(settings), clock=SystemClock()) for _ in range(2)]
    assert pair[0].owner.split(":")[:2] == pair[1].owner.split(":")[:2] and pair[0].owner != pair[1].owner
    for orch in pair:
        orch.start()
    try:
        wait_for(
            lambda: all(any(o.slots.get(i) and o.slots[i].running for o in pair) for i in ids),
            20,
            "all running",
        )
        deadline = time.monotonic() + 3 * settings.lease_seconds
        while time.monotonic() < deadline:  # sampled over three leases' time
            both = [i for i in ids if all(o.slots.get(i) and o.slots[i].running for o in pair)]
            assert both == [], f"run by both orchestrators: {both}"
            time.sleep(0.02)
    finally:
        for orch in pair:
            orch.stop()
