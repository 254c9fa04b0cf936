"""Transitions fanned out to the server's event-stream clients.

The control thread hands over events and status changes with :meth:`EventHub.event`
and :meth:`EventHub.statuses`: an append to a deque and, at most once until the
server's loop has taken them, a wake-up of that loop. It never waits for a client.
On the server's loop the hub keeps the recent events (overall and per strategy),
turns state changes into ``state`` events, and puts each message on every client's
queue. A client's queue is bounded: one that falls behind (a slow or stalled
browser) gets a ``reset`` message telling it to read the table again, and what it
missed is dropped rather than held.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from strategy_manager.core.store import StatusRecord

#: Messages a client may have waiting before it is reset.
CLIENT_QUEUE = 2000
#: Events kept for the API: overall, and per strategy.
RECENT = 1000
RECENT_PER_STRATEGY = 50

Message = tuple[str, Any]  # (SSE event name, JSON-able data)


class Client:
    """One event-stream connection's queue."""

    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[Message | None] = asyncio.Queue(size + 1)
        self.size = size
        self.behind = False

    def offer(self, message: Message) -> None:
        if self.behind:
            return
        if self.queue.qsize() >= self.size:  # fell behind: drop what waits, say reset
            self.behind = True
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(("reset", {"reason": "too many events waiting; read the table again"}))
            return
        self.queue.put_nowait(message)

    async def next(self) -> Message | None:
        """The next message (None once the server closes)."""
        message = await self.queue.get()
        if message is not None and message[0] == "reset":
            self.behind = False
        return message


class EventHub:
    def __init__(
        self,
        now: Callable[[], datetime],
        client_queue: int = CLIENT_QUEUE,
        redact: Callable[[str], str] = str,
    ) -> None:
        self.now = now
        self.client_queue = client_queue
        self.redact = redact
        self._inbox: deque[tuple[str, Any]] = deque()
        self._lock = threading.Lock()
        self._scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clients: set[Client] = set()
        self._states: dict[str, str] = {}
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT)
        self._by_strategy: dict[str, deque[dict[str, Any]]] = {}
        self.closed = False

    # -- any thread ----------------------------------------------------------------
    def event(self, kind: str, strategy_id: str, detail: str) -> None:
        """An orchestrator event (its ``on_event`` sink)."""
        self._hand_over(("event", (self.now(), kind, strategy_id, detail)))

    def statuses(self, records: Sequence[StatusRecord]) -> None:
        """Status records the control loop just computed."""
        self._hand_over(("status", records))

    def _hand_over(self, item: tuple[str, Any]) -> None:
        self._inbox.append(item)
        with self._lock:
            if self._scheduled or self._loop is None:
                return
            self._scheduled = True
            loop = self._loop
        with contextlib.suppress(RuntimeError):  # the loop has closed
            loop.call_soon_threadsafe(self._drain)

    # -- the server's loop ---------------------------------------------------------
    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Deliver on ``loop`` from now on (the server calls this as it starts)."""
        with self._lock:
            self._loop = loop
            self._scheduled = True
        loop.call_soon(self._drain)

    def subscribe(self) -> Client:
        client = Client(self.client_queue)
        self._clients.add(client)
        return client

    def unsubscribe(self, client: Client) -> None:
        self._clients.discard(client)

    def close(self) -> None:
        """Tell every client the stream ends (on the server's loop)."""
        self.closed = True
        for client in self._clients:
            client.queue.put_nowait(None)

    def events_of(self, strategy_id: str) -> list[dict[str, Any]]:
        """The recent events of one strategy, newest first."""
        return list(reversed(self._by_strategy.get(strategy_id, ())))

    def _drain(self) -> None:
        with self._lock:
            self._scheduled = False
        while self._inbox:
            kind, payload = self._inbox.popleft()
            if kind == "event":
                when, name, ident, detail = payload
                self._record(when, name, ident, self.redact(detail))
            else:
                self._status(payload)

    def _status(self, records: Sequence[StatusRecord]) -> None:
        """The rows first (a page updates its table), then a ``state`` event for each
        strategy whose state changed."""
        if self._clients:
            self._offer(("status", [_status_row(r, self.redact) for r in records]))
        now = self.now()
        for record in records:
            before = self._states.get(record.strategy_id)
            self._states[record.strategy_id] = record.state
            if before is not None and before != record.state:
                self._record(now, "state", record.strategy_id, f"{before} -> {record.state}")

    def _record(self, when: datetime, kind: str, ident: str, detail: str) -> None:
        event = {"time": when.isoformat(), "kind": kind, "strategy_id": ident, "detail": detail}
        self.recent.append(event)
        mine = self._by_strategy.get(ident)
        if mine is None:
            mine = self._by_strategy[ident] = deque(maxlen=RECENT_PER_STRATEGY)
        mine.append(event)
        self._offer(("transition", event))

    def _offer(self, message: Message) -> None:
        for client in list(self._clients):
            client.offer(message)


def _status_row(record: StatusRecord, redact: Callable[[str], str]) -> dict[str, Any]:
    details = record.details or {}
    at = record.next_transition_at
    return {
        "id": record.strategy_id,
        "state": record.state,
        "restarts": record.restarts,
        "reason": redact(record.last_error) if record.last_error else None,
        "next_transition": record.next_transition,
        "next_transition_at": at.isoformat() if at else None,
        "last_snapshot_seq": details.get("last_snapshot_seq"),
        "last_snapshot_at": details.get("last_snapshot_at"),
    }
