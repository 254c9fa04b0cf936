"""One strategy's cerebro, run on a thread, with snapshots, restore and a prompt stop.

Everything that reads or changes the engine's state happens on the cerebro thread
at a *safe point*: the start of the broker's turn, the one moment of each cerebro
cycle when the strategy has fully processed bar *t* and nothing of bar *t+1* has
been traded yet. Other threads only leave requests there (snapshot, stop) and wait.
The engine's turn (an instance attribute shadowing ``broker.next``) looks at two
flags per bar and enters the safe point only when something is asked of it (a
request, a stop by the hook or the core's stop event, a hold, a pace), so an
undisturbed run costs one function call per bar.

Restore replays the feed from its start with the strategy's trading callbacks
silenced, so that every indicator sees exactly the history it saw before; at the
first safe point whose bar lies after the snapshot's last bar, the snapshot's
cash, positions, orders, trades and strategy state are put in and trading resumes.
The result equals an uninterrupted run, bar for bar.
"""

from __future__ import annotations

import copy
import threading
import time
from typing import Any

from qsm_backtrader.build import Plan, build_cerebro
from qsm_backtrader.state import OrderHistory, capture, inject, validate
from strategy_manager.core.context import EngineContext
from strategy_manager.core.errors import EngineError, SnapshotError

#: Strategy callbacks that may trade; silenced while the restore replays history.
_SILENCED = ("next", "prenext", "nextstart", "notify_timer", "notify_cashvalue", "notify_fund")


def _silent(*args: Any, **kwargs: Any) -> None:
    return None


class _Request:
    def __init__(self) -> None:
        self.done = False
        self.result: dict[str, Any] | None = None
        self.error: BaseException | None = None


class BacktraderEngine:
    def __init__(self, context: EngineContext, plan: Plan, class_name: str) -> None:
        self.context = context
        self.sid = context.strategy_id
        self.settings = settings = plan.settings
        self.class_name = class_name
        self.cerebro, self.broker, self.data = build_cerebro(context, plan)
        self.history = OrderHistory(settings.history_limit)
        #: Set while the engine waits after ``hold_after_bars`` bars.
        self.holding = threading.Event()
        self._cv = threading.Condition()
        self._requests: list[_Request] = []
        self._stop = False
        self._restored: dict[str, Any] | None = None
        self._final: dict[str, Any] | None = None
        self._final_error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._running = False
        self._crashed = False
        self._start_bars = 0
        self._due: float | None = None
        self._update_attention()
        self.broker.next = self._broker_turn

    # -- hooks -------------------------------------------------------------------
    def restore(self, snapshot: dict[str, Any]) -> None:
        if self._thread is not None:
            raise EngineError(f"{self.sid}: restore called on a started engine")
        validate(snapshot, self.sid, self.class_name)
        self._restored = copy.deepcopy(snapshot)
        self.history = OrderHistory(
            self.settings.history_limit, snapshot["history"], snapshot["history_total"]
        )
        self._update_attention()

    def start(self) -> None:
        if self._thread is not None:
            raise EngineError(f"{self.sid}: engine already started")
        self._thread = self.context.spawn(self._run, name="cerebro")

    def stop(self, timeout: float) -> None:
        with self._cv:
            self._stop = True
            self._update_attention()
            self._cv.notify_all()
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return
        thread.join(timeout)
        if thread.is_alive():
            # Blocked outside cerebro's loop (a feed that never returns): ask cerebro
            # itself, which quits as soon as control comes back to it.
            self.context.logger.warning("no bar boundary within %.1fs; calling cerebro.runstop()", timeout)
            self.cerebro.runstop()
            thread.join(1.0)

    def snapshot(self, timeout: float) -> dict[str, Any] | None:
        with self._cv:
            if self._final_error is not None:
                raise self._final_error
            if self._final is not None:
                return copy.deepcopy(self._final)
            if self._restored is not None:
                # Nothing new happened since the restore (still replaying history).
                return copy.deepcopy(self._restored)
            if not self._running or self._crashed:
                return None
            request = _Request()
            self._requests.append(request)
            self._update_attention()
            self._cv.notify_all()
            if not self._cv.wait_for(lambda: request.done, timeout):
                if request in self._requests:
                    self._requests.remove(request)
                self._update_attention()
                raise SnapshotError(f"{self.sid}: no bar boundary within {timeout}s; snapshot not taken")
        if request.error is not None:
            raise request.error
        return request.result

    # -- the cerebro thread ------------------------------------------------------
    def _run(self) -> None:
        with self._cv:
            self._running = True
        try:
            self.cerebro.run()
        except BaseException as exc:
            with self._cv:
                self._crashed = True
                self._answer(None, SnapshotError(f"{self.sid}: engine crashed: {exc}"))
            raise
        with self._cv:
            if self._final is None and self._final_error is None:
                self._final_capture()
            self._answer(self._final, self._final_error)

    def _strategy(self) -> Any:
        return self.cerebro.runningstrats[0]

    def _safe_point(self) -> bool:
        """Called at the start of the broker's turn; False ends the run here."""
        strategy = self._strategy()
        with self._cv:
            if self._restored is not None:
                self._replay_or_resume(strategy)
            while True:
                if self._requests:
                    try:
                        snap = capture(strategy, self.broker, self.history, self.sid)
                    except SnapshotError as exc:
                        self._answer(None, exc)
                    else:
                        self._answer(snap, None)
                if self._stop or self.context.stop_event.is_set():
                    self._final_capture()
                    self.cerebro.runstop()
                    return False
                if self._must_hold(strategy):
                    self.holding.set()
                    self._cv.wait(0.05)  # the stop event sets no condition: look again soon
                    continue
                if self._must_wait():
                    continue
                break
            self._update_attention()
        return True

    def _replay_or_resume(self, strategy: Any) -> None:
        snap = self._restored
        assert snap is not None
        last = snap["last_bar"]
        if last is not None and self.data.datetime[0] <= last["dt"]:
            for name in _SILENCED:  # still history: indicators advance, nothing trades
                setattr(strategy, name, _silent)
            return
        for name in _SILENCED:
            vars(strategy).pop(name, None)
        if last is not None and (len(strategy) == 0 or strategy.lines.datetime[0] != last["dt"]):
            self.context.logger.warning(
                "feed history differs from the snapshot: it ended at bar %s, the replay at %s",
                last["iso"], len(strategy) and strategy.lines.datetime.datetime(0),
            )
        inject(strategy, self.broker, snap, self.sid)
        self._start_bars = len(strategy)
        self._restored = None

    def _must_hold(self, strategy: Any) -> bool:
        """Hold at bar ``hold_after_bars``, unless this run took over past it (a restore)."""
        hold = self.settings.feed.hold_after_bars
        return hold is not None and self._restored is None and self._start_bars < hold <= len(strategy)

    def _must_wait(self) -> bool:
        """Pace the replay; True after waiting (the caller looks at requests again)."""
        pace = self.settings.feed.pace
        if not pace or self._restored is not None:
            return False
        now = time.monotonic()
        if self._due is not None and now < self._due:
            self._cv.wait(self._due - now)
            return True
        self._due = now + 1.0 / pace
        return False

    def _final_capture(self) -> None:
        if self._restored is not None:  # no bar came after the snapshot's last one
            self._final = copy.deepcopy(self._restored)
            return
        try:
            self._final = capture(self._strategy(), self.broker, self.history, self.sid)
        except SnapshotError as exc:
            self._final_error = exc

    def _answer(self, snap: dict[str, Any] | None, error: BaseException | None) -> None:
        for request in self._requests:
            request.result = copy.deepcopy(snap)
            request.error = error
            request.done = True
        self._requests.clear()
        self._cv.notify_all()

    def _update_attention(self) -> None:
        feed = self.settings.feed
        self._attention = bool(
            self._requests or self._stop or self._restored is not None or feed.pace or feed.hold_after_bars
        )

    def _broker_turn(self) -> None:
        """Replaces ``broker.next``: the bar boundary, where requests and stops are served."""
        if (self._attention or self.context.stop_event.is_set()) and not self._safe_point():
            return
        type(self.broker).next(self.broker)
