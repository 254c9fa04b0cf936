from __future__ import annotations

import pytest

from strategy_manager.core.errors import InvalidStrategy, SnapshotError
from strategy_manager.plugins.demo_engine import DemoEngine
from strategy_manager.testing import json_roundtrip


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


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"speed": 2}, r"^s: params for demo: unknown 'speed'; known: bar_seconds, bars, cash, fast, lot, slow$"),
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
