"""The event hub: the control thread never waits for a client, and a client that
falls behind is told to read the table again instead of holding memory."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime

from strategy_manager.core.store import StatusRecord
from strategy_manager.web.events import EventHub


def now() -> datetime:
    return datetime(2026, 11, 24, 1, 30, tzinfo=UTC)


def publish(hub: EventHub, n: int) -> float:
    """Publish ``n`` events from another thread; how long that took."""
    started = time.perf_counter()
    publisher = threading.Thread(target=lambda: [hub.event("started", f"u:S{i}:k", "fresh") for i in range(n)])
    publisher.start()
    publisher.join()
    return time.perf_counter() - started


def test_a_stalled_client_never_blocks_the_publisher_and_holds_one_reset():
    async def scenario():
        hub = EventHub(now, client_queue=5)
        hub.attach(asyncio.get_running_loop())
        stalled = hub.subscribe()
        took = await asyncio.to_thread(publish, hub, 500)
        await asyncio.sleep(0.05)  # the loop delivers
        return hub, stalled, took

    hub, stalled, took = asyncio.run(scenario())
    assert took < 1.0
    assert stalled.queue.qsize() == 1
    assert stalled.queue.get_nowait()[0] == "reset"
    assert len(hub.recent) == 500 and hub.events_of("u:S7:k")[0]["detail"] == "fresh"


def test_a_client_that_keeps_up_gets_every_event_in_order():
    async def scenario():
        hub = EventHub(now)
        hub.attach(asyncio.get_running_loop())
        client = hub.subscribe()
        await asyncio.to_thread(publish, hub, 300)
        return [(await client.next())[1]["strategy_id"] for _ in range(300)]

    assert asyncio.run(scenario()) == [f"u:S{i}:k" for i in range(300)]


def test_a_state_change_becomes_a_state_event_in_the_strategys_history():
    async def scenario():
        hub = EventHub(now)
        hub.attach(asyncio.get_running_loop())
        hub.statuses([StatusRecord("u:A:k", "WAITING")])
        hub.statuses([StatusRecord("u:A:k", "WAITING", restarts=1)])
        hub.statuses([StatusRecord("u:A:k", "DISABLED")])
        await asyncio.sleep(0.05)
        return hub

    hub = asyncio.run(scenario())
    assert [e["detail"] for e in hub.events_of("u:A:k")] == ["WAITING -> DISABLED"]


def test_events_handed_over_before_the_loop_exists_are_delivered_once_it_does():
    hub = EventHub(now)
    hub.event("started", "u:A:k", "fresh")

    async def scenario():
        hub.attach(asyncio.get_running_loop())
        await asyncio.sleep(0.05)

    asyncio.run(scenario())
    assert [e["kind"] for e in hub.recent] == ["started"]
