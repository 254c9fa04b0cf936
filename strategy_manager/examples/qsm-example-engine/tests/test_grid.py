"""The engine's own behaviour, without the core."""

from qsm_example_engine.grid import GridEngine


def test_a_restored_engine_continues_exactly():
    whole = GridEngine("X", {})
    for _ in range(500):
        whole.tick()
    first = GridEngine("X", {})
    for _ in range(200):
        first.tick()
    second = GridEngine("X", {})
    second.restore(first.snapshot())
    for _ in range(300):
        second.tick()
    assert second.snapshot() == whole.snapshot()
    assert whole.snapshot()["cash"] != 10_000.0  # it traded
