from __future__ import annotations

import threading
import time

import pytest

from strategy_manager.core.classloader import ClassLoader
from strategy_manager.core.context import EngineContext
from strategy_manager.core.errors import HookError, SnapshotError
from strategy_manager.core.registry import EngineRegistry
from strategy_manager.core.spec import parse_strategy
from strategy_manager.core.worker import EngineWorker, WorkerState
from tests.conftest import wait_for


def make_worker(
    tmp_path,
    engine_class="tests.core.user_engines.Counter",
    params=None,
    engine="python",
    snapshots=None,
    stop_timeout=5.0,
    **kw,
):
    spec = parse_strategy(
        {
            "user_id": "u",
            "symbol": "600000.SH",
            "strategy_key": "k",
            "engine": engine,
            "engine_class": engine_class,
            "params": params or {},
        }
    )
    registry = EngineRegistry.from_entry_points()
    saved = snapshots if snapshots is not None else []
    classes = ClassLoader((), ("tests.core.user_engines",))
    worker = EngineWorker(
        spec,
        registry.resolve(engine),
        lambda: EngineContext(spec=spec, data_dir=tmp_path / "engine", classes=classes),
        load_snapshot=lambda: saved[-1] if saved else None,
        state_sink=saved.append,
        stop_timeout=stop_timeout,
        **kw,
    )
    return worker, saved


def test_start_stop_snapshots_and_the_next_start_restores(tmp_path):
    worker, saved = make_worker(tmp_path, params={"start": 10})
    worker.start()
    assert worker.state is WorkerState.RUNNING
    assert worker.engine.target.count == 11
    worker.stop()
    assert worker.state is WorkerState.STOPPED
    assert saved == [{"count": 11}]
    worker.start()  # a fresh engine, restored from the snapshot, then started again
    assert worker.engine.target.count == 12
    worker.stop()
    assert saved[-1] == {"count": 12}


def test_double_stop_and_stop_before_start_are_harmless(tmp_path):
    worker, saved = make_worker(tmp_path)
    worker.stop()
    assert worker.state is WorkerState.STOPPED
    worker.start()
    worker.stop()
    worker.stop()
    assert len(saved) == 1


def test_a_failing_start_raises_one_line_naming_the_strategy_and_step(tmp_path):
    worker, _ = make_worker(tmp_path, params={"fail_start": True})
    with pytest.raises(
        HookError, match=r"^u:600000.SH:k: start failed: RuntimeError: exchange login refused$"
    ):
        worker.start()
    assert worker.state is WorkerState.FAILED
    assert worker.engine is None


def test_an_unserializable_snapshot_names_the_key_and_keeps_the_previous(tmp_path):
    worker, saved = make_worker(tmp_path, "tests.core.user_engines.Unserializable")
    saved.append({"count": 3})
    worker.start()
    with pytest.raises(SnapshotError, match=r"u:600000.SH:k: snapshot state key .opened.at. holds a object"):
        worker.snapshot()
    worker.stop()  # the failed save is logged; the stop still happens
    assert saved == [{"count": 3}]
    assert worker.state is WorkerState.STOPPED


def test_a_stop_that_hangs_is_abandoned_after_the_deadline(tmp_path):
    from tests.core.user_engines import HangsInStop

    HangsInStop.release.clear()
    worker, _ = make_worker(tmp_path, "tests.core.user_engines.HangsInStop", stop_timeout=0.2)
    worker.start()
    t0 = time.monotonic()
    worker.stop(save_state=False)
    assert time.monotonic() - t0 < 2
    assert "stop did not return within 0.2s" in str(worker.error)
    HangsInStop.release.set()


def test_a_seed_style_strategy_worker_runs_on_a_watched_thread(tmp_path):
    worker, saved = make_worker(tmp_path, "tests.core.user_engines.SeedWorker")
    before = set(threading.enumerate())  # an earlier test's thread may still be ending
    worker.start()
    wait_for(lambda: worker.engine.target.ticks > 0, 10, "the seed-style worker ticking")
    worker.stop()
    assert saved[-1]["ticks"] > 0
    assert set(threading.enumerate()) - before == set()  # its thread was joined
    worker.start()
    assert worker.engine.target.ticks >= saved[-1]["ticks"]
    worker.stop()


def test_an_engine_thread_that_finishes_is_reported(tmp_path):
    exits = []
    worker, _ = make_worker(
        tmp_path,
        None,
        engine="demo",
        params={"bars": 30, "bar_seconds": 0},
        on_exit=lambda w, exc: exits.append((w.id, exc)),
    )
    worker.start()
    deadline = time.monotonic() + 5
    while not exits and time.monotonic() < deadline:
        time.sleep(0.01)
    assert exits == [("u:600000.SH:k", None)]
    assert worker.state is WorkerState.FINISHED
    worker.stop()
    assert worker.state is WorkerState.FINISHED


def test_an_engine_thread_that_outlives_stop_is_reported(tmp_path):
    from tests.core.user_engines import Stubborn

    Stubborn.release.clear()
    worker, _ = make_worker(tmp_path, "tests.core.user_engines.Stubborn", stop_timeout=0.3)
    worker.start()
    t0 = time.monotonic()
    worker.stop(save_state=False)
    assert time.monotonic() - t0 < 2
    assert "engine threads still running after stop: u:600000.SH:k/run" in str(worker.error)
    Stubborn.release.set()
