"""MultiStrategyOrchestrator: keep the running workers equal to the documents.

Four kinds of thread, none of which ever waits for another's work:

* the control thread decides. It wakes on a store change (change stream or
  ``change_token`` poll), a schedule transition, a worker or lease event, a retry
  time or the snapshot interval, and reconciles level-triggered: the whole desired
  set against the running set, so a missed event heals at the next resync. It reads
  documents and writes status; it never calls an engine hook.
* the lease keeper (:mod:`~strategy_manager.core.leases`) claims and renews leases in
  bulk on its own schedule, and fences this process's engines off when it cannot.
* the snapshot writer (:mod:`~strategy_manager.core.snapshots`) writes snapshots in
  bulk, keeping them until the store acknowledges them.
* the hook pool (:mod:`~strategy_manager.core.hookpool`) runs engine hooks, one at a
  time per strategy, each with a deadline; a hung hook costs its own strategy only.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Mapping
from concurrent.futures import Future
from concurrent.futures import wait as wait_all
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
from attrs import define, field

from strategy_manager.core.classloader import ClassLoader
from strategy_manager.core.clock import Clock, SystemClock
from strategy_manager.core.context import EngineContext, Fence, safe_dirname
from strategy_manager.core.errors import EngineHalted, HookError, HookTimeout, QsmError, StoreError, StoreLost
from strategy_manager.core.hookpool import HookPool
from strategy_manager.core.leases import LeaseChange, LeaseKeeper, this_process
from strategy_manager.core.lifecycle import LifecycleManager
from strategy_manager.core.registry import EngineRegistry
from strategy_manager.core.schedule import Phase, Policy
from strategy_manager.core.settings import Settings, validate_settings
from strategy_manager.core.snapshots import SnapshotWriter
from strategy_manager.core.spec import StrategySpec, parse_document, parse_strategy
from strategy_manager.core.store import Lease, Snapshot, SnapshotWrite, StatusRecord, Store
from strategy_manager.core.supervision import judge, permanent
from strategy_manager.core.worker import WIND_DOWN_SECONDS, EngineWorker, WorkerState

log = logging.getLogger("strategy_manager.orchestrator")
#: Lifecycle events (started, failed, ...), at the level EVENT_LEVELS gives them.
events_log = logging.getLogger("strategy_manager.events")

#: Thread stack for engine and pool threads: thousands of idle threads stay cheap.
THREAD_STACK_BYTES = 1024 * 1024
#: The control thread decodes whatever the store holds: a deep stack lets a hostile
#: document fail with an error instead of overflowing the stack.
CONTROL_STACK_BYTES = 16 * 1024 * 1024
#: Shutdown takes at most stop_timeout plus this, whatever the engines do.
SHUTDOWN_MARGIN_SECONDS = 5.0

EventSink = Callable[[str, str, str], None]
#: How loud each event is in the log; the others are INFO.
EVENT_LEVELS = {
    "failed": logging.ERROR,
    "halted": logging.ERROR,
    "hung": logging.ERROR,
    "fatal": logging.CRITICAL,
    "error": logging.WARNING,
    "warning": logging.WARNING,
    "blocked": logging.WARNING,
    "lost": logging.WARNING,
    "fenced": logging.ERROR,
}


@define
class _Due:
    """When the control loop next has something to do."""

    snapshot: datetime
    #: The next schedule transition or restart time of any strategy.
    schedule: datetime | None = None
    poll: float = 0.0
    resync: float = 0.0
    first: bool = True


@define
class Slot:
    """Everything the orchestrator knows about one strategy document."""

    id: str
    spec: StrategySpec | None = None
    version: Hashable = None
    fingerprint: str = ""
    policy: Policy | None = None
    hooks: Any = None
    worker: EngineWorker | None = None
    #: The document is gone: forget the slot once its worker has stopped.
    removed: bool = False
    state: WorkerState = WorkerState.WAITING
    reason: str | None = None
    engine: str | None = None
    failures: deque[float] = field(factory=deque)
    restarts: int = 0
    retry_at: datetime | None = None
    starts: int = 0
    restored_seq: int | None = None
    #: This process's lease on the strategy; None while it holds none.
    lease: Lease | None = None
    #: Another live process holds the lease (this one is standing by).
    elsewhere: bool = False
    phase: Phase | None = None
    last_snapshot_seq: int | None = None
    last_snapshot_at: datetime | None = None

    @property
    def running(self) -> bool:
        return self.worker is not None and self.worker.state is WorkerState.RUNNING


class MultiStrategyOrchestrator:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        registry: EngineRegistry | None = None,
        clock: Clock | None = None,
        on_event: EventSink | None = None,
        owner: str | None = None,
        assigned: Callable[[str], bool] | None = None,
        owner_details: Mapping[str, Any] | None = None,
    ) -> None:
        """``assigned`` restricts this orchestrator to a share of the strategies (a
        scale-out host's, a shard's): it claims only those for which it answers True,
        and hands over those it stops answering True for (see :meth:`reassigned`);
        None runs them all. ``owner_details`` go into this process's heartbeat record."""
        validate_settings(settings)
        self.settings = settings
        self.store = store
        self.registry = registry or EngineRegistry.from_entry_points(settings)
        self.clock = clock or SystemClock()
        #: Leases and heartbeats are wall-clock facts even when the schedule is simulated.
        self.wall = SystemClock()
        self.lifecycle = LifecycleManager(settings)
        self.on_event = on_event
        self.assigned: Callable[[str], bool] = assigned or _everything
        self.record = this_process(self.wall.now(), owner, owner_details)
        self.owner = self.record.owner
        self.keeper = LeaseKeeper(
            store, settings, lambda change: self._post("leases", "", change), self.record, self.wall
        )
        self.snapshots = SnapshotWriter(
            store,
            settings.backoff_base,
            settings.backoff_cap,
            fence=self.keeper,
            report=lambda sid, seq, problem: self._post("snapshot", sid, (seq, problem)),
        )
        self.slots: dict[str, Slot] = {}
        self.classes = ClassLoader(settings.import_paths, settings.engine_class_allow)
        self.pool: HookPool | None = None
        self.fatal: QsmError | None = None
        self._events: queue.SimpleQueue[tuple[str, str, Any]] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._force = False
        self._seen_token: Hashable = object()
        self._dirty: set[str] = set()
        self._wanted: frozenset[str] = frozenset()
        self._snapshot_round: list[Future[Any]] = []
        #: A simulated clock's brakes (see SimClock); absent on the system clock.
        self._clock_hold: Callable[[], AbstractContextManager[None]] = getattr(
            self.clock, "hold", contextlib.nullcontext
        )
        self._set_barrier: Callable[[datetime | None], None] = getattr(
            self.clock, "set_barrier", lambda when: None
        )
        self._claim_hold: AbstractContextManager[None] | None = None
        #: Where :meth:`run` ends, in clock time: a due time like any other.
        self._until: datetime | None = None
        self.reconciles = 0

    # -- the seed's programmatic API ------------------------------------------------
    def add_strategy(
        self,
        symbol: str,
        strategy_key: str,
        engine: str,
        params: dict[str, Any] | None = None,
        *,
        user_id: str = "default",
        **fields: Any,
    ) -> str:
        """Write (or update) a strategy document; the reconcile loop starts it."""
        document = {
            "user_id": user_id,
            "symbol": symbol,
            "strategy_key": strategy_key,
            "engine": engine,
            "params": params or {},
            "enabled": True,
            **fields,
        }
        spec = parse_strategy(document)
        self.store.upsert_strategy(document)
        self.wake()
        return spec.id

    def remove_strategy(self, symbol: str, strategy_key: str, *, user_id: str = "default") -> bool:
        """Delete the document; the reconcile loop snapshots and stops its worker."""
        removed = self.store.remove_strategy(f"{user_id}:{symbol}:{strategy_key}")
        self.wake()
        return removed

    def list_workers(self) -> list[dict[str, Any]]:
        return [
            attrs.asdict(self._status(slot), recurse=False) | {"starts": slot.starts}
            for slot in sorted(self.slots.values(), key=lambda s: s.id)
        ]

    def start(self) -> None:
        """Start the lease keeper, the snapshot writer, the hook pool and the control loop."""
        if self._thread is not None:
            return
        self._stopping.clear()
        self.lifecycle.calendars.calendar(self.settings.default_calendar)  # pays the import
        threading.stack_size(THREAD_STACK_BYTES)
        self.pool = HookPool(self.settings.hook_threads)
        self.keeper.start()
        self.snapshots.start()
        anchor = getattr(self.clock, "anchor", None)
        if anchor is not None:  # a simulated clock starts its day now that we are ready
            anchor()
        self._claim_hold = self._clock_hold()  # released once the first claims are answered
        self._claim_hold.__enter__()
        threading.stack_size(CONTROL_STACK_BYTES)
        try:
            self._thread = threading.Thread(target=self._loop, name="qsm-orchestrator", daemon=True)
            self._thread.start()
        finally:
            threading.stack_size(THREAD_STACK_BYTES)

    def stop(self, timeout: float | None = None) -> None:
        """Snapshot and stop every worker, write what the store takes, give up the
        leases, and return within ``stop_timeout`` plus a margin whatever engines do."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
            self._shutdown(timeout if timeout is not None else self.settings.stop_timeout)

    def run(self, seconds: float | None = None) -> None:
        """Start, block for ``seconds`` of clock time (or until :meth:`stop`), stop."""
        deadline = None if seconds is None else self.clock.now() + timedelta(seconds=seconds)
        self._until = deadline
        self.start()
        if deadline is not None and getattr(self.clock, "anchor", None) is not None:
            deadline = self._until = self.clock.now() + timedelta(seconds=seconds or 0.0)
        try:
            while not self._stopping.is_set():
                if deadline is not None and self.clock.now() >= deadline:
                    break
                wait = (
                    0.5
                    if deadline is None
                    else min(0.5, self.clock.real_seconds((deadline - self.clock.now()).total_seconds()))
                )
                self._stopping.wait(max(wait, 0.001))
        finally:
            self.stop()

    def request_stop(self) -> None:
        """Ask :meth:`run` to return (from a signal handler); never blocks."""
        self._stopping.set()
        self._wake.set()

    def wake(self) -> None:
        """Look at the store again now (after a programmatic change)."""
        self._force = True
        self._wake.set()

    def reassigned(self, claim_now: bool = False) -> None:
        """``assigned`` answers differently now: claim what was added, hand over what was
        taken away (snapshot, stop, release). From any thread. ``claim_now``: the
        holder of some of them has gone quiet, so try their leases at once."""
        self._post("assigned", "", None)
        if claim_now:
            self.keeper.claim_now()

    def _emit(self, kind: str, ident: str, detail: str) -> None:
        events_log.log(EVENT_LEVELS.get(kind, logging.INFO), "%s %s: %s", kind, ident, detail)
        if self.on_event is not None:
            self.on_event(kind, ident, detail)

    # -- the control loop --------------------------------------------------------------
    def _loop(self) -> None:
        """Sleep until something is due; an idle wake-up costs O(1), not O(strategies)."""
        watch_stop = self._start_watch()
        due = _Due(snapshot=self.clock.now() + timedelta(seconds=self.settings.snapshot_interval))
        while not self._stopping.is_set():
            self._wake.clear()
            with self._clock_hold():  # the work of one wake-up costs no simulated time
                self._turn(due)
                wake_at = min(t for t in (due.schedule, due.snapshot, self._until) if t is not None)
                self._set_barrier(wake_at)  # a simulated clock waits for us there
                self._hold_for_claims()
            wait = min(
                due.poll - time.monotonic(),
                self.clock.real_seconds((wake_at - self.clock.now()).total_seconds()),
            )
            self._wake.wait(max(wait, 0.005))
        watch_stop.set()
        self._set_barrier(None)
        self._release_claim_hold()

    def _turn(self, due: _Due) -> None:
        """One wake-up of the control loop; moves ``due`` on."""
        mono, now = time.monotonic(), self.clock.now()
        try:
            changed = self._drain_events(now)
            if mono >= due.poll or mono >= due.resync or self._force:
                force = mono >= due.resync or self._force
                self._force = False
                due.poll = mono + self.settings.poll_interval  # first: an error cannot spin the loop
                if force:
                    due.resync = mono + self.settings.resync_interval
                changed = self._reconcile_if_changed(now, force=force) or changed
            if changed or due.first:
                self._want()
            if changed or due.first or (due.schedule is not None and now >= due.schedule):
                self._apply_schedule(now)
                due.schedule, due.first = self._next_schedule(now), False
            if now >= due.snapshot:
                due.snapshot = now + timedelta(seconds=self.settings.snapshot_interval)
                self.snapshot_all()
            self._sweep_removed()
            self._flush_status()
            if self.snapshots.fatal is not None:
                raise self.snapshots.fatal
        except StoreLost as exc:
            self._give_up(exc)
        except StoreError as exc:
            log.error("store unavailable, retrying: %s", exc)
            due.poll = mono + min(self.settings.poll_interval * 5, 10)
        except Exception:  # the loop must survive anything one strategy does
            log.exception("orchestrator loop error")

    def _hold_for_claims(self) -> None:
        """While a lease claim is pending, a simulated clock waits for its answer."""
        pending = any(
            s.lease is None
            and not s.elsewhere
            and s.spec is not None
            and s.spec.enabled
            and s.policy is not None
            and self.assigned(s.id)
            for s in self.slots.values()
        )
        if pending and self._claim_hold is None:
            self._claim_hold = self._clock_hold()
            self._claim_hold.__enter__()
        elif not pending:
            self._release_claim_hold()

    def _release_claim_hold(self) -> None:
        if self._claim_hold is not None:
            self._claim_hold.__exit__(None, None, None)
            self._claim_hold = None

    def _give_up(self, exc: QsmError) -> None:
        """A fatal store error: fence every engine off and stop."""
        self.fatal = exc
        log.critical("%s", exc)
        self._emit("fatal", "orchestrator", str(exc))
        for slot in self.slots.values():
            if slot.worker is not None:
                slot.worker.revoke()
        self._stopping.set()

    def _next_schedule(self, now: datetime) -> datetime | None:
        """The earliest schedule transition or restart time of any strategy."""
        policies = [s.policy for s in self.slots.values() if s.policy is not None and s.spec]
        times = [t for t in (self.lifecycle.next_transition(policies, now),) if t is not None]
        times.extend(s.retry_at for s in self.slots.values() if s.retry_at is not None)
        return min(times, default=None)

    def _start_watch(self) -> threading.Event:
        """Follow the store's change notifications on a thread, if it has them."""
        stop = threading.Event()
        try:
            changes = self.store.watch()
        except QsmError as exc:
            log.warning("change notifications unavailable, polling: %s", exc)
            changes = None
        if changes is None:
            return stop

        def follow() -> None:
            try:
                for _ in changes:
                    if stop.is_set():
                        return
                    self.wake()
            except Exception as exc:
                log.warning("change stream ended (%s); polling continues", exc)

        threading.Thread(target=follow, name="qsm-watch", daemon=True).start()
        return stop

    # -- reconcile ---------------------------------------------------------------
    def _reconcile_if_changed(self, now: datetime, force: bool) -> bool:
        token = self.store.change_token()
        if not force and token == self._seen_token:
            return False
        self._seen_token = token
        self.reconcile(self.store.list_strategies(), now)
        return True

    def reconcile(self, documents: list[dict[str, Any]], now: datetime | None = None) -> None:
        """Make the slots match ``documents`` (all of them, from one query)."""
        now = now or self.clock.now()
        self.reconciles += 1
        seen: set[str] = set()
        for index, document in enumerate(documents):
            ident, spec, problem = self._parse(document, index)
            if ident in seen:
                continue
            seen.add(ident)
            slot = self.slots.get(ident) or self.slots.setdefault(ident, Slot(ident))
            slot.removed = False
            version = (
                document.get("updated_at") if isinstance(document, dict) else None,
                spec.runtime_fingerprint() if spec else problem,
                spec.enabled if spec else None,
            )
            if version == slot.version:
                continue
            self._update_slot(slot, spec, problem, version, now)
        for ident in [i for i in self.slots if i not in seen]:
            slot = self.slots[ident]
            if slot.removed:
                continue
            slot.removed, slot.spec, slot.policy, slot.version = True, None, None, None
            if slot.worker is not None:
                self._emit("removed", ident, "document removed; stopping")
                self._submit_stop(slot, WorkerState.STOPPED, forget=True)
            self._forget_if_idle(slot)

    def _parse(self, document: Any, index: int) -> tuple[str, StrategySpec | None, str | None]:
        return parse_document(document, index)

    def _update_slot(
        self,
        slot: Slot,
        spec: StrategySpec | None,
        problem: str | None,
        version: Hashable,
        now: datetime,
    ) -> None:
        changed_doc = slot.version is not None
        slot.version = version
        if slot.state is WorkerState.FAILED and changed_doc:
            slot.failures.clear()
            slot.retry_at = None
            slot.state = WorkerState.WAITING
        self._dirty.add(slot.id)
        if spec is None:
            self._block(slot, _without_prefix(problem or "invalid document", slot.id))
            return
        slot.engine = spec.engine
        if not spec.enabled:
            slot.spec = spec
            if slot.worker is not None:
                self._submit_stop(slot, WorkerState.DISABLED, forget=True)
            slot.state, slot.reason = WorkerState.DISABLED, "disabled in its document"
            return
        try:
            hooks = self.registry.resolve(spec.engine)
            policy = self.lifecycle.policy_for(spec)
            self.lifecycle.phase(policy, now)
        except QsmError as exc:
            self._block(slot, _without_prefix(str(exc), spec.id))
            return
        fingerprint = spec.runtime_fingerprint()
        if slot.worker is not None and fingerprint != slot.fingerprint:
            self._emit("reload", slot.id, "document changed; restarting with the new spec")
            self._submit_stop(slot, WorkerState.STOPPED, forget=True)
        slot.spec, slot.policy, slot.fingerprint, slot.hooks = spec, policy, fingerprint, hooks
        if slot.state in (WorkerState.BLOCKED, WorkerState.DISABLED):
            slot.state, slot.reason = WorkerState.WAITING, None

    def _block(self, slot: Slot, reason: str) -> None:
        if slot.worker is not None:
            self._submit_stop(slot, WorkerState.BLOCKED, forget=True)
        slot.spec, slot.policy = None, None
        if slot.state is not WorkerState.BLOCKED or slot.reason != reason:
            self._emit("blocked", slot.id, reason)
        slot.state, slot.reason = WorkerState.BLOCKED, reason

    # -- ownership ---------------------------------------------------------------
    def _want(self) -> None:
        """Tell the lease keeper which leases to hold: runnable strategies, and those
        whose engine is still running or whose last snapshot is still unwritten."""
        pending = self.snapshots.pending_ids()
        wanted = frozenset(
            s.id
            for s in self.slots.values()
            if (s.spec is not None and s.spec.enabled and not s.removed and self.assigned(s.id))
            or s.worker is not None
            or self._busy(s)
            or s.id in pending
        )
        if wanted != self._wanted:
            self._wanted = wanted
            self.keeper.want(wanted)

    def _on_leases(self, change: LeaseChange) -> None:
        for sid, lease in change.claimed.items():
            slot = self.slots.get(sid)
            if slot is not None:
                slot.lease, slot.elsewhere = lease, False
                if slot.state is WorkerState.STANDBY:
                    slot.state = WorkerState.WAITING
                self._dirty.add(sid)
        for sid in change.elsewhere:
            slot = self.slots.get(sid)
            if slot is not None and slot.lease is None:
                slot.elsewhere = True
                if slot.state not in (WorkerState.BLOCKED, WorkerState.DISABLED):
                    slot.state = WorkerState.STANDBY
        for sid in change.lost:
            slot = self.slots.get(sid)
            if slot is None:
                continue
            slot.lease, slot.elsewhere = None, True
            if slot.worker is not None and slot.worker.context is not None:
                self._emit("lost", sid, "lease taken by another orchestrator; stopping")
                slot.worker.revoke()
                self._submit_stop(slot, WorkerState.STANDBY, forget=True, save_state=False)
            if slot.state not in (WorkerState.BLOCKED, WorkerState.DISABLED):
                slot.state = WorkerState.STANDBY
            self._dirty.add(sid)
        for sid in change.expired:
            slot = self.slots.get(sid)
            if slot is None:
                continue
            slot.lease = None
            if slot.worker is not None and slot.worker.context is not None:
                self._emit("fenced", sid, "lease not renewed in time; engine stopped until it is")
                slot.worker.revoke()
                self._submit_stop(slot, WorkerState.WAITING, forget=True)
            if slot.state in (WorkerState.RUNNING, WorkerState.STARTING, WorkerState.PAUSED):
                slot.state = WorkerState.WAITING
            slot.reason = "lease not renewed in time (store unreachable?)"
            self._dirty.add(sid)

    # -- schedule and supervision --------------------------------------------------
    def _apply_schedule(self, now: datetime) -> None:
        starts: list[Slot] = []
        for slot in list(self.slots.values()):
            if not self.assigned(slot.id):
                self._hand_over(slot)
                continue
            if slot.spec is None or slot.policy is None or not slot.spec.enabled or self._busy(slot):
                continue
            if slot.state is WorkerState.FAILED or slot.lease is None:
                continue
            if slot.worker is None:
                slot.worker = self._make_worker(slot, slot.spec, slot.hooks)
            if slot.retry_at is not None:
                if now < slot.retry_at:
                    continue
                slot.retry_at = None
            phase = self.lifecycle.phase(slot.policy, now)
            if phase != slot.phase:
                slot.phase = phase
                self._dirty.add(slot.id)
            state = slot.worker.state
            if phase.running and state not in (WorkerState.RUNNING, WorkerState.FINISHED):
                starts.append(slot)
            elif not phase.running and state is WorkerState.RUNNING:
                kind = WorkerState.PAUSED if phase.reason == "lunch break" else WorkerState.WAITING
                self._emit(
                    "paused" if kind is WorkerState.PAUSED else "closed",
                    slot.id,
                    f"{phase.reason}; next start {_fmt(phase.until)}",
                )
                self._submit_stop(slot, kind, forget=False)
            elif not phase.running and slot.state not in (
                WorkerState.PAUSED,
                WorkerState.WAITING,
                WorkerState.FINISHED,
            ):
                slot.state = WorkerState.WAITING
        # A strategy whose last snapshot is not in the store yet starts once it is
        # (the writer's report wakes the loop): it never starts from an older state.
        starts = [s for s in starts if self.snapshots.pending(s.id) is None]
        if starts:
            self._start_all(starts)

    def _hand_over(self, slot: Slot) -> None:
        """A strategy assigned elsewhere now: stop its engine here with a last snapshot;
        its lease is released once nothing here needs it (see :meth:`_want`)."""
        if self._busy(slot) or slot.worker is None:
            return
        if slot.worker.context is not None:
            self._emit("moved", slot.id, "assigned elsewhere; snapshotting and stopping")
            self._submit_stop(slot, WorkerState.STANDBY, forget=True)
        else:
            slot.worker = None
        slot.state = WorkerState.STANDBY

    def _start_all(self, slots: list[Slot]) -> None:
        """Start ``slots`` with their latest snapshots, read in one bulk call here (on
        the control thread, whose deep stack decodes whatever the store holds)."""
        stored = self.store.latest_snapshots([s.id for s in slots])
        for slot in slots:
            assert slot.lease is not None and slot.worker is not None
            self._submit_start(slot, slot.lease, stored.get(slot.id))

    def _make_worker(self, slot: Slot, spec: StrategySpec, hooks: Any) -> EngineWorker:
        engine_dir = Path(self.settings.data_dir) / "engines" / spec.engine / safe_dirname(spec.id)
        options = dict(self.settings.engine_options.get(spec.engine, {}))
        classes = self.classes
        keeper = self.keeper
        worker: EngineWorker

        def make_context() -> EngineContext:
            epoch = worker.lease_epoch
            fence = Fence(lambda: keeper.valid(spec.id, epoch))
            return EngineContext(
                spec=spec,
                data_dir=engine_dir,
                classes=classes,
                clock=self.clock,
                options=options,
                fence=fence,
                lease_epoch=epoch,
            )

        def sink(state: dict[str, Any]) -> None:  # a stopping worker's last state, fenced
            self.snapshots.add(self._snapshot_write(slot.id, spec.engine, worker.lease_epoch, state))

        worker = EngineWorker(
            spec,
            hooks,
            make_context,
            state_sink=sink,
            on_exit=lambda w, exc: self._post("exited", spec.id, (w, exc)),
            stop_timeout=self.settings.stop_timeout,
        )
        worker.lease_epoch = 0
        return worker

    def _busy(self, slot: Slot) -> bool:
        return self.pool is not None and self.pool.busy(slot.id)

    def _submit(
        self, slot: Slot, worker: EngineWorker, op: Callable[[], None], timeout: float, name: str
    ) -> Future[Any]:
        """Run ``op`` on the hook pool after the slot's earlier operations."""
        assert self.pool is not None

        def hung() -> None:  # in the pool's watchdog: never block here
            worker.abandon(f"{name} did not return within {timeout:g}s; engine abandoned")
            self._post("hung", slot.id, (worker, name, timeout))

        hold = self._clock_hold()  # a simulated clock waits for the hook
        hold.__enter__()
        future = self.pool.submit(slot.id, op, timeout, name=name, on_timeout=hung)
        future.add_done_callback(lambda _f: hold.__exit__(None, None, None))
        return future

    def _submit_start(self, slot: Slot, lease: Lease, snapshot: Snapshot | None) -> None:
        worker = slot.worker
        assert worker is not None
        slot.state = WorkerState.STARTING
        slot.restored_seq = snapshot.seq if snapshot is not None else None
        worker.lease_epoch = lease.epoch

        def op() -> None:
            try:
                if snapshot is not None and snapshot.error:
                    from strategy_manager.core.errors import SnapshotError

                    raise SnapshotError(
                        f"{slot.id}: snapshot #{snapshot.seq} cannot be restored: {snapshot.error} "
                        "(strategy-manager state rollback brings back an earlier one)"
                    )
                worker.start(snapshot=snapshot.state if snapshot is not None else None)
            except Exception as exc:
                self._post("start_failed", slot.id, (worker, exc))
            else:
                self._post("started", slot.id, worker)

        self._submit(slot, worker, op, self.settings.start_timeout, "start")

    def _submit_stop(self, slot: Slot, final: WorkerState, forget: bool, save_state: bool = True) -> None:
        worker = slot.worker
        if worker is None:
            return
        if forget:
            slot.worker = None
        slot.state = final

        def op() -> None:
            worker.stop(save_state=save_state, final_state=final)
            self._post("stopped", slot.id, (worker, final, forget))

        self._submit(slot, worker, op, self._stop_budget(), "stop")

    def _stop_budget(self) -> float:
        s = self.settings
        return WIND_DOWN_SECONDS + s.snapshot_timeout + 2 * s.stop_timeout + 1.0

    def _post(self, kind: str, ident: str, payload: Any) -> None:
        self._events.put((kind, ident, payload))
        self._wake.set()

    def _drain_events(self, now: datetime) -> bool:
        """Apply what workers, leases and the writer reported; True if there was anything."""
        seen = False
        while True:
            try:
                kind, ident, payload = self._events.get_nowait()
            except queue.Empty:
                return seen
            seen = True
            if kind == "leases":
                self._on_leases(payload)
                continue
            slot = self.slots.get(ident)
            if slot is None:
                continue
            self._dirty.add(ident)
            self._apply_event(slot, kind, payload, now)
            self._forget_if_idle(slot)

    def _apply_event(self, slot: Slot, kind: str, payload: Any, now: datetime) -> None:
        ident = slot.id
        if kind == "started" and slot.worker is not None and payload is slot.worker:
            slot.starts += 1
            if slot.worker.state is not WorkerState.RUNNING:
                return  # it ended while starting: its exit event said so already
            slot.state, slot.reason = WorkerState.RUNNING, None
            restored = f"restored snapshot #{slot.restored_seq}" if slot.restored_seq else "fresh"
            self._emit("started", ident, restored)
        elif kind == "start_failed" and payload[0] is slot.worker:
            self._failure(slot, payload[1], now)
        elif kind == "exited" and payload[0] is slot.worker:
            if payload[1] is None:
                slot.state, slot.reason = WorkerState.FINISHED, "engine finished on its own"
                self._emit("finished", ident, "engine finished on its own")
                self._submit_stop(slot, WorkerState.FINISHED, forget=False)
            else:
                self._failure(slot, payload[1], now)
        elif kind == "hung":
            worker, name, timeout = payload
            reason = f"{name} did not return within {timeout:g}s; engine abandoned (its thread still runs)"
            self._emit("hung", ident, reason)
            if worker is slot.worker:  # a later worker of the strategy is not affected
                slot.worker = None
                slot.state, slot.reason = WorkerState.FAILED, reason
        elif kind == "stopped":
            worker, final, forget = payload
            if isinstance(worker.error, HookError) and not isinstance(worker.error, HookTimeout):
                slot.reason = _without_prefix(str(worker.error), ident)  # a hung stop or leftover threads
                self._emit("warning", ident, slot.reason)
            elif forget and final is not WorkerState.FAILED:
                self._emit("stopped", ident, "snapshot saved")
        elif kind == "snapshot":
            seq, problem = payload
            if problem is None:
                slot.last_snapshot_seq, slot.last_snapshot_at = seq, self.wall.now()
            else:
                slot.reason = _without_prefix(problem, ident)
                self._emit("warning", ident, slot.reason)

    def _sweep_removed(self) -> None:
        for slot in [s for s in self.slots.values() if s.removed]:
            self._forget_if_idle(slot)

    def _forget_if_idle(self, slot: Slot) -> None:
        idle = slot.worker is None and not self._busy(slot) and self.snapshots.pending(slot.id) is None
        if slot.removed and idle:
            self.slots.pop(slot.id, None)
            self._dirty.discard(slot.id)

    def _failure(self, slot: Slot, exc: BaseException, now: datetime) -> None:
        error = _without_prefix(str(exc) or type(exc).__name__, slot.id)
        slot.reason = error
        s = self.settings
        verdict = judge(
            slot.failures, exc, now, s.restart_max, s.restart_window, s.backoff_base, s.backoff_cap
        )
        if slot.worker is not None:  # clean up what the crash left; its state is suspect
            slot.worker.revoke()
            self._submit_stop(slot, WorkerState.FAILED, forget=False, save_state=False)
        cause = permanent(exc)
        if verdict.retry_at is None:
            slot.state = WorkerState.FAILED
            if isinstance(cause, EngineHalted):
                self._emit("halted", slot.id, error)
            elif cause is not None:
                self._emit(
                    "failed", slot.id, f"{error}. Not retried: fix the cause, then 'strategies enable'."
                )
            else:
                self._emit(
                    "failed",
                    slot.id,
                    f"{verdict.attempt} failures in {s.restart_window:.0f}s; "
                    f"last: {error}. Fix the document or run 'strategies enable'.",
                )
            return
        slot.retry_at = verdict.retry_at
        slot.restarts += 1
        slot.state = WorkerState.BACKOFF
        self._emit("error", slot.id, f"{error}; restart {verdict.attempt} in {verdict.delay:.1f}s")

    # -- snapshots, status and shutdown -----------------------------------------------
    def snapshot_all(self) -> int:
        """Ask every running engine for its state, on the hook pool; each state goes to
        the snapshot writer when it comes. Returns how many were asked."""
        asked = 0
        round_: list[Future[Any]] = []
        for slot in self.slots.values():
            worker = slot.worker
            if not slot.running or worker is None or self._busy(slot):
                continue
            round_.append(self._submit_snapshot(slot, worker))
            asked += 1
        self._snapshot_round = round_
        return asked

    def _submit_snapshot(self, slot: Slot, worker: EngineWorker) -> Future[Any]:
        sid, engine, epoch = slot.id, slot.engine or "", worker.lease_epoch

        def op() -> None:
            try:
                state = worker.snapshot()
            except QsmError as exc:
                self._post("snapshot", sid, (None, str(exc)))
                return
            if state is not None:
                self.snapshots.add(self._snapshot_write(sid, engine, epoch, state))

        return self._submit(slot, worker, op, self.settings.snapshot_timeout, "snapshot")

    def _snapshot_write(self, sid: str, engine: str, epoch: int, state: dict[str, Any]) -> SnapshotWrite:
        return SnapshotWrite(sid, engine, state, self.clock.now(), lease=(self.owner, epoch))

    def _status(self, slot: Slot) -> StatusRecord:
        phase = slot.phase
        details: dict[str, Any] = {
            "starts": slot.starts,
            "restored_seq": slot.restored_seq,
            "reason": slot.reason,
        }
        if slot.last_snapshot_seq is not None:
            details["last_snapshot_seq"] = slot.last_snapshot_seq
            details["last_snapshot_at"] = slot.last_snapshot_at.isoformat() if slot.last_snapshot_at else None
        if slot.lease is not None:
            details["epoch"] = slot.lease.epoch
        return StatusRecord(
            strategy_id=slot.id,
            state=str(slot.state),
            engine=slot.engine,
            owner=self.owner,
            heartbeat=self.wall.now(),
            restarts=slot.restarts,
            last_error=None if slot.state in (WorkerState.DISABLED, WorkerState.FINISHED) else slot.reason,
            next_transition=phase.next_kind if phase else None,
            next_transition_at=phase.until if phase else None,
            details=details,
        )

    def _flush_status(self) -> None:
        if not self._dirty:
            return
        slots = [self.slots[i] for i in self._dirty if i in self.slots]
        records = [self._status(slot) for slot in slots if self._reports(slot)]
        dirty, self._dirty = self._dirty, set()
        try:
            self.store.write_status(records)
        except QsmError as exc:
            self._dirty |= dirty  # written again with fresh values next time
            log.error("status write failed: %s", exc)

    def _reports(self, slot: Slot) -> bool:
        """Whether this process may write the strategy's status: only while it holds
        the lease (checked now, on the fence's clock), or when the document itself
        keeps the strategy from running anywhere."""
        if slot.spec is None or not slot.spec.enabled:
            return slot.state in (WorkerState.BLOCKED, WorkerState.DISABLED) and self.assigned(slot.id)
        return self.keeper.lease(slot.id) is not None

    def _shutdown(self, timeout: float) -> None:
        """Bounded by ``timeout`` plus a margin: stops run in parallel with deadlines,
        engines that do not stop in time are abandoned and reported."""
        deadline = time.monotonic() + timeout + SHUTDOWN_MARGIN_SECONDS
        self.keeper.want(self.keeper.held())  # claim nothing more while going away
        pool = self.pool
        self._drain_events(self.clock.now())
        stops: dict[str, Future[Any]] = {}
        if pool is not None:
            working = [s for s in self.slots.values() if s.worker is not None]
            pool.grow(min(256, max(len(working), self.settings.hook_threads)))
            budget = max(0.1, timeout)
            for slot in working:
                worker = slot.worker
                assert worker is not None
                final = worker.state if slot.state is WorkerState.FAILED else WorkerState.STOPPED

                def op(worker: EngineWorker = worker, final: WorkerState = final) -> None:
                    worker.stop(save_state=True, final_state=final)

                stops[slot.id] = self._submit(slot, worker, op, budget, "stop")
                slot.state = WorkerState.STOPPED if slot.state is not WorkerState.FAILED else slot.state
            wait_all(
                list(stops.values()), timeout=max(0.0, deadline - SHUTDOWN_MARGIN_SECONDS - time.monotonic())
            )
        abandoned = {
            sid for sid, f in stops.items() if not f.done() or isinstance(f.exception(), HookTimeout)
        }
        if pool is not None:
            abandoned |= {str(a.key) for a in pool.abandoned() if not a.returned}
        for sid in sorted(abandoned):
            log.error("%s: engine did not stop in time; abandoned", sid)
            if sid in self.slots:
                self.slots[sid].state = WorkerState.FAILED
                self.slots[sid].reason = "did not stop in time at shutdown; abandoned"
        self.snapshots.stop()
        left = self.snapshots.flush(max(0.5, deadline - time.monotonic() - 1.0))
        if left:
            log.error(
                "%d snapshots could not be written before exit "
                "(the strategies resume from their previous ones)",
                left,
            )
        self._drain_events(self.clock.now())
        self._dirty.update(self.slots)
        self._flush_status()
        self.keeper.stop(keep=abandoned)
        if pool is not None:
            pool.shutdown()
            self.pool = None


def _everything(strategy_id: str) -> bool:
    return True


def _without_prefix(message: str, ident: str) -> str:
    """Messages name their strategy; a status line about that strategy need not."""
    return message[len(ident) + 2 :] if message.startswith(f"{ident}: ") else message


def _fmt(when: datetime | None) -> str:
    return when.isoformat(timespec="minutes") if when else "none"


__all__ = ["MultiStrategyOrchestrator"]
