"""The simulated clock never runs ahead of the orchestrator: work costs no simulated
time, and the control loop wakes to the very instant it was due."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from strategy_manager.core.clock import SimClock
from tests.conftest import run_cli

START = datetime(2026, 11, 24, 1, 20, tzinfo=UTC)


def test_simulated_time_stands_still_while_held_and_moves_on_from_there():
    clock = SimClock(START, speed=1000)
    with clock.hold():
        frozen = clock.now()
        time.sleep(0.05)  # fifty simulated seconds, had it been running
        assert clock.now() == frozen
    time.sleep(0.01)
    assert frozen < clock.now() < frozen + timedelta(seconds=40)  # from where it stood, not beyond


def test_simulated_time_does_not_pass_the_barrier_until_it_moves():
    clock = SimClock(START, speed=1000)
    barrier = clock.now() + timedelta(seconds=5)
    clock.set_barrier(barrier)
    time.sleep(0.05)
    assert clock.now() == barrier
    clock.set_barrier(None)
    time.sleep(0.01)
    assert clock.now() > barrier


def test_a_simulated_wait_is_simulated_time_and_holds_count():
    clock = SimClock(START, speed=100)
    done = threading.Event()
    woke: list[datetime] = []

    def wait() -> None:
        clock.wait(threading.Event(), 1.0)  # one simulated second
        woke.append(clock.now())
        done.set()

    with clock.hold():
        threading.Thread(target=wait, daemon=True).start()
        assert not done.wait(0.1)  # ten simulated seconds' real time: the clock stood still
    assert done.wait(5)
    assert woke[0] >= START + timedelta(seconds=1)


def _events(out: str) -> list[str]:
    return sorted(line for line in out.splitlines() if line.startswith("2026-"))


@pytest.mark.slow
def test_a_simulated_run_shows_the_same_event_times_idle_and_loaded(tmp_path):
    args = ("run", "--clock", "sim", "--start", "2026-11-24T09:20+08:00", "--speed", "3000", "--for", "20m")
    runs = {}
    for name in ("idle", "loaded"):
        data = tmp_path / name
        env = {"QSM_DATA_DIR": str(data)}
        assert run_cli("examples", "import", "--force", "demo", env=env).returncode == 0
        hogs = []
        if name == "loaded":  # one CPU-bound process per core beside it
            spin = [sys.executable, "-c", "while True: pass"]
            hogs = [subprocess.Popen(spin) for _ in range(os.cpu_count() or 2)]
        try:
            out = run_cli(*args, env=env, timeout=120)
        finally:
            for hog in hogs:
                hog.kill()
                hog.wait()
        assert out.returncode == 0, out.stderr
        runs[name] = _events(out.stdout)
    assert runs["idle"] and runs["idle"] == runs["loaded"]
