"""MultiStrategyOrchestrator: keep the running workers equal to the documents.

One control thread does all deciding. It wakes on a store change (change stream
or ``change_token`` poll), on the next schedule transition, on a worker event
(crashed, finished, started, stopped), on a retry time or on the periodic
snapshot, and then reconciles level-triggered: the whole desired set against the
running set, so a missed event heals at the next resync. Engine hooks run on a
small thread pool, one operation at a time per strategy, so a slow engine never
holds up the others.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
from attrs import define, field

from strategy_manager.core.classloader import ClassLoader
from strategy_manager.core.clock import Clock, SystemClock
from strategy_manager.core.context import EngineContext, safe_dirname
from strategy_manager.core.errors import EngineHalted, HookError, QsmError, StoreError
from strategy_manager.core.lifecycle import LifecycleManager
from strategy_manager.core.ownership import Leases, default_owner
from strategy_manager.core.registry import EngineRegistry
from strategy_manager.core.schedule import Phase, Policy
from strategy_manager.core.settings import Settings
from strategy_manager.core.snapshots import SnapshotWriter
from strategy_manager.core.spec import StrategySpec, describe, parse_strategy
from strategy_manager.core.store import Lease, SnapshotWrite, StatusRecord, Store
from strategy_manager.core.worker import EngineWorker, WorkerState

log = logging.getLogger("strategy_manager.orchestrator")

HEARTBEAT_SECONDS = 5.0
#: Thread stack for engine and pool threads: hundreds of idle threads stay cheap.
THREAD_STACK_BYTES = 1024 * 1024

EventSink = Callable[[str, str, str], None]


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
    busy: Future[Any] | None = None
    failures: deque[float] = field(factory=deque)
    restarts: int = 0
    retry_at: datetime | None = None
    failed_version: Hashable = None
    starts: int = 0
    restored_seq: int | None = None
    #: This orchestrator's lease on the strategy; None while another one holds it.
    lease: Lease | None = None
    phase: Phase | None = None

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
    ) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry or EngineRegistry.from_entry_points(settings)
        self.clock = clock or SystemClock()
        #: Leases and heartbeats are wall-clock facts even when the schedule is simulated.
        self.wall = SystemClock()
        self.lifecycle = LifecycleManager(settings)
        self.on_event = on_event
        self.owner = owner or default_owner()
        self.leases = Leases(store, self.owner, settings.lease_seconds)
        self.slots: dict[str, Slot] = {}
        self.classes = ClassLoader(settings.import_paths, settings.engine_class_allow)
        self._events: queue.SimpleQueue[tuple[str, str, Any]] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._force = False
        self.snapshots = SnapshotWriter(store, settings.backoff_base, settings.backoff_cap)
        self._seen_token: Hashable = object()
        self._dirty: set[str] = set()
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
        """Read the documents once, then run the control loop on a background thread."""
        if self._thread is not None:
            return
        threading.stack_size(THREAD_STACK_BYTES)
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="qsm-hooks")
        self._stopping.clear()
        self.lifecycle.calendars.calendar(self.settings.default_calendar)  # pays the import
        anchor = getattr(self.clock, "anchor", None)
        if anchor is not None:  # a simulated clock starts its day now that we are ready
            anchor()
        try:
            self._reconcile_if_changed(self.clock.now(), force=True)
        except StoreError as exc:
            log.error("store unavailable at start, retrying: %s", exc)
        self._thread = threading.Thread(target=self._loop, name="qsm-orchestrator", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Snapshot every running worker in one bulk write, stop them all, and return."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._shutdown(timeout if timeout is not None else self.settings.stop_timeout)

    def run(self, seconds: float | None = None) -> None:
        """Start, block for ``seconds`` of clock time (or until :meth:`stop`), stop."""
        self.start()
        deadline = None if seconds is None else self.clock.now() + timedelta(seconds=seconds)
        while not self._stopping.is_set():
            if deadline is not None and self.clock.now() >= deadline:
                break
            wait = (
                0.5
                if deadline is None
                else min(0.5, self.clock.real_seconds((deadline - self.clock.now()).total_seconds()))
            )
            self._stopping.wait(max(wait, 0.001))
        self.stop()

    def request_stop(self) -> None:
        """Ask :meth:`run` to return (from a signal handler); never blocks."""
        self._stopping.set()
        self._wake.set()

    def wake(self) -> None:
        """Look at the store again now (after a programmatic change)."""
        self._force = True
        self._wake.set()

    def _emit(self, kind: str, ident: str, detail: str) -> None:
        log.info("%s %s: %s", kind, ident, detail)
        if self.on_event is not None:
            self.on_event(kind, ident, detail)

    # -- the control loop --------------------------------------------------------------
    def _loop(self) -> None:
        """Sleep until something is due; an idle wake-up costs O(1), not O(strategies)."""
        watch_stop = self._start_watch()
        next_poll = next_resync = next_heartbeat = next_claim = 0.0
        next_snapshot = self.clock.now() + timedelta(seconds=self.settings.snapshot_interval)
        schedule_at: datetime | None = None  # the next schedule transition or retry
        first = True
        while not self._stopping.is_set():
            self._wake.clear()
            mono, now = time.monotonic(), self.clock.now()
            try:
                changed = self._drain_events(now)
                if mono >= next_poll or mono >= next_resync or self._force:
                    force = mono >= next_resync or self._force
                    self._force = False
                    if self._reconcile_if_changed(now, force=force):
                        next_claim, changed = 0.0, True
                    next_poll = mono + self.settings.poll_interval
                    if force:
                        next_resync = mono + self.settings.resync_interval
                if mono >= next_claim:  # due times move first, so a store error cannot spin the loop
                    next_claim, changed = mono + self.settings.lease_seconds / 3, True
                    self._claim()
                if changed or first or (schedule_at is not None and now >= schedule_at):
                    self._apply_schedule(now)
                    schedule_at, first = self._next_schedule(now), False
                self.snapshots.retry(mono)
                if now >= next_snapshot:
                    next_snapshot = now + timedelta(seconds=self.settings.snapshot_interval)
                    self.snapshot_all()
                if mono >= next_heartbeat:
                    self._dirty.update(self.slots)
                    next_heartbeat = mono + HEARTBEAT_SECONDS
                self._flush_status()
            except StoreError as exc:
                log.error("store unavailable, retrying: %s", exc)
                next_poll = mono + min(self.settings.poll_interval * 5, 10)
            except Exception:  # the loop must survive anything one strategy does
                log.exception("orchestrator loop error")
            wake_at = min(t for t in (schedule_at, next_snapshot) if t is not None)
            wait = min(next_poll, next_heartbeat, next_claim) - time.monotonic()
            wait = min(wait, self.clock.real_seconds((wake_at - self.clock.now()).total_seconds()))
            self._wake.wait(max(wait, 0.005))
        watch_stop.set()

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

    # -- ownership ---------------------------------------------------------------
    def _claim(self) -> None:
        """Take or renew the lease of every runnable strategy; let go of lost ones.

        A strategy another live orchestrator holds stays in STANDBY here. A worker
        whose lease was lost (this process stalled past its lease) is stopped
        without a snapshot: the new owner's state wins.
        """
        wanted = [s.id for s in self.slots.values() if s.spec is not None and s.spec.enabled]
        held = self.leases.claim(wanted, self.wall.now())
        for slot in self.slots.values():
            slot.lease = held.get(slot.id)
            if slot.lease is not None or slot.spec is None or not slot.spec.enabled:
                if slot.state is WorkerState.STANDBY:
                    slot.state = WorkerState.WAITING
                continue
            if slot.worker is not None and slot.worker.state is WorkerState.RUNNING:
                self._emit("lost", slot.id, "lease taken by another orchestrator; stopping")
                self._submit_stop(slot, WorkerState.STANDBY, forget=True, save_state=False)
            slot.state = WorkerState.STANDBY

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
            if not _pending(slot):
                del self.slots[ident]

    def _parse(self, document: Any, index: int) -> tuple[str, StrategySpec | None, str | None]:
        try:
            spec = parse_strategy(document)
        except QsmError as exc:
            ident = describe(document)
            return (f"document #{index}" if ident == "document" else ident), None, str(exc)
        return spec.id, spec, None

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

    def _make_worker(self, slot: Slot, spec: StrategySpec, hooks: Any) -> EngineWorker:
        engine_dir = Path(self.settings.data_dir) / "engines" / spec.engine / safe_dirname(spec.id)
        options = dict(self.settings.engine_options.get(spec.engine, {}))
        classes = self.classes

        def make_context() -> EngineContext:
            return EngineContext(
                spec=spec, data_dir=engine_dir, classes=classes, clock=self.clock, options=options
            )

        def load_snapshot() -> dict[str, Any] | None:
            snap = self.store.latest_snapshot(spec.id)
            slot.restored_seq = snap.seq if snap else None
            return snap.state if snap else None

        def sink(state: dict[str, Any]) -> None:  # a stopping worker's last state, fenced
            with contextlib.suppress(StoreError):  # kept and retried by the snapshot writer
                self.snapshots.save([self._snapshot_write(slot, state)])

        return EngineWorker(
            spec,
            hooks,
            make_context,
            load_snapshot=load_snapshot,
            state_sink=sink,
            on_exit=lambda w, exc: self._post("exited", spec.id, (w, exc)),
            stop_timeout=self.settings.stop_timeout,
        )

    # -- schedule and supervision --------------------------------------------------
    def _apply_schedule(self, now: datetime) -> None:
        for slot in list(self.slots.values()):
            if slot.spec is None or slot.policy is None or not slot.spec.enabled or _pending(slot):
                continue
            if slot.state in (WorkerState.FAILED, WorkerState.STANDBY) or slot.lease is None:
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
                self._submit_start(slot)
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

    def _submit(self, slot: Slot, op: Callable[[], None]) -> None:
        """Run ``op`` on the hook pool after the slot's previous operation."""
        assert self._pool is not None
        previous = slot.busy

        def chained() -> None:
            if previous is not None:
                with contextlib.suppress(Exception):  # the previous op reported it
                    previous.result()
            op()

        slot.busy = self._pool.submit(chained)

    def _submit_start(self, slot: Slot) -> None:
        worker = slot.worker
        assert worker is not None
        slot.state = WorkerState.STARTING

        def op() -> None:
            try:
                worker.start()
            except Exception as exc:
                self._post("start_failed", slot.id, (worker, exc))
            else:
                self._post("started", slot.id, worker)

        self._submit(slot, op)

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

        self._submit(slot, op)

    def _post(self, kind: str, ident: str, payload: Any) -> None:
        self._events.put((kind, ident, payload))
        self._wake.set()

    def _drain_events(self, now: datetime) -> bool:
        """Apply what workers reported; True if there was anything."""
        seen = False
        while True:
            try:
                kind, ident, payload = self._events.get_nowait()
            except queue.Empty:
                return seen
            seen = True
            slot = self.slots.get(ident)
            if slot is None:
                continue
            self._dirty.add(ident)
            if kind == "started" and payload is slot.worker:
                slot.state, slot.reason = WorkerState.RUNNING, None
                slot.starts += 1
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
            elif kind == "stopped":
                worker, final, forget = payload
                if isinstance(worker.error, HookError):  # a stop that hung or left threads behind
                    slot.reason = _without_prefix(str(worker.error), ident)
                    self._emit("warning", ident, slot.reason)
                elif forget and final is not WorkerState.FAILED:
                    self._emit("stopped", ident, "snapshot saved")
                if slot.removed and not _pending(slot):
                    del self.slots[ident]

    def _failure(self, slot: Slot, exc: BaseException, now: datetime) -> None:
        error = str(exc) or type(exc).__name__
        slot.reason = error
        window = self.settings.restart_window
        mono = now.timestamp()
        slot.failures.append(mono)
        while slot.failures and slot.failures[0] < mono - window:
            slot.failures.popleft()
        if slot.worker is not None:  # clean up what the crash left; its state is suspect
            self._submit_stop(slot, WorkerState.FAILED, forget=False, save_state=False)
        if isinstance(exc, EngineHalted):
            slot.state = WorkerState.FAILED
            slot.failed_version = slot.version
            self._emit("halted", slot.id, _without_prefix(error, slot.id))
            return
        if len(slot.failures) > self.settings.restart_max:
            slot.state = WorkerState.FAILED
            slot.failed_version = slot.version
            self._emit(
                "failed",
                slot.id,
                f"{len(slot.failures)} failures in {window:.0f}s; "
                f"last: {error}. Fix the document or run 'strategies enable'.",
            )
            return
        attempt = len(slot.failures)
        delay = random.uniform(
            0, min(self.settings.backoff_cap, self.settings.backoff_base * 2 ** (attempt - 1))
        )
        slot.retry_at = now + timedelta(seconds=delay)
        slot.restarts += 1
        slot.state = WorkerState.BACKOFF
        self._emit("error", slot.id, f"{error}; restart {attempt} in {delay:.1f}s")

    # -- snapshots, status and shutdown -----------------------------------------------
    def snapshot_all(self) -> int:
        """Snapshot every running worker and write them in one bulk call."""
        writes = []
        now = self.clock.now()
        for slot in self.slots.values():
            if not slot.running or slot.worker is None or _pending(slot):
                continue
            try:
                state = slot.worker.snapshot()
            except QsmError as exc:
                log.error("%s", exc)
                slot.reason = str(exc)
                continue
            if state is not None:
                writes.append(self._snapshot_write(slot, state, now))
        if writes:
            with contextlib.suppress(StoreError):  # kept and retried by the snapshot writer
                self.snapshots.save(writes)
        return len(writes)

    def _snapshot_write(
        self, slot: Slot, state: dict[str, Any], now: datetime | None = None
    ) -> SnapshotWrite:
        lease = (slot.lease.owner, slot.lease.epoch) if slot.lease is not None else None
        engine = slot.engine or (slot.spec.engine if slot.spec else "")
        return SnapshotWrite(slot.id, engine, state, now or self.clock.now(), lease=lease)

    def _status(self, slot: Slot) -> StatusRecord:
        phase = slot.phase
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
            details={
                "starts": slot.starts,
                "restored_seq": slot.restored_seq,
                "reason": slot.reason,
            },
        )

    def _flush_status(self) -> None:
        if not self._dirty:
            return
        # A strategy another orchestrator runs is that one's to report.
        records = [
            self._status(self.slots[i])
            for i in self._dirty
            if i in self.slots and self.slots[i].state is not WorkerState.STANDBY
        ]
        dirty, self._dirty = self._dirty, set()
        try:
            self.store.write_status(records)
        except QsmError as exc:
            self._dirty |= dirty  # written again with fresh values next time
            log.error("status write failed: %s", exc)

    def _shutdown(self, timeout: float) -> None:
        pool = self._pool
        deadline = time.monotonic() + timeout
        if pool is not None:
            for slot in self.slots.values():  # let in-flight operations finish
                if slot.busy is not None:
                    with contextlib.suppress(Exception):  # reported by the operation
                        slot.busy.result(max(0.0, deadline - time.monotonic()))
        self.snapshot_all()
        stops = []
        for slot in self.slots.values():
            worker = slot.worker
            if worker is not None and worker.engine is not None:
                stops.append(threading.Thread(target=worker.stop, kwargs={"save_state": False}, daemon=True))
                slot.state = WorkerState.STOPPED
        for t in stops:
            t.start()
        for t in stops:
            t.join(max(0.0, deadline - time.monotonic()))
        self._drain_events(self.clock.now())
        if len(self.snapshots):
            try:
                self.snapshots.save([])
            except StoreError:
                log.error(
                    "the store is unreachable: %d snapshots could not be written before exit "
                    "(the strategies resume from their previous ones)",
                    len(self.snapshots),
                )
        self._dirty.update(self.slots)
        self._flush_status()
        held = [s.id for s in self.slots.values() if s.lease is not None]
        if held:  # a successor need not wait for the leases to expire
            try:
                self.leases.release(held)
            except QsmError as exc:
                log.error("could not release leases: %s", exc)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def _without_prefix(message: str, ident: str) -> str:
    """Messages name their strategy; a status line about that strategy need not."""
    return message[len(ident) + 2 :] if message.startswith(f"{ident}: ") else message


def _pending(slot: Slot) -> bool:
    return slot.busy is not None and not slot.busy.done()


def _fmt(when: datetime | None) -> str:
    return when.isoformat(timespec="minutes") if when else "none"


__all__ = ["MultiStrategyOrchestrator"]
