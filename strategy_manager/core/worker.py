"""Workers: one per strategy, whatever the engine.

``StrategyWorker`` is the seed's public base class: subclass it, implement ``run``,
``stop`` and ``get_stats``, and it runs on a thread of its own. ``EngineWorker``
is the core's worker for hook-based plugins; the lifecycle manager and the
orchestrator only ever see this one interface: ``start()``, ``stop()``,
``snapshot()``, ``state``, ``get_stats()``.
"""

from __future__ import annotations

import enum
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import datetime
from typing import Any

from strategy_manager.core.context import EngineContext
from strategy_manager.core.errors import EngineHalted, HookError, HookTimeout, QsmError, SnapshotError
from strategy_manager.core.registry import EngineHooks
from strategy_manager.core.spec import StrategySpec
from strategy_manager.core.store import codec

log = logging.getLogger("strategy_manager.worker")


class WorkerState(enum.StrEnum):
    CREATED = "CREATED"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"
    #: The engine ended on its own (a replay reached its last bar).
    FINISHED = "FINISHED"
    #: Waiting for the supervisor to restart it after an error.
    BACKOFF = "BACKOFF"
    #: Too many errors; stays so until its document changes or it is re-enabled.
    FAILED = "FAILED"
    #: Waiting for the schedule to open.
    WAITING = "WAITING"
    #: Valid but cannot run here (engine disabled or not installed, document invalid).
    BLOCKED = "BLOCKED"
    #: Disabled in its document.
    DISABLED = "DISABLED"
    #: Another orchestrator holds its lease and runs it.
    STANDBY = "STANDBY"
    #: Its account is halted (``strategy-manager accounts halt``); never started until resumed.
    HALTED = "HALTED"


class StrategyWorker(ABC):
    """The seed's worker contract. Subclasses implement ``run``, ``stop`` and ``get_stats``.

    ``run`` blocks until the worker is told to stop; :meth:`start` runs it on a thread.
    Override :meth:`get_state`/:meth:`set_state` to take part in state persistence.
    """

    def __init__(self, symbol: str, strategy_key: str, **kwargs: Any) -> None:
        self.symbol = symbol
        self.strategy_key = strategy_key
        self._state = WorkerState.CREATED
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        #: Where :meth:`save_state` hands the state; set by whoever drives the worker.
        self.state_sink: Callable[[dict[str, Any]], None] | None = kwargs.get("state_sink")
        self.error: BaseException | None = None

    @property
    def state(self) -> WorkerState:
        return self._state

    @abstractmethod
    def run(self) -> None:
        """Run until ``self._stop_event`` is set. Called on the worker's thread."""

    @abstractmethod
    def stop(self, save_state: bool = True) -> None:
        """Ask the worker to stop, saving its state first when ``save_state``."""

    @abstractmethod
    def get_stats(self) -> dict[str, Any]:
        """A small JSON-compatible dict for status displays."""

    def get_state(self) -> dict[str, Any] | None:
        """The state to persist, as JSON-compatible data; None if it keeps none."""
        return None

    def set_state(self, state: dict[str, Any]) -> None:  # noqa: B027 - optional override
        """Put back a state from :meth:`get_state`, before :meth:`run` starts."""

    def save_state(self) -> dict[str, Any] | None:
        state = self.get_state()
        if state is not None and self.state_sink is not None:
            self.state_sink(state)
        return state

    def start(self) -> threading.Thread:
        """Run :meth:`run` on a thread of its own; errors end up in ``self.error``."""

        def body() -> None:
            try:
                self.run()
            except BaseException as exc:
                self.error = exc
                self._state = WorkerState.FAILED
                log.exception("worker %s:%s crashed", self.symbol, self.strategy_key)

        self._thread = threading.Thread(target=body, name=f"{self.symbol}:{self.strategy_key}", daemon=True)
        self._thread.start()
        return self._thread

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread from :meth:`start`; True once it has ended."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()


ContextFactory = Callable[[], EngineContext]
#: How long a stop waits for the engine's threads to end before taking the snapshot.
WIND_DOWN_SECONDS = 1.0
ExitCallback = Callable[["EngineWorker", BaseException | None], None]
#: ``start(snapshot=LOAD)``: ask ``load_snapshot`` for the state to restore.
LOAD: Any = object()


class EngineWorker(StrategyWorker):
    """Drives one strategy's engine through its plugin's hooks.

    Restartable: every :meth:`start` creates a fresh engine (and restores the latest
    snapshot from ``load_snapshot``); :meth:`stop` snapshots, stops and forgets it.
    Hooks of one worker never run at the same time (a per-worker lock).

    A worker whose hook hung is :meth:`abandon`-ed by its driver: its engine's fence
    goes down and its stop event is set, and no hook of that engine is called again;
    a hook that returns after all finds it abandoned and stops the engine itself.
    """

    def __init__(
        self,
        spec: StrategySpec,
        hooks: EngineHooks,
        make_context: ContextFactory,
        *,
        load_snapshot: Callable[[], dict[str, Any] | None] = lambda: None,
        state_sink: Callable[[dict[str, Any]], None] | None = None,
        on_exit: ExitCallback | None = None,
        stop_timeout: float = 10.0,
    ) -> None:
        super().__init__(spec.symbol, spec.strategy_key, state_sink=state_sink)
        self.spec = spec
        self.hooks = hooks
        self.make_context = make_context
        self.load_snapshot = load_snapshot
        self.on_exit = on_exit
        self.stop_timeout = stop_timeout
        self.context: EngineContext | None = None
        self.engine: Any = None
        self.started_at: datetime | None = None
        self.restored_from: int | None = None
        self.abandoned = False
        #: The lease epoch the next start runs under (set by the orchestrator).
        self.lease_epoch = 0
        #: The account, its session and its members the next start runs with (set by
        #: the orchestrator; see EngineContext).
        self.account: Any = None
        self.session: Any = None
        self.members: Any = {}
        self._lock = threading.RLock()

    @property
    def id(self) -> str:
        return self.spec.id

    # -- lifecycle ---------------------------------------------------------------
    def start(self, snapshot: dict[str, Any] | None = LOAD) -> None:  # type: ignore[override]
        """Create, restore and start the engine; return once the start hook returned.

        ``snapshot`` is the state to restore (None: start fresh); by default it comes
        from ``load_snapshot``. Raises HookError naming the strategy and the failing
        step (the original error as its cause); the engine is stopped and forgotten
        before the error propagates.
        """
        with self._lock:
            if self._state in (WorkerState.RUNNING, WorkerState.STARTING) or self.abandoned:
                return
            self._state = WorkerState.STARTING
            self.error = None
            context = self.make_context()
            context.on_crash = lambda exc: self._engine_exited(context, exc)
            context.on_finish = lambda: self._engine_exited(context, None)
            self._stop_event = context.stop_event
            self.context = context
            step = "create"
            try:
                if not context.lease_valid():
                    raise HookError(f"{self.id}: not started: this process no longer holds its lease")
                self.engine = self.hooks.create(self.spec, context)
                if self.engine is None:
                    raise HookError(f"{self.id}: engine '{self.hooks.name}' create returned None")
                if self.hooks.has("restore"):
                    state = self.load_snapshot() if snapshot is LOAD else snapshot
                    if state is not None and not self.abandoned:
                        step = "restore"
                        self.hooks.restore(self.engine, state, context)
                step = "start"
                if not self.abandoned:
                    self.hooks.start(self.engine, context)
            except BaseException as exc:
                self.error = exc
                self._teardown(context)
                self._state = WorkerState.FAILED
                if isinstance(exc, QsmError) and str(exc).startswith(self.id):
                    raise
                if isinstance(exc, EngineHalted):  # keep the kind: it decides "no restarts"
                    raise EngineHalted(f"{self.id}: {step} halted: {_one_line(exc)}") from exc
                raise HookError(f"{self.id}: {step} failed: {_one_line(exc)}") from exc
            if self.abandoned:  # a hook hung, then came back: nobody else may stop it now
                self._teardown(context)
                return
            self.started_at = context.clock.now()
            if self._state is WorkerState.STARTING:
                self._state = WorkerState.RUNNING

    def abandon(self, reason: str) -> None:
        """Give up on this worker's engine (a hook hung): its fence goes down and its
        stop event is set at once, and no hook of it is called again. Never blocks."""
        self.abandoned = True
        self.error = HookTimeout(f"{self.id}: {reason}")
        self._state = WorkerState.FAILED
        context = self.context
        if context is not None:
            context.fence.revoke()
            context.stop_event.set()

    def revoke(self) -> None:
        """Lower the running engine's fence: from now on it may send no order."""
        context = self.context
        if context is not None:
            context.fence.revoke()

    def run(self) -> None:
        """Seed compatibility: start, then block until stopped."""
        self.start()
        self._stop_event.wait()

    def stop(self, save_state: bool = True, final_state: WorkerState = WorkerState.STOPPED) -> None:
        """Ask the engine to stop, snapshot it (if asked and possible), call its stop
        hook and join its threads.

        The stop event is set first and the engine's own threads get a moment to
        wind down, so the snapshot is the state the engine stopped in: nothing it
        does after the snapshot is lost or done twice on the next start. Safe to
        call twice and on a worker that never started. The stop hook gets
        ``stop_timeout`` seconds; past that the engine is abandoned and reported.
        """
        if self.abandoned:
            return
        with self._lock:
            context = self.context
            if context is None or self.engine is None:
                if self._state not in (WorkerState.FAILED, WorkerState.FINISHED):
                    self._state = final_state
                return
            context.stop_event.set()
            if save_state:
                context.join_threads(min(WIND_DOWN_SECONDS, self.stop_timeout))
                try:
                    self.save_state()
                except QsmError as exc:
                    log.error("%s", exc)
            ended = self._state in (WorkerState.FINISHED, WorkerState.FAILED)
            final = self._state if ended else final_state
            self._state = WorkerState.STOPPING
            self._teardown(context)
            self._state = final

    def _teardown(self, context: EngineContext) -> None:
        context.stop_event.set()
        engine, self.engine, self.context = self.engine, None, None
        if engine is not None:
            done = threading.Event()
            failure: list[BaseException] = []

            def call_stop() -> None:
                try:
                    self.hooks.stop(engine, context)
                except BaseException as exc:
                    failure.append(exc)
                finally:
                    done.set()

            stopper = threading.Thread(target=call_stop, name=f"{self.id}/stop", daemon=True)
            stopper.start()
            if not done.wait(self.stop_timeout):
                context.logger.error("stop did not return within %.1fs; engine abandoned", self.stop_timeout)
                self.error = HookError(f"{self.id}: stop did not return within {self.stop_timeout}s")
                return
            if failure:
                context.logger.error("stop raised %s", _one_line(failure[0]))
        leftover = context.join_threads(self.stop_timeout)
        if leftover:
            names = ", ".join(t.name for t in leftover)
            context.logger.error("engine threads still running after stop: %s", names)
            self.error = HookError(f"{self.id}: engine threads still running after stop: {names}")

    def _engine_exited(self, context: EngineContext, exc: BaseException | None) -> None:
        """An engine thread crashed (exc) or finished on its own (None)."""
        if context is not self.context or context.stop_event.is_set():
            return
        self.error = exc
        self._state = WorkerState.FINISHED if exc is None else WorkerState.FAILED
        if self.on_exit is not None:
            self.on_exit(self, exc)

    def update_params(self, spec: StrategySpec, timeout: float) -> str | None:
        """Give the running engine ``spec``'s params in place (``qsm_update_params``).

        Returns None once the engine took them (``spec`` is then this worker's and its
        context's), or why not: the caller restarts the strategy instead. Waits at
        most ``timeout`` seconds; a hook still running then holds on to the worker,
        so a stop that follows waits for it to return (two hooks never overlap)."""
        if not self.hooks.updates_params:
            return "the engine does not take params in place"
        done = threading.Event()
        outcome: list[str | None] = []
        running = self.context  # a late thread must not reach an engine started after this call

        def call() -> None:
            try:
                outcome.append(self._update_params(spec, running))
            finally:
                done.set()

        threading.Thread(target=call, name=f"{self.id}/update", daemon=True).start()
        if not done.wait(timeout):
            return f"qsm_update_params did not return within {timeout:g}s"
        return outcome[0] if outcome else "qsm_update_params failed"

    def _update_params(self, spec: StrategySpec, running: EngineContext | None) -> str | None:
        with self._lock:
            context = self.context
            if (
                context is not running
                or self.abandoned
                or self._state is not WorkerState.RUNNING
                or self.engine is None
                or context is None
                or context.stop_event.is_set()
            ):
                return "the engine is not running"
            try:
                applied = self.hooks.update_params(self.engine, spec, context)
            except Exception as exc:
                context.logger.error("qsm_update_params raised %s", _one_line(exc))
                return f"qsm_update_params raised {_one_line(exc)}"
            if applied is not True:
                return "the engine cannot take these params in place"
            self.spec = context.spec = spec
            return None

    # -- state -------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any] | None:
        """Ask the engine for its state; SnapshotError if it is not plain JSON data
        (a deep or self-referring state included)."""
        if self.abandoned:
            return None
        with self._lock:
            if self.engine is None or self.context is None or not self.hooks.has("snapshot"):
                return None
            try:
                state = self.hooks.snapshot(self.engine, self.context)
            except QsmError:
                raise
            except Exception as exc:
                raise SnapshotError(f"{self.id}: snapshot failed: {_one_line(exc)}") from exc
        if state is None or self.abandoned:
            return None
        codec.check_state(self.id, state)
        return state

    def get_state(self) -> dict[str, Any] | None:
        return self.snapshot()

    def get_stats(self) -> dict[str, Any]:
        return {
            "strategy_id": self.id,
            "engine": self.spec.engine,
            "state": str(self._state),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "error": _one_line(self.error) if self.error else None,
        }


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
