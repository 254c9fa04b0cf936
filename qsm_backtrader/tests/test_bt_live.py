"""A live feed: cerebro keeps running while idle, snapshots and stops promptly,
and a restart resumes exactly when the feed delivers its history again."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from qsm_backtrader import plugin
from qsm_backtrader.examples.prices import generate_bars

# backtrader's live loop calls datetime.utcnow(), deprecated since Python 3.12
pytestmark = pytest.mark.filterwarnings("ignore:datetime.datetime.utcnow:DeprecationWarning")

LIVE = {"csv": None, "factory": "qsm_backtrader.livefeed:QueueFeed"}
FAST_SLOW = {"fast": 5, "slow": 15}
BARS = list(generate_bars(160, seed=3))


def push(engine: Any, bars: list[Any]) -> None:
    for bar in bars:
        engine.data.put(*bar)


def wait_for_bars(driver, engine, context, count: int) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        snap = plugin.qsm_snapshot_engine(engine=engine, context=context)
        if snap is not None and snap["bars"] == count:
            return driver.snapshot(engine, context)
        time.sleep(0.05)
    raise AssertionError(f"engine did not reach {count} bars")


def test_an_idle_live_engine_keeps_running_then_stops_promptly(driver):
    engine, context = driver.start(driver.spec(params=FAST_SLOW, feed=LIVE))
    push(engine, BARS[:60])
    wait_for_bars(driver, engine, context, 60)
    time.sleep(0.6)  # idle: no bar arrives
    assert context.threads[0].is_alive()

    started = time.monotonic()
    snap = driver.snapshot(engine, context)
    assert time.monotonic() - started < 1.0
    assert snap["bars"] == 60

    started = time.monotonic()
    final = driver.stop(engine, context)
    assert time.monotonic() - started < 2.0
    assert not context.threads
    assert final["bars"] == 60


def test_a_finished_live_feed_ends_the_engine(driver):
    spec = driver.spec(params=FAST_SLOW, feed=LIVE)
    engine, context = driver.create(spec)
    finished = threading.Event()
    context.on_finish = finished.set
    plugin.qsm_start_engine(engine=engine, context=context)
    push(engine, BARS[:40])
    engine.data.finish()
    assert finished.wait(10)
    assert driver.snapshot(engine, context)["bars"] == 40


def test_a_live_restart_resumes_exactly_after_the_feed_replays_its_history(driver):
    spec = driver.spec(params=FAST_SLOW, feed=LIVE)
    engine, context = driver.start(spec)
    push(engine, BARS)
    engine.data.finish()
    assert not context.join_threads(20)
    whole = driver.snapshot(engine, context)
    assert len(whole["history"]) >= 6  # it trades

    engine, context = driver.start(spec)
    push(engine, BARS[:90])
    wait_for_bars(driver, engine, context, 90)
    stopped = driver.stop(engine, context)

    engine, context = driver.start(spec, snapshot=stopped)
    push(engine, BARS)  # a live feed backfills history first, then goes on
    engine.data.finish()
    assert not context.join_threads(20)
    final = driver.snapshot(engine, context)
    assert final["broker"] == whole["broker"]
    assert [{k: v for k, v in r.items() if k != "ref"} for r in final["history"]] == [
        {k: v for k, v in r.items() if k != "ref"} for r in whole["history"]
    ]
