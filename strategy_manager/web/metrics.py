"""Prometheus metrics: the core's telemetry calls turned into prometheus_client
metrics, plus a collector that reads the fleet, the leases and the snapshots when
scraped (so nothing is kept per strategy between scrapes).

Every metric lives in the server's own registry (never the process-global one), so
two orchestrators in one process (tests) never collide.
"""

from __future__ import annotations

import json
import logging
from collections import Counter as Tally
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from strategy_manager import __version__
from strategy_manager.core.clock import steady
from strategy_manager.core.store import SnapshotWrite, StatusRecord
from strategy_manager.core.telemetry import Telemetry

if TYPE_CHECKING:
    from strategy_manager.core.orchestrator import MultiStrategyOrchestrator
    from strategy_manager.web.events import EventHub

log = logging.getLogger("strategy_manager.web")

HOOK_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)
STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SIZE_BUCKETS = (256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216)
AGE_BUCKETS = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 4 * 3600.0, 86400.0)
#: Events counted as failures (a restart is an "error" event: the supervisor retries).
FAILURE_EVENTS = ("failed", "halted", "hung", "fenced", "lost", "fatal")


class Metrics(Telemetry):
    """The telemetry of a served ``run``: metrics, and status changes to the hub."""

    def __init__(self, hub: EventHub | None = None) -> None:
        self.hub = hub
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.hook_seconds = Histogram(
            "qsm_hook_duration_seconds",
            "Engine hook latency (create, restore, start, stop, snapshot, open_session, close_session)",
            ["engine", "hook"],
            buckets=HOOK_BUCKETS,
            registry=r,
        )
        self.hook_errors = Counter(
            "qsm_hook_errors", "Engine hooks that raised", ["engine", "hook"], registry=r
        )
        self.store_seconds = Histogram(
            "qsm_store_call_duration_seconds", "Store call latency", ["op"], buckets=STORE_BUCKETS, registry=r
        )
        self.store_errors = Counter("qsm_store_errors", "Store calls that failed", ["op"], registry=r)
        self.snapshot_bytes = Histogram(
            "qsm_snapshot_size_bytes",
            "Size of each snapshot written, as JSON",
            buckets=SIZE_BUCKETS,
            registry=r,
        )
        self.loop_lag = Histogram(
            "qsm_control_loop_lag_seconds",
            "How late the control loop woke for a timed wake-up",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.loop_busy = Histogram(
            "qsm_control_loop_turn_seconds",
            "Work of one control-loop turn",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.events = Counter("qsm_events", "Orchestrator events by kind", ["kind"], registry=r)
        self.restarts = Counter(
            "qsm_restarts", "Restarts scheduled after an engine error", ["engine"], registry=r
        )
        self.failures = Counter(
            "qsm_failures", "Strategies failed, halted, hung, fenced or lost", ["engine", "kind"], registry=r
        )
        self.orchestrator: MultiStrategyOrchestrator | None = None

    def watch(self, orchestrator: MultiStrategyOrchestrator) -> None:
        """Read the fleet, leases and snapshots of ``orchestrator`` at each scrape."""
        self.orchestrator = orchestrator
        self.registry.register(FleetCollector(orchestrator))

    def scrape(self) -> bytes:
        return generate_latest(self.registry)

    # -- the core's calls (any thread; never raise) ---------------------------------
    def hook_called(self, engine: str, hook: str, seconds: float, ok: bool) -> None:
        self.hook_seconds.labels(engine, hook).observe(seconds)
        if not ok:
            self.hook_errors.labels(engine, hook).inc()

    def store_called(self, op: str, seconds: float, ok: bool) -> None:
        self.store_seconds.labels(op).observe(seconds)
        if not ok:
            self.store_errors.labels(op).inc()

    def snapshots_saved(self, writes: Sequence[SnapshotWrite]) -> None:
        for write in writes:
            try:
                size = len(json.dumps(write.state, separators=(",", ":"), default=str))
            except (TypeError, ValueError, RecursionError):
                continue
            self.snapshot_bytes.observe(size)

    def loop_turned(self, late: float | None, busy: float) -> None:
        if late is not None:
            self.loop_lag.observe(late)
        self.loop_busy.observe(busy)

    def status_changed(self, records: Sequence[StatusRecord]) -> None:
        if self.hub is not None:
            self.hub.statuses(records)

    def event(self, kind: str, strategy_id: str) -> None:
        """An orchestrator event (from its ``on_event`` sink)."""
        self.events.labels(kind).inc()
        if kind not in ("error", *FAILURE_EVENTS):
            return
        slot = self.orchestrator.slots.get(strategy_id) if self.orchestrator is not None else None
        engine = (slot.engine if slot is not None else None) or ""
        if kind == "error":
            self.restarts.labels(engine).inc()
        else:
            self.failures.labels(engine, kind).inc()


class FleetCollector(Collector):
    """Counts and ages read from the orchestrator when scraped."""

    def __init__(self, orchestrator: MultiStrategyOrchestrator) -> None:
        self.orchestrator = orchestrator

    def collect(self) -> Iterator[Metric]:
        o = self.orchestrator
        slots = list(o.slots.values())
        now = o.wall.now()
        by_state: Tally[tuple[str, str]] = Tally()
        ages: list[float] = []
        for slot in slots:
            state = str(slot.state)
            by_state[(state, slot.engine or "")] += 1
            if state == "RUNNING" and slot.last_snapshot_at is not None:
                ages.append((now - slot.last_snapshot_at).total_seconds())
        strategies = GaugeMetricFamily(
            "qsm_strategies", "Strategies by state and engine", labels=["state", "engine"]
        )
        for (state, engine), n in sorted(by_state.items()):
            strategies.add_metric([state, engine], n)
        yield strategies
        yield _histogram(
            "qsm_snapshot_age_seconds", "Age of the last snapshot of each running strategy", ages, AGE_BUCKETS
        )
        oldest = GaugeMetricFamily(
            "qsm_snapshot_oldest_age_seconds", "Age of the oldest last snapshot among running strategies"
        )
        oldest.add_metric([], max(ages, default=0.0))
        yield oldest
        keeper = o.keeper
        yield CounterMetricFamily("qsm_lease_renewals", "Bulk lease renewals sent", value=keeper.renewals)
        yield CounterMetricFamily(
            "qsm_lease_failures",
            "Lease renewals, claims or releases the store refused or did not answer",
            value=keeper.renewal_failures,
        )
        held = GaugeMetricFamily("qsm_leases_held", "Leases this process holds")
        held.add_metric([], len(keeper.held()))
        yield held
        age = GaugeMetricFamily(
            "qsm_lease_renewal_age_seconds", "Seconds since the last successful lease renewal was sent"
        )
        if keeper.last_renewal is not None:
            age.add_metric([], steady() - keeper.last_renewal)
        yield age
        lease = GaugeMetricFamily("qsm_lease_seconds", "The configured lease_seconds")
        lease.add_metric([], o.settings.lease_seconds)
        yield lease
        info = GaugeMetricFamily(
            "qsm_orchestrator_info", "This orchestrator", labels=["owner", "host", "version"]
        )
        info.add_metric([o.owner, o.record.host, __version__], 1)
        yield info


def _histogram(name: str, doc: str, values: list[float], buckets: tuple[float, ...]) -> Metric:
    """A histogram of ``values`` as of now (cumulative buckets, as Prometheus wants)."""
    cumulative = [(repr(float(limit)), float(sum(v <= limit for v in values))) for limit in buckets]
    cumulative.append(("+Inf", float(len(values))))
    return HistogramMetricFamily(name, doc, buckets=cumulative, sum_value=sum(values))


def content_type() -> str:
    from prometheus_client import CONTENT_TYPE_LATEST

    return str(CONTENT_TYPE_LATEST)


__all__ = ["FleetCollector", "Metrics", "content_type"]
