"""HookPool: engine hooks on a bounded set of threads, one task at a time per
strategy, each task with a deadline.

A task that overruns its deadline is given up on at once: its future fails with
:class:`HookTimeout`, its ``on_timeout`` callback runs (the orchestrator abandons
the engine there), the thread it runs on leaves the pool when the hook finally
returns, if ever, and a fresh thread takes its place. Hanging engines therefore
never use up the pool, and the tasks of other strategies keep running.

Tasks of one key run in submission order and never two at once; a task that timed
out releases its key only after ``on_timeout`` has run, so the next task of that
key already sees the engine as abandoned.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import Future, InvalidStateError
from typing import Any

from attrs import define, field

from strategy_manager.core.errors import HookTimeout

log = logging.getLogger("strategy_manager.hooks")


@define(eq=False)
class Task:
    key: Hashable
    name: str
    fn: Callable[[], Any]
    timeout: float
    on_timeout: Callable[[], None] | None = None
    future: Future[Any] = field(factory=Future)
    started: float | None = None
    abandoned: bool = False


@define(frozen=True)
class Abandoned:
    """A task whose thread was given up on; ``returned`` once the hook came back."""

    key: Hashable
    name: str
    thread: threading.Thread

    @property
    def returned(self) -> bool:
        return not self.thread.is_alive()


class HookPool:
    def __init__(self, threads: int, name: str = "qsm-hooks") -> None:
        if threads < 1:
            raise ValueError("a hook pool needs at least one thread")
        self.limit = threads
        self.name = name
        lock = threading.Lock()
        #: Workers wait on ``_cv`` for a ready task (woken one per task); the watchdog
        #: waits on ``_watch_cv`` for an earlier deadline. Both share one lock.
        self._cv = threading.Condition(lock)
        self._watch_cv = threading.Condition(lock)
        #: The deadline the watchdog sleeps until (None: no running task).
        self._watch_due: float | None = None
        self._ready: deque[Task] = deque()
        #: key -> its tasks in order; the first is running or ready.
        self._keys: dict[Hashable, deque[Task]] = {}
        self._running: dict[threading.Thread, Task] = {}
        self._threads: set[threading.Thread] = set()
        self._idle = 0
        self._abandoned: list[Abandoned] = []
        self._closed = False
        self._serial = 0
        self._watchdog = threading.Thread(target=self._watch, name=f"{name}-watchdog", daemon=True)
        self._watchdog.start()

    # -- use ---------------------------------------------------------------------------
    def submit(
        self,
        key: Hashable,
        fn: Callable[[], Any],
        timeout: float,
        name: str = "hook",
        on_timeout: Callable[[], None] | None = None,
    ) -> Future[Any]:
        """Run ``fn`` after the earlier tasks of ``key``; fail it with HookTimeout if it
        runs longer than ``timeout`` seconds."""
        task = Task(key, name, fn, timeout, on_timeout)
        self.submit_tasks([task])
        return task.future

    def submit_tasks(self, tasks: list[Task]) -> None:
        """Submit many tasks at once: one lock round and one wake-up call for all of
        them, instead of a contended round per task."""
        with self._cv:
            if self._closed:
                for task in tasks:
                    task.future.set_exception(RuntimeError(f"{self.name} is shut down"))
                return
            ready = 0
            for task in tasks:
                queue = self._keys.get(task.key)
                if queue is None:
                    self._keys[task.key] = deque([task])
                    self._ready.append(task)
                    ready += 1
                else:
                    queue.append(task)
            if ready:
                self._spawn_for_ready()
                self._cv.notify(ready)

    def busy(self, key: Hashable) -> bool:
        """True while ``key`` has a task queued or running."""
        with self._cv:
            return key in self._keys

    def grow(self, threads: int) -> None:
        """Allow up to ``threads`` threads (a shutdown stops everything at once)."""
        with self._cv:
            self.limit = max(self.limit, threads)
            self._spawn_for_ready()

    def abandoned(self) -> list[Abandoned]:
        with self._cv:
            return list(self._abandoned)

    def shutdown(self) -> None:
        """Refuse new tasks; idle threads end. Running hooks are not waited for."""
        with self._cv:
            self._closed = True
            for task in self._ready:
                if not task.future.done():
                    task.future.set_exception(RuntimeError(f"{self.name} is shut down"))
            self._ready.clear()
            self._cv.notify_all()
            self._watch_cv.notify()

    # -- inside ------------------------------------------------------------------------
    def _make_ready(self, task: Task) -> None:
        self._ready.append(task)
        self._spawn_for_ready()
        self._cv.notify()

    def _spawn_for_ready(self) -> None:
        while self._idle < len(self._ready) and len(self._threads) < self.limit:
            self._serial += 1
            thread = threading.Thread(target=self._work, name=f"{self.name}-{self._serial}", daemon=True)
            self._threads.add(thread)
            self._idle += 1
            thread.start()

    def _release_key(self, task: Task) -> None:
        queue = self._keys.get(task.key)
        if queue and queue[0] is task:
            queue.popleft()
        if queue:
            self._make_ready(queue[0])
        else:
            self._keys.pop(task.key, None)

    def _work(self) -> None:
        me = threading.current_thread()
        while True:
            with self._cv:
                while not self._ready and not self._closed:
                    self._cv.wait()
                if not self._ready:
                    self._threads.discard(me)
                    self._idle -= 1
                    return
                task = self._ready.popleft()
                self._idle -= 1
                task.started = time.monotonic()
                self._running[me] = task
                due = task.started + task.timeout
                if self._watch_due is None or due < self._watch_due:
                    self._watch_cv.notify()  # the watchdog learns of an earlier deadline
            try:
                result, error = task.fn(), None
            except BaseException as exc:
                result, error = None, exc
            with self._cv:
                if task.abandoned:  # replaced already: this thread leaves the pool
                    log.warning("%s %r of %s returned after it was abandoned", self.name, task.name, task.key)
                    return
                del self._running[me]
                self._idle += 1
                self._settle(task, result, error)
                self._release_key(task)

    @staticmethod
    def _settle(task: Task, result: Any, error: BaseException | None) -> None:
        try:
            if error is None:
                task.future.set_result(result)
            else:
                task.future.set_exception(error)
        except InvalidStateError:  # cancelled meanwhile
            pass

    def _watch(self) -> None:
        with self._cv:
            while True:
                now = time.monotonic()
                next_due: float | None = None
                for thread, task in list(self._running.items()):
                    assert task.started is not None
                    due = task.started + task.timeout
                    if now >= due:
                        self._give_up(thread, task)
                    else:
                        next_due = due if next_due is None else min(next_due, due)
                if self._closed and not self._running:
                    return
                self._watch_due = next_due
                self._watch_cv.wait(None if next_due is None else max(0.0, next_due - time.monotonic()))

    def _give_up(self, thread: threading.Thread, task: Task) -> None:
        """Called with the lock held: fail the task, abandon its thread, replace it."""
        task.abandoned = True
        del self._running[thread]
        self._threads.discard(thread)
        self._abandoned.append(Abandoned(task.key, task.name, thread))
        log.error(
            "%s %r of %s did not return within %.1fs; thread abandoned",
            self.name,
            task.name,
            task.key,
            task.timeout,
        )
        if task.on_timeout is not None:
            try:
                task.on_timeout()
            except Exception:
                log.exception("on_timeout of %r for %s failed", task.name, task.key)
        self._settle(
            task, None, HookTimeout(f"{task.key}: {task.name} did not return within {task.timeout:g}s")
        )
        self._release_key(task)
        self._spawn_for_ready()
