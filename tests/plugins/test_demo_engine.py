from __future__ import annotations

import pytest

from strategy_manager.core.errors import HookError, SnapshotError
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


def test_bad_params_and_snapshots_are_named():
    with pytest.raises(HookError, match=r"unknown params \['speed'\]"):
        DemoEngine("X", {"speed": 2})
    with pytest.raises(HookError, match="0 < fast < slow"):
        DemoEngine("X", {"fast": 30, "slow": 20})
    with pytest.raises(SnapshotError, match=r"snapshot lacks \['window'\]"):
        DemoEngine("X", {}).restore({"bar": 1, "cash": 1.0, "position": 0, "trades": 0})
