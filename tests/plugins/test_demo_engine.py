from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from strategy_manager.core.clock import SimClock
from strategy_manager.core.context import EngineContext
from strategy_manager.core.errors import InvalidStrategy, SnapshotError
from strategy_manager.core.spec import parse_strategy
from strategy_manager.plugins.demo_engine import BarClock, DemoEngine
from strategy_manager.testing import json_roundtrip
from tests.conftest import wait_for


def run(engine: DemoEngine, bars: int) -> None:
    for _ in range(bars):
        engine.step()


def test_prices_are_deterministic_per_symbol():
    a, b, c = DemoEngine("600000.SH", {}), DemoEngine("600000.SH", {}), DemoEngine("000001.SZ", {})
    for e in (a, b, c):
        run(e, 50)
    assert a.snapshot() == b.snapshot()
    assert a.snapshot()["window"] != c.snapshot()["window"]


@pytest.mark.parametrize("cut", [1, 19, 20, 137])
def test_stopping_and_restoring_gives_the_uninterrupted_result(cut):
    whole = DemoEngine("600000.SH", {"fast": 3, "slow": 20})
    run(whole, 400)
    first = DemoEngine("600000.SH", {"fast": 3, "slow": 20})
    run(first, cut)
    saved = json_roundtrip(first.snapshot())
    second = DemoEngine("600000.SH", {"fast": 3, "slow": 20})
    second.restore(saved)
    run(second, 400 - cut)
    assert second.snapshot() == whole.snapshot()
    assert whole.snapshot()["trades"] > 2  # the crossover actually traded


@pytest.mark.parametrize(("before", "after"), [({}, {"fast": 3, "slow": 8, "lot": 7}), ({"slow": 8}, {})])
def test_params_taken_in_place_give_what_a_restart_from_the_snapshot_gives(before, after):
    from strategy_manager.plugins.demo_engine import check

    in_place = DemoEngine("600000.SH", before)
    run(in_place, 150)
    saved = json_roundtrip(in_place.snapshot())
    in_place.update(check("s", after))
    run(in_place, 250)
    restarted = DemoEngine("600000.SH", after)
    restarted.restore(saved)
    run(restarted, 250)
    assert in_place.snapshot() == restarted.snapshot()
    assert (in_place.fast, in_place.slow) == (after.get("fast", 5), after.get("slow", 20))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"speed": 2},
            r"^s: params for demo: unknown 'speed'; known: bar_seconds, bars, cash, fast, lot, slow$",
        ),
        ({"fast": 30, "slow": 20}, r"need 0 < fast < slow, got 30, 20"),
        ({"fast": "five"}, r"^s: params for demo: 'fast' must be an integer, got 'five'$"),
        ({"fast": 2.5}, r"'fast' must be an integer, got 2.5"),
        ({"slow": True}, r"'slow' must be an integer, got True"),
        ({"bar_seconds": "1m"}, r"'bar_seconds' must be a number, got '1m'"),
        ({"bar_seconds": -1}, r"'bar_seconds' must be at least 0, got -1"),
        ({"lot": 0}, r"'lot' must be at least 1, got 0"),
        ({"bars": "all"}, r"'bars' must be a whole number or null, got 'all'"),
    ],
)
def test_bad_params_are_named(params, message):
    with pytest.raises(InvalidStrategy, match=message):
        DemoEngine("X", params, "s")


def test_a_bad_snapshot_is_named():
    with pytest.raises(SnapshotError, match=r"snapshot lacks \['window'\]"):
        DemoEngine("X", {}).restore({"bar": 1, "cash": 1.0, "position": 0, "trades": 0})


# -- the bar clock: every demo engine of a process on one thread ----------------------
def _context(symbol: str, clock, tmp_path, events: list) -> EngineContext:
    spec = parse_strategy({"user_id": "u", "symbol": symbol, "strategy_key": "k", "engine": "demo"})
    context = EngineContext(spec=spec, data_dir=tmp_path / symbol, clock=clock)
    context.on_finish = lambda: events.append(("finished", symbol))
    context.on_crash = lambda exc: events.append(("crashed", symbol, str(exc)))
    return context


def test_one_thread_steps_every_engine_of_a_clock_until_each_stops_or_finishes(tmp_path):
    clock = SimClock(datetime(2026, 11, 24, 9, 30, tzinfo=UTC), speed=600)  # a bar every 0.1 s
    events: list = []
    engines = {s: DemoEngine(s, {"bar_seconds": 60}) for s in ("A.SH", "B.SH", "C.SH")}
    engines["D.SH"] = DemoEngine("D.SH", {"bar_seconds": 60, "bars": 3})
    contexts = {s: _context(s, clock, tmp_path, events) for s in engines}
    before = set(threading.enumerate())
    for symbol, engine in engines.items():
        BarClock.add(engine, contexts[symbol])
    wait_for(
        lambda: all(e.state["bar"] >= 5 for s, e in engines.items() if s != "D.SH"), 30, "five bars each"
    )
    assert events == [("finished", "D.SH")] and engines["D.SH"].state["bar"] == 3
    new = [t for t in threading.enumerate() if t not in before]
    assert [t.name for t in new] == ["qsm-demo-bars"]

    contexts["A.SH"].stop_event.set()
    stopped_at = engines["A.SH"].snapshot()["bar"]
    wait_for(lambda: engines["B.SH"].state["bar"] >= stopped_at + 3, 30, "B three bars on")
    assert engines["A.SH"].snapshot()["bar"] == stopped_at  # nothing after the stop
    for symbol in ("B.SH", "C.SH"):
        contexts[symbol].stop_event.set()
    new[0].join(30)
    assert not new[0].is_alive()  # an idle bar clock's thread ends


def test_a_crashing_engine_is_reported_and_the_others_go_on(tmp_path):
    clock = SimClock(datetime(2026, 11, 24, 9, 30, tzinfo=UTC), speed=600)
    events: list = []
    good, bad = DemoEngine("G.SH", {"bar_seconds": 60}), DemoEngine("X.SH", {"bar_seconds": 60})
    bad.state["window"] = None  # its next bar fails
    contexts = {s: _context(s, clock, tmp_path, events) for s in ("G.SH", "X.SH")}
    BarClock.add(good, contexts["G.SH"])
    BarClock.add(bad, contexts["X.SH"])
    wait_for(lambda: good.state["bar"] >= 5, 30, "the good engine's bars")
    assert [e[:2] for e in events] == [("crashed", "X.SH")]
    contexts["G.SH"].stop_event.set()
