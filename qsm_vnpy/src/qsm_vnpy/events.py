"""Running a function on a vnpy event engine's thread, behind every event queued before.

vnpy delivers ticks, orders and trades to strategies on the event engine's one
thread. A function queued as an event runs there between two events, which makes
it the adapter's safe point: strategy variables are not half updated, and every
event put before it has been handled (a *barrier*).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from vnpy.event import Event, EventEngine

EVENT_QSM_CALL = "eQsmCall"


class EngineGone(Exception):
    """The event engine stopped before the queued call ran."""


class _Call:
    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as exc:
            self.error = exc
        finally:
            self.done.set()


def install(event_engine: EventEngine) -> None:
    """Let ``call_on_event_thread`` work on this engine (once, before use)."""
    event_engine.register(EVENT_QSM_CALL, _dispatch)


def _dispatch(event: Event) -> None:
    event.data.run()


def call_on_event_thread(
    event_engine: EventEngine, fn: Callable[[], Any], timeout: float | None = None
) -> Any:
    """Run ``fn`` on the event thread after all earlier events; return its result.

    Raises EngineGone if the engine stops first, TimeoutError after ``timeout``.
    """
    call = _Call(fn)
    event_engine.put(Event(EVENT_QSM_CALL, call))
    waited = 0.0
    while not call.done.wait(0.2):
        waited += 0.2
        if not event_engine._active:
            raise EngineGone("vnpy's event engine stopped")
        if timeout is not None and waited >= timeout:
            raise TimeoutError(f"the event engine did not answer within {timeout}s")
    if call.error is not None:
        raise call.error
    return call.result


def barrier(event_engine: EventEngine) -> None:
    """Return once every event put before this call has been handled."""
    call_on_event_thread(event_engine, lambda: None)
