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

Accounts (:mod:`~strategy_manager.core.accounts`): the control thread asks the
account book whether a strategy may start (its account halted, its session not open
yet) and tells it when engines start and stop; the book opens and closes sessions on
the hook pool and keeps the halts it polls from the store.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator, Mapping
from concurrent.futures import Future
from concurrent.futures import wait as wait_all
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any

import attrs
from attrs import define, field

from strategy_manager.core.accounts import AccountBook, describe_halt
from strategy_manager.core.classloader import ClassLoader
from strategy_manager.core.clock import Clock, SystemClock
from strategy_manager.core.context import EngineContext, Fence, strategy_dir
from strategy_manager.core.errors import EngineHalted, HookError, HookTimeout, QsmError, StoreError, StoreLost
from strategy_manager.core.hookpool import HookPool, Task
from strategy_manager.core.leases import LeaseChange, LeaseKeeper, this_process
from strategy_manager.core.lifecycle import LifecycleManager
from strategy_manager.core.masking import Redactor
from strategy_manager.core.registry import EngineRegistry
from strategy_manager.core.schedule import Phase, Policy
from strategy_manager.core.settings import Settings, validate_settings
from strategy_manager.core.snapshots import SnapshotWriter
from strategy_manager.core.spec import StrategySpec, parse_document, parse_strategy
from strategy_manager.core.store import AccountHalt, Lease, Snapshot, SnapshotWrite, StatusRecord, Store
from strategy_manager.core.supervision import judge, permanent
from strategy_manager.core.telemetry import NO_TELEMETRY, Telemetry
from strategy_manager.core.validation import validate_document, validate_spec
from strategy_manager.core.worker import WIND_DOWN_SECONDS, EngineWorker, WorkerState

log = logging.getLogger("strategy_manager.orchestrator")
#: Lifecycle events (started, failed, ...), at the level EVENT_LEVELS gives them.
events_log = logging.getLogger("strategy_manager.events")

#: Thread stack for engine and pool threads: thousands of idle threads stay cheap.
THREAD_STACK_BYTES = 1024 * 1024
#: The control thread decodes whatever the store holds: a deep stack lets a hostile
#: document fail with an error instead of overflowing the stack.
CONTROL_STACK_BYTES = 16 * 1024 * 1024
#: Changed statuses are written at most this often (seconds), in one batch: a fleet
#: that starts or stops at once costs a few writes, not one per strategy event. A
#: store slower than that is written less often (twice the last write's time apart).
STATUS_FLUSH_SECONDS = 0.25
#: Shutdown takes at most stop_timeout plus this, whatever the engines do.
SHUTDOWN_MARGIN_SECONDS = 5.0

EventSink = Callable[[str, str, str], None]
#: What a hook-pool operation reports to the control loop: (kind, payload).
Report = tuple[str, Any]
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
    "account-halt": logging.ERROR,
    "account-error": logging.WARNING,
}


@define
class _Due:
    """When the control loop next has something to do."""

    snapshot: datetime
    #: The next schedule transition or restart time of any strategy.
    schedule: datetime | None = None
    #: The next schedule transition alone (then every strategy is looked at).
    transition: datetime | None = None
    #: The next end of an account session's grace period or retry wait.
    accounts: datetime | None = None
    poll: float = 0.0
    resync: float = 0.0
    #: When changed statuses are next written (monotonic).
    flush: float = 0.0
    first: bool = True


@define(frozen=True)
class _Parsed:
    """A document as the last reconcile read and parsed it."""

    document: Any
    ident: str
    spec: StrategySpec | None
    problem: str | None
    version: tuple[Any, ...]


def _natural_key(document: Any) -> tuple[str, ...] | None:
    """The document's own key fields, if they are strings (what the cache of parsed
    documents is keyed by; the parse itself checks them)."""
    if not isinstance(document, dict):
        return None
    key = (document.get("user_id"), document.get("symbol"), document.get("strategy_key"))
    return key if all(isinstance(part, str) for part in key) else None  # type: ignore[return-value]


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
    #: The document version its engine has accepted (qsm_validate_engine); a strategy
    #: starts only once its current version is checked.
    checked: Hashable = None
    #: How many document edits its engines took in place, without a restart.
    params_applied: int = 0

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
        telemetry: Telemetry | None = None,
    ) -> None:
        """``assigned`` restricts this orchestrator to a share of the strategies (a
        scale-out host's, a shard's): it claims only those for which it answers True,
        and hands over those it stops answering True for (see :meth:`reassigned`);
        None runs them all. ``owner_details`` go into this process's heartbeat record."""
        validate_settings(settings)
        self.settings = settings
        self.store = store
        self.registry = registry or EngineRegistry.from_entry_points(settings)
        #: Error texts are masked before they are stored: a reader of the store may not
        #: have this process's settings (and so could not mask its secrets).
        self._redactor = Redactor.for_settings(settings, self.registry.secret_options())
        self.clock = clock or SystemClock()
        #: Leases and heartbeats are wall-clock facts even when the schedule is simulated.
        self.wall = SystemClock()
        self.lifecycle = LifecycleManager(settings)
        self.on_event = on_event
        #: Told about hooks, store calls, loop turns and status changes (default: nobody).
        self.telemetry = telemetry or NO_TELEMETRY
        if telemetry is not None:
            self.registry.telemetry = telemetry
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
        self.accounts = AccountBook(
            settings, self.classes, self.clock, self._pool_submit, self._post, self._emit
        )
        self.pool: HookPool | None = None
        self.fatal: QsmError | None = None
        #: (kind, strategy id, payload, the simulated clock's hold until it is seen)
        self._events: queue.SimpleQueue[tuple[str, str, Any, AbstractContextManager[None]]]
        self._events = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._force = False
        self._seen_token: Hashable = object()
        self._dirty: set[str] = set()
        #: The strategies the next schedule pass looks at: those something happened to.
        #: Every strategy when ``_visit_all`` (the first pass, a schedule transition,
        #: each full resync, a pass that failed half-way).
        self._visit: set[str] = set()
        self._visit_all = True
        #: (restart time, strategy id) of strategies backing off; stale entries skipped.
        self._retries: list[tuple[datetime, str]] = []
        #: The schedule policies in use (None: to be gathered again).
        self._policies: frozenset[Policy] | None = None
        self._removed: set[str] = set()
        self._wanted: frozenset[str] = frozenset()
        self._wanting: set[str] = set()
        self._snapshot_round: list[Future[Any]] = []
        #: A simulated clock's brakes (see SimClock); absent on the system clock.
        self._clock_hold: Callable[[], AbstractContextManager[None]] = getattr(
            self.clock, "hold", contextlib.nullcontext
        )
        self._set_barrier: Callable[[datetime | None], None] = getattr(
            self.clock, "set_barrier", lambda when: None
        )
        self._simulated = hasattr(self.clock, "hold")
        self._claim_hold: AbstractContextManager[None] | None = None
        #: Hook-pool tasks held back while a batch is being built (see _batch).
        self._batching: list[Task] | None = None
        #: Where :meth:`run` ends, in clock time: a due time like any other.
        self._until: datetime | None = None
        self.reconciles = 0
        #: The documents of the last reconcile that parsed, by natural key: an unchanged
        #: document is not parsed again.
        self._parsed: dict[tuple[str, ...], _Parsed] = {}

    # -- the seed's programmatic API ------------------------------------------------
    def add_strategy(
        self,
        symbol: str,
        strategy_key: str,
        engine: str,
        params: dict[str, Any] | None = None,
        *,
        user_id: str = "default",
        force: bool = False,
        **fields: Any,
    ) -> str:
        """Write (or update) a strategy document; the reconcile loop starts it.

        Its engine checks it first (its class, its params): one it refuses raises a
        one-line QsmError and is not stored, unless ``force``."""
        document = {
            "user_id": user_id,
            "symbol": symbol,
            "strategy_key": strategy_key,
            "engine": engine,
            "params": params or {},
            "enabled": True,
            **fields,
        }
        if force:
            spec = parse_strategy(document)
        else:
            spec = validate_document(self.settings, self.registry, document)
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
        """Start, block for ``seconds`` of clock time (or until :meth:`stop`, or Ctrl-C),
        stop. On Ctrl-C every strategy is snapshotted and stopped, its final status
        written, and ``run`` returns normally."""
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
        except KeyboardInterrupt:
            log.warning("interrupted: snapshotting and stopping every strategy")
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

    def restart(self, strategy_id: str) -> None:
        """Ask the control loop to restart ``strategy_id`` (from any thread; never
        blocks): a running engine is stopped with a snapshot and started again from
        it while its schedule says run; a FAILED or backing-off one is retried now."""
        self._post("restart", strategy_id, None)

    def _emit(self, kind: str, ident: str, detail: str) -> None:
        events_log.log(EVENT_LEVELS.get(kind, logging.INFO), "%s %s: %s", kind, ident, detail)
        if self.on_event is not None:
            self.on_event(kind, ident, detail)

    # -- the control loop --------------------------------------------------------------
    def _loop(self) -> None:
        """Sleep until something is due; an idle wake-up costs O(1), not O(strategies)."""
        watch_stop = self._start_watch()
        due = _Due(snapshot=self.clock.now() + timedelta(seconds=self.settings.snapshot_interval))
        late: float | None = None
        while not self._stopping.is_set():
            try:
                self._wake.clear()
                began = time.monotonic()
                with self._clock_hold():  # the work of one wake-up costs no simulated time
                    self._turn(due)
                    wake_at = min(
                        t for t in (due.schedule, due.accounts, due.snapshot, self._until) if t is not None
                    )
                    self._set_barrier(wake_at)  # a simulated clock waits for us there
                    self._hold_for_claims()
                self.telemetry.loop_turned(late, time.monotonic() - began)
                mono = time.monotonic()
                wait = max(
                    0.005,
                    min(
                        due.poll - mono,
                        due.flush - mono if self._dirty else due.poll - mono,
                        self.clock.real_seconds((wake_at - self.clock.now()).total_seconds()),
                        0.0 if self._visit else due.poll - mono,  # what the turn's end marked
                    ),
                )
                planned = time.monotonic() + wait
                late = None if self._wake.wait(wait) else max(0.0, time.monotonic() - planned)
            except Exception:  # outside a turn; the loop must not end while engines run
                log.exception("orchestrator loop error")
                late = None
                self._stopping.wait(min(1.0, self.settings.poll_interval))
        watch_stop.set()
        self._set_barrier(None)
        self._release_claim_hold()

    def _turn(self, due: _Due) -> None:
        """One wake-up of the control loop; moves ``due`` on."""
        mono, now = time.monotonic(), self.clock.now()
        try:
            self._drain_events(now)
            if mono >= due.poll or mono >= due.resync or self._force:
                force = mono >= due.resync or self._force
                self._force = False
                due.poll = mono + self.settings.poll_interval  # first: an error cannot spin the loop
                if mono >= due.resync:
                    due.resync = mono + self.settings.resync_interval
                    self._visit_all = True  # a missed change heals here
                self._reconcile_if_changed(now, force=force)
                self._poll_halts()
            if due.first or (due.transition is not None and now >= due.transition):
                self._visit_all = True
            self._due_retries(now)
            self._visit.update(self.accounts.tick(now))  # O(accounts)
            if self._visit or self._visit_all:
                visit = None if self._visit_all else self._visit
                self._visit, self._visit_all = set(), False
                self._want(visit)
                self._apply_schedule(now, visit)
                due.transition, due.schedule = self._next_schedule(now)
                due.first = False
            due.accounts = self.accounts.next_due()
            if now >= due.snapshot:
                due.snapshot = now + timedelta(seconds=self.settings.snapshot_interval)
                self.snapshot_all()
            self._sweep_removed()
            if self._dirty and mono >= due.flush:
                self._flush_status()
                # A slow store is written less often: at most a third of the loop's time.
                took = time.monotonic() - mono
                due.flush = mono + took + max(STATUS_FLUSH_SECONDS, 2 * took)
            if self.snapshots.fatal is not None:
                raise self.snapshots.fatal
        except StoreLost as exc:
            self._give_up(exc)
        except StoreError as exc:
            log.error("store unavailable, retrying: %s", exc)
            due.poll = mono + min(self.settings.poll_interval * 5, 10)
            self._visit_all = True  # what this pass did not get to
        except Exception:  # the loop must survive anything one strategy does
            log.exception("orchestrator loop error")
            self._visit_all = True

    def _hold_for_claims(self) -> None:
        """While a lease claim is pending, a simulated clock waits for its answer."""
        if not self._simulated:
            return
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

    def _next_schedule(self, now: datetime) -> tuple[datetime | None, datetime | None]:
        """The earliest schedule transition of any policy in use, and the earliest of
        that and the restart times: O(policies), not O(strategies)."""
        if self._policies is None:
            self._policies = frozenset(s.policy for s in self.slots.values() if s.policy is not None)
        transition = self.lifecycle.next_transition(self._policies, now)
        retries = self._retries
        while retries and self._stale_retry(*retries[0]):
            heapq.heappop(retries)
        times = [t for t in (transition, retries[0][0] if retries else None) if t is not None]
        return transition, min(times, default=None)

    def _stale_retry(self, when: datetime, sid: str) -> bool:
        slot = self.slots.get(sid)
        return slot is None or slot.retry_at != when

    def _due_retries(self, now: datetime) -> None:
        """Strategies whose restart time has come are looked at."""
        retries = self._retries
        while retries and retries[0][0] <= now:
            when, sid = heapq.heappop(retries)
            if not self._stale_retry(when, sid):
                self._visit.add(sid)

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
        parsed: dict[tuple[str, ...], _Parsed] = {}
        for index, document in enumerate(documents):
            key = _natural_key(document)
            known = self._parsed.get(key) if key is not None else None
            if known is not None and known.document == document:
                ident, spec, problem, version = known.ident, known.spec, known.problem, known.version
            else:  # new or changed: parsed again
                ident, spec, problem = self._parse(document, index)
                version = (
                    document.get("updated_at") if isinstance(document, dict) else None,
                    spec.runtime_fingerprint() if spec else problem,
                    spec.enabled if spec else None,
                )
            if key is not None and spec is not None:
                parsed[key] = _Parsed(document, ident, spec, problem, version)
            if ident in seen:
                continue
            seen.add(ident)
            slot = self.slots.get(ident) or self.slots.setdefault(ident, Slot(ident))
            if slot.removed:
                slot.removed = False
                self._removed.discard(ident)
                self._visit.add(ident)
            if version == slot.version:
                continue
            self._update_slot(slot, spec, problem, version, now)
        self._parsed = parsed
        for ident in [i for i in self.slots if i not in seen]:
            slot = self.slots[ident]
            if slot.removed:
                continue
            slot.removed, slot.spec, slot.policy, slot.version = True, None, None, None
            if slot.worker is None:
                self.accounts.forget(ident)
            self._removed.add(ident)
            self._visit.add(ident)
            self._policies = None
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
        version: tuple[Any, ...],
        now: datetime,
    ) -> None:
        """``version`` is (updated_at, runtime fingerprint or problem, enabled)."""
        changed_doc = slot.version is not None
        slot.version = version
        self._visit.add(slot.id)
        self._policies = None
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
            try:  # its position is still at the broker: it counts in its account's checks
                self.accounts.assign(spec.id, spec, self.registry.resolve(spec.engine))
            except QsmError:
                self.accounts.unassign(spec.id)
            return
        try:
            hooks = self.registry.resolve(spec.engine)
            policy = self.lifecycle.policy_for(spec)
            self.lifecycle.phase(policy, now)
            self.accounts.assign(spec.id, spec, hooks)
        except QsmError as exc:
            self._block(slot, _without_prefix(str(exc), spec.id))
            return
        fingerprint = version[1]
        if slot.worker is not None and fingerprint != slot.fingerprint:
            if self._takes_params(slot, spec, hooks):
                self._submit_update(slot, slot.worker, spec, hooks, version)
            else:
                self._emit("reload", slot.id, "document changed; restarting with the new spec")
                self._submit_stop(slot, WorkerState.STOPPED, forget=True)
        if fingerprint != slot.fingerprint or slot.checked is None:
            slot.checked = None  # the schedule has it checked before anything starts
        else:
            slot.checked = version  # only updated_at or enabled changed: already checked
        slot.spec, slot.policy, slot.fingerprint, slot.hooks = spec, policy, fingerprint, hooks
        if slot.state in (WorkerState.BLOCKED, WorkerState.DISABLED):
            slot.state, slot.reason = WorkerState.WAITING, None

    def _takes_params(self, slot: Slot, spec: StrategySpec, hooks: Any) -> bool:
        """Whether the running engine may take ``spec`` in place: only its params
        changed, and its engine implements ``qsm_update_params``."""
        return (
            slot.running
            and slot.state is WorkerState.RUNNING
            and slot.spec is not None
            and hooks is slot.hooks
            and hooks.updates_params
            and slot.spec.differs_only_in_params(spec)
        )

    def _submit_update(
        self, slot: Slot, worker: EngineWorker, spec: StrategySpec, hooks: Any, version: tuple[Any, ...]
    ) -> None:
        """Check the edited document, then hand its params to the running engine, on the
        hook pool; the loop restarts the strategy if the engine did not take them."""
        settings, classes, wait = self.settings, self.classes, self.settings.snapshot_timeout

        def op() -> Report:
            try:
                validate_spec(settings, lambda: hooks, spec, classes)
            except QsmError as exc:
                return "check_failed", (version, exc)
            return "updated", (worker, version, worker.update_params(spec, wait))

        budget = settings.start_timeout + wait + 1.0
        self._submit(slot, worker, op, budget, "update")

    def _on_updated(
        self, slot: Slot, worker: EngineWorker, version: tuple[Any, ...], why: str | None
    ) -> None:
        """An engine took an edit's params (``why`` None), or could not: then it restarts,
        unless a stop came first (it wins) or a later edit is on its way to it."""
        if version == slot.version:
            slot.checked = version
        if worker is not slot.worker or version[1] != slot.fingerprint:
            return
        if why is None:
            slot.params_applied += 1
            self._emit("reload", slot.id, "params applied in place, without a restart")
        elif slot.state is WorkerState.RUNNING:
            self._emit("reload", slot.id, f"document changed; restarting with the new spec ({why})")
            self._submit_stop(slot, WorkerState.STOPPED, forget=True)
        else:  # it is stopping already: its next start builds a fresh engine from the new document
            slot.worker = None

    def _submit_check(self, slot: Slot, spec: StrategySpec, hooks: Any, version: Hashable) -> None:
        """The engine checks the document on the hook pool (it may import user code);
        one it refuses is BLOCKED at once, with the reason, and never retried."""
        settings, classes = self.settings, self.classes

        def op() -> Report:
            try:
                validate_spec(settings, lambda: hooks, spec, classes)
            except QsmError as exc:
                return "check_failed", (version, exc)
            return "checked", version

        def hung() -> None:
            timeout = HookTimeout(f"{slot.id}: the engine's check did not return")
            self._post("check_failed", slot.id, (version, timeout))

        self._pool_submit(slot.id, op, self.settings.start_timeout, "check", hung)

    def _block(self, slot: Slot, reason: str) -> None:
        if slot.worker is not None:
            self._submit_stop(slot, WorkerState.BLOCKED, forget=True)
        self.accounts.unassign(slot.id)
        slot.spec, slot.policy = None, None
        self._policies = None
        if slot.state is not WorkerState.BLOCKED or slot.reason != reason:
            self._emit("blocked", slot.id, reason)
        slot.state, slot.reason = WorkerState.BLOCKED, reason

    # -- ownership ---------------------------------------------------------------
    def _want(self, visit: set[str] | None) -> None:
        """Tell the lease keeper which leases to hold: runnable strategies, and those
        whose engine is still running or whose last snapshot is still unwritten.
        Looks again at the strategies in ``visit`` (None: at all of them)."""
        wanting = self._wanting
        if visit is None:
            wanting.clear()
            visit = set(self.slots)
        changed = False
        for sid in visit:
            slot = self.slots.get(sid)
            if slot is not None and self._wants_lease(slot):
                if sid not in wanting:
                    wanting.add(sid)
                    changed = True
            elif sid in wanting:
                wanting.discard(sid)
                changed = True
        if changed or len(wanting) != len(self._wanted):
            if self._dirty & (self._wanted - wanting):
                # Their last status (a hand-over's STANDBY) goes out while the lease is still ours.
                self._flush_status()
            self._wanted = frozenset(wanting)
            self.keeper.want(self._wanted)

    def _wants_lease(self, s: Slot) -> bool:
        return (
            (s.spec is not None and s.spec.enabled and not s.removed and self.assigned(s.id))
            or s.worker is not None
            or self._busy(s)
            or self.snapshots.pending(s.id) is not None
        )

    def _on_leases(self, change: LeaseChange) -> None:
        for ids in (change.claimed, change.elsewhere, change.lost, change.expired, change.late):
            self._visit.update(ids)
        for sid in change.late:
            slot = self.slots.get(sid)
            if slot is not None:
                self._replace_if_latched(slot, slot.worker)
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

    def _replace_if_latched(self, slot: Slot, worker: EngineWorker | None) -> None:
        """``worker``, still the strategy's, met its fence while a renewal was late and its
        lease is good again: it may have refused an order, so a new engine takes over
        from its last state. An engine that never met its fence trades on."""
        context = worker.context if worker is not None else None
        if worker is None or worker is not slot.worker or context is None or not context.fence.recoverable():
            return
        self._emit("fenced", slot.id, "met its fence while a lease renewal was late; restarting")
        worker.revoke()
        slot.reason = "lease renewed late (slow store?)"
        self._submit_stop(slot, WorkerState.WAITING, forget=True)
        self._dirty.add(slot.id)

    # -- schedule and supervision --------------------------------------------------
    def _apply_schedule(self, now: datetime, visit: set[str] | None) -> None:
        """Start, check, pause or close the strategies in ``visit`` (None: all) as their
        schedule, lease and state say; the hook-pool work goes to the pool in one batch."""
        with self._batch():
            self._schedule_pass(now, visit)

    def _schedule_pass(self, now: datetime, visit: set[str] | None) -> None:
        starts: list[Slot] = []
        if visit is None:
            slots = list(self.slots.values())
        else:
            slots = [self.slots[sid] for sid in sorted(visit) if sid in self.slots]
        for slot in slots:
            if not self.assigned(slot.id):
                self._hand_over(slot)
                continue
            if slot.spec is None or slot.policy is None or not slot.spec.enabled or self._busy(slot):
                continue
            if slot.checked != slot.version:
                self._submit_check(slot, slot.spec, slot.hooks, slot.version)
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
                hold = self.accounts.hold(slot.id, now)
                if hold is None:
                    starts.append(slot)
                else:
                    self._hold(slot, hold)
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
                WorkerState.HALTED,
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
        self._visit.add(slot.id)  # its lease is released once nothing here needs it
        self._dirty.add(slot.id)

    # -- accounts ----------------------------------------------------------------
    def _poll_halts(self) -> bool:
        """Apply halts added or removed since the last poll; True if there were any."""
        change = self.accounts.poll_halts(self.store)
        if change is None:
            return False
        halted, resumed = change
        for halt in halted:
            self._halt_account(halt)
        for name in resumed:
            waiting = 0
            for sid in self.accounts.members_of(name):
                self._visit.add(sid)
                slot = self.slots.get(sid)
                if slot is not None and slot.state is WorkerState.HALTED:
                    slot.state, slot.reason = WorkerState.WAITING, None
                    self._dirty.add(sid)
                    waiting += 1
            self._emit("account", name, f"resumed; {waiting} strategies may start again")
        return True

    def _halt_account(self, halt: AccountHalt) -> None:
        """Stop every strategy of the account at once: their fences are down already
        (the halt is part of every fence), their stops go to the hook pool together."""
        reason = describe_halt(halt)
        stopping = 0
        for sid in self.accounts.members_of(halt.account):
            slot = self.slots.get(sid)
            if slot is None:
                continue
            self._visit.add(sid)
            worker = slot.worker
            if worker is not None and (worker.context is not None or self._busy(slot)):
                worker.revoke()
                self._submit_stop(slot, WorkerState.HALTED, forget=False)
                stopping += 1
            if slot.state not in (
                WorkerState.FAILED,
                WorkerState.BLOCKED,
                WorkerState.DISABLED,
                WorkerState.FINISHED,
            ):
                slot.state, slot.reason = WorkerState.HALTED, reason
            self._dirty.add(sid)
        self._emit("account-halt", halt.account, f"{reason}; stopping {stopping} strategies")

    def _on_account_derived(self, sid: str, payload: Any) -> None:
        problem = self.accounts.derived(sid, payload)
        slot = self.slots.get(sid)
        if slot is not None:
            self._dirty.add(sid)
            self._visit.add(sid)
            if problem is not None and slot.spec is not None and slot.spec.enabled:
                self._block(slot, problem)

    def _hold(self, slot: Slot, hold: tuple[str, str]) -> None:
        """Keep a strategy from starting for its account's sake (halted, no session yet)."""
        state, reason = WorkerState(hold[0]), hold[1]
        if (slot.state, slot.reason) != (state, reason):
            slot.state, slot.reason = state, reason
            self._dirty.add(slot.id)

    def _start_all(self, slots: list[Slot]) -> None:
        """Start ``slots`` with their latest snapshots, and those of the strategies of
        the same account and symbol (a disabled one's included: its position is still
        at the broker), read in one bulk call here (on the control thread, whose deep
        stack decodes whatever the store holds)."""

        def spec_of(sid: str) -> StrategySpec | None:
            slot = self.slots.get(sid)
            return slot.spec if slot is not None else None

        starting = [s.spec for s in slots if s.spec is not None]
        stored = self.store.latest_snapshots(
            sorted({s.id for s in slots} | self.accounts.member_ids(starting, spec_of))
        )
        members: dict[tuple[str, str], Any] = {}  # shared by the strategies of one account and symbol
        for slot in slots:
            assert slot.lease is not None and slot.worker is not None and slot.spec is not None
            account, session = self.accounts.enter(slot.id)
            slot.worker.account, slot.worker.session, slot.worker.members = account, session, {}
            if account is not None:
                key = (account.name, slot.spec.symbol)
                if key not in members:
                    members[key] = self.accounts.members(slot.spec, spec_of, stored)
                slot.worker.members = members[key]
            self._submit_start(slot, slot.lease, stored.get(slot.id))

    def _make_worker(self, slot: Slot, spec: StrategySpec, hooks: Any) -> EngineWorker:
        engine_dir = strategy_dir(self.settings.data_dir, spec.engine, spec.id)
        options = dict(self.settings.engine_options.get(spec.engine, {}))
        classes = self.classes
        keeper = self.keeper
        worker: EngineWorker

        def make_context() -> EngineContext:
            epoch = worker.lease_epoch
            unhalted = self.accounts.fence(spec.id)
            fence = Fence(
                lambda: keeper.valid(spec.id, epoch) and unhalted(),
                on_latch=lambda: self._post("latched", spec.id, worker),
            )
            return EngineContext(
                spec=worker.spec,  # the document whose params the engine took in place, if any
                data_dir=engine_dir,
                classes=classes,
                clock=self.clock,
                options=options,
                fence=fence,
                lease_epoch=epoch,
                account=worker.account,
                session=worker.session,
                members=worker.members,
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
        self, slot: Slot, worker: EngineWorker, op: Callable[[], Report | None], timeout: float, name: str
    ) -> Future[Any]:
        """Run ``op`` of ``worker`` on the hook pool after the slot's earlier operations."""

        def hung() -> None:  # in the pool's watchdog: never block here
            worker.abandon(f"{name} did not return within {timeout:g}s; engine abandoned")
            self._post("hung", slot.id, (worker, name, timeout))

        return self._pool_submit(slot.id, op, timeout, name, hung)

    def _pool_submit(
        self,
        key: Hashable,
        op: Callable[[], Report | None],
        timeout: float,
        name: str,
        hung: Callable[[], None],
    ) -> Future[Any]:
        """Run ``op`` on the hook pool after ``key``'s earlier tasks, with a deadline;
        what it returns is reported to the control loop once the pool has freed the
        key (so the loop sees it idle), or "settled" if it returns nothing."""
        assert self.pool is not None
        hold = self._clock_hold()  # a simulated clock waits for the hook
        hold.__enter__()
        task = Task(key, name, op, timeout, on_timeout=hung)

        def settled(done: Future[Any]) -> None:
            # The pool frees the key right after this (under its lock, which busy()
            # waits for): the loop then looks at the strategy again.
            report = None if done.cancelled() or done.exception() is not None else done.result()
            kind, payload = report if report is not None else ("settled", None)
            self._post(kind, str(key), payload)
            hold.__exit__(None, None, None)

        task.future.add_done_callback(settled)
        if self._batching is not None:
            self._batching.append(task)
        else:
            self.pool.submit_tasks([task])
        return task.future

    @contextlib.contextmanager
    def _batch(self) -> Iterator[None]:
        """Hook-pool operations submitted inside go to the pool together at the end
        (thousands of starts at once cost one contended round, not thousands)."""
        self._batching = []
        try:
            yield
        finally:
            tasks, self._batching = self._batching, None
            if tasks and self.pool is not None:
                self.pool.submit_tasks(tasks)

    def _submit_start(self, slot: Slot, lease: Lease, snapshot: Snapshot | None) -> None:
        worker = slot.worker
        assert worker is not None
        slot.state = WorkerState.STARTING
        slot.restored_seq = snapshot.seq if snapshot is not None else None
        worker.lease_epoch = lease.epoch

        def op() -> Report:
            try:
                if snapshot is not None and snapshot.error:
                    from strategy_manager.core.errors import SnapshotError

                    raise SnapshotError(
                        f"{slot.id}: snapshot #{snapshot.seq} cannot be restored: {snapshot.error} "
                        "(strategy-manager state rollback brings back an earlier one)"
                    )
                worker.start(snapshot=snapshot.state if snapshot is not None else None)
            except Exception as exc:
                return "start_failed", (worker, exc)
            return "started", worker

        self._submit(slot, worker, op, self.settings.start_timeout, "start")

    def _submit_stop(self, slot: Slot, final: WorkerState, forget: bool, save_state: bool = True) -> None:
        worker = slot.worker
        if worker is None:
            return
        if forget:
            slot.worker = None
        slot.state = final

        def op() -> Report:
            worker.stop(save_state=save_state, final_state=final)
            return "stopped", (worker, final, forget)

        self._submit(slot, worker, op, self._stop_budget(), "stop")

    def _stop_budget(self) -> float:
        s = self.settings
        return WIND_DOWN_SECONDS + s.snapshot_timeout + 2 * s.stop_timeout + 1.0

    def _post(self, kind: str, ident: str, payload: Any) -> None:
        hold = self._clock_hold()  # a simulated clock waits until the loop has seen it
        hold.__enter__()
        self._events.put((kind, ident, payload, hold))
        self._wake.set()

    def _drain_events(self, now: datetime) -> bool:
        """Apply what workers, leases and the writer reported; True if there was anything."""
        seen = False
        while True:
            try:
                kind, ident, payload, hold = self._events.get_nowait()
            except queue.Empty:
                return seen
            seen = True
            try:
                self._apply_reported(kind, ident, payload, now)
            finally:
                hold.__exit__(None, None, None)

    def _apply_reported(self, kind: str, ident: str, payload: Any, now: datetime) -> None:
        if kind == "leases":
            self._on_leases(payload)
            return
        if kind == "assigned":  # the share changed: any strategy may be added or taken away
            self._visit_all = True
            return
        if kind == "account-derived":
            self._on_account_derived(ident, payload)
            return
        if kind.startswith("account-"):
            members = self.accounts.on_event(kind, ident, payload, now)
            self._dirty.update(members)
            self._visit.update(members)
            return
        slot = self.slots.get(ident)
        if slot is None:
            return
        self._visit.add(ident)
        if kind == "settled":  # a hook of the strategy returned: it may be idle now
            self._forget_if_idle(slot)
            return
        if kind == "latched":  # its engine met its fence: replaced if its lease is good now
            self._replace_if_latched(slot, payload)
            return
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
            self.accounts.leave(ident)
            self._failure(slot, payload[1], now)
        elif kind == "exited" and payload[0] is slot.worker:
            if payload[1] is None:
                slot.state, slot.reason = WorkerState.FINISHED, "engine finished on its own"
                self._emit("finished", ident, "engine finished on its own")
                self._submit_stop(slot, WorkerState.FINISHED, forget=False)
            else:
                self._failure(slot, payload[1], now)
        elif kind == "updated":
            self._on_updated(slot, *payload)
        elif kind == "checked":
            if payload == slot.version:
                slot.checked = payload
        elif kind == "check_failed":
            version, exc = payload
            if version == slot.version:
                self._block(slot, _without_prefix(str(exc) or type(exc).__name__, ident))
        elif kind == "hung":
            worker, name, timeout = payload
            reason = f"{name} did not return within {timeout:g}s; engine abandoned (its thread still runs)"
            self._emit("hung", ident, reason)
            self.accounts.leave(ident)
            if worker is slot.worker:  # a later worker of the strategy is not affected
                slot.worker = None
                slot.state, slot.reason = WorkerState.FAILED, reason
        elif kind == "stopped":
            worker, final, forget = payload
            if worker is slot.worker or slot.worker is None:
                self.accounts.leave(ident)
            if isinstance(worker.error, HookError) and not isinstance(worker.error, HookTimeout):
                slot.reason = _without_prefix(str(worker.error), ident)  # a hung stop or leftover threads
                self._emit("warning", ident, slot.reason)
            elif forget and final is not WorkerState.FAILED:
                self._emit("stopped", ident, "snapshot saved")
        elif kind == "restart":
            self._restart(slot)
        elif kind == "snapshot":
            seq, problem = payload
            if problem is None:
                slot.last_snapshot_seq, slot.last_snapshot_at = seq, self.wall.now()
            else:
                slot.reason = _without_prefix(problem, ident)
                self._emit("warning", ident, slot.reason)

    def _restart(self, slot: Slot) -> None:
        slot.failures.clear()
        slot.retry_at = None
        if slot.state in (WorkerState.FAILED, WorkerState.BACKOFF):
            slot.state, slot.reason = WorkerState.WAITING, None
        if slot.running:
            self._emit("restart", slot.id, "restart requested; stopping with a snapshot, then starting again")
            self._submit_stop(slot, WorkerState.WAITING, forget=True)
        else:
            self._emit("restart", slot.id, "restart requested; starts when its schedule and lease allow")

    def _sweep_removed(self) -> None:
        for sid in list(self._removed):
            slot = self.slots.get(sid)
            if slot is None:
                self._removed.discard(sid)
            else:
                self._forget_if_idle(slot)

    def _forget_if_idle(self, slot: Slot) -> None:
        idle = slot.worker is None and not self._busy(slot) and self.snapshots.pending(slot.id) is None
        if slot.removed and idle:
            self.slots.pop(slot.id, None)
            self._dirty.discard(slot.id)
            self.accounts.forget(slot.id)
            self._removed.discard(slot.id)
            self._visit.add(slot.id)  # its lease is no longer wanted

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
        heapq.heappush(self._retries, (verdict.retry_at, slot.id))
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

        def op() -> Report | None:
            try:
                state = worker.snapshot()
            except QsmError as exc:
                return "snapshot", (None, str(exc))
            if state is not None:
                self.snapshots.add(self._snapshot_write(sid, engine, epoch, state))
            return None

        return self._submit(slot, worker, op, self.settings.snapshot_timeout, "snapshot")

    def _snapshot_write(self, sid: str, engine: str, epoch: int, state: dict[str, Any]) -> SnapshotWrite:
        return SnapshotWrite(sid, engine, state, self.clock.now(), lease=(self.owner, epoch))

    def _status(self, slot: Slot) -> StatusRecord:
        phase = slot.phase
        mask = self._redactor.text
        own = mask(slot.reason) if slot.reason else slot.reason
        details: dict[str, Any] = {"starts": slot.starts, "restored_seq": slot.restored_seq, "reason": own}
        if slot.last_snapshot_seq is not None:
            details["last_snapshot_seq"] = slot.last_snapshot_seq
            details["last_snapshot_at"] = slot.last_snapshot_at.isoformat() if slot.last_snapshot_at else None
        if slot.lease is not None:
            details["epoch"] = slot.lease.epoch
        if slot.params_applied:
            details["params_applied"] = slot.params_applied
        details.update(self.accounts.status_details(slot.id))
        problem = None if own or not slot.running else self.accounts.problem(slot.id)
        reason = own or (mask(problem) if problem else None)
        if slot.state in (WorkerState.DISABLED, WorkerState.FINISHED):
            reason = None
        if details.get("session_error"):
            details["session_error"] = mask(details["session_error"])
        return StatusRecord(
            strategy_id=slot.id,
            state=str(slot.state),
            engine=slot.engine,
            owner=self.owner,
            heartbeat=self.wall.now(),
            restarts=slot.restarts,
            last_error=reason,
            next_transition=phase.next_kind if phase else None,
            next_transition_at=phase.until if phase else None,
            details=details,
        )

    def _flush_status(self) -> None:
        if not self._dirty:
            return
        slots = [self.slots[i] for i in self._dirty if i in self.slots]
        changed = [(self._status(slot), slot) for slot in slots]
        self.telemetry.status_changed([record for record, _slot in changed])
        records = [record for record, slot in changed if self._reports(slot)]
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
                ended = slot.state in (WorkerState.FAILED, WorkerState.FINISHED)
                final = slot.state if ended else WorkerState.STOPPED

                def op(worker: EngineWorker = worker, final: WorkerState = final) -> None:
                    worker.stop(save_state=True, final_state=final)

                stops[slot.id] = self._submit(slot, worker, op, budget, "stop")
                slot.state = final
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
        if pool is not None:  # every engine has stopped (or was abandoned): the sessions close
            closes = self.accounts.close_all()
            wait_all(closes, timeout=max(0.0, deadline - SHUTDOWN_MARGIN_SECONDS / 2 - time.monotonic()))
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
