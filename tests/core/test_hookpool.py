"""HookPool: tasks of one key in order and never two at once, deadlines that cost
only their own key, and thousands of tasks on a few threads."""

import threading
from concurrent.futures import wait

import pytest

from strategy_manager.core.errors import HookTimeout
from strategy_manager.core.hookpool import HookPool


@pytest.fixture
def pool():
    pool = HookPool(4)
    yield pool
    pool.shutdown()


def test_tasks_of_one_key_run_in_order_and_never_together(pool):
    order: list[int] = []
    inside = [0]
    overlap = []
    lock = threading.Lock()

    def task(i: int) -> None:
        with lock:
            inside[0] += 1
            overlap.append(inside[0])
        order.append(i)
        with lock:
            inside[0] -= 1

    futures = [pool.submit("a", lambda i=i: task(i), timeout=30) for i in range(200)]
    wait(futures, timeout=30)
    assert order == list(range(200))
    assert max(overlap) == 1


def test_many_keys_share_a_few_threads(pool):
    done = []
    futures = [pool.submit(f"k{i}", lambda i=i: done.append(i), timeout=30) for i in range(5000)]
    finished, _ = wait(futures, timeout=60)
    assert len(finished) == 5000 and sorted(done) == list(range(5000))
    assert len(pool._threads) <= 4


def test_a_hung_task_times_out_alone_and_its_thread_is_replaced(pool):
    release = threading.Event()
    timed_out = threading.Event()
    hung = pool.submit("slow", release.wait, timeout=0.2, on_timeout=timed_out.set)
    after = pool.submit("slow", lambda: "next", timeout=30)  # runs once the hung one is given up
    others = [pool.submit(f"o{i}", lambda i=i: i, timeout=30) for i in range(50)]
    assert timed_out.wait(30)
    with pytest.raises(HookTimeout, match=r"slow: hook did not return within 0\.2s"):
        hung.result(timeout=30)
    assert after.result(timeout=30) == "next"
    assert [f.result(timeout=30) for f in others] == list(range(50))
    assert [a.key for a in pool.abandoned()] == ["slow"]
    assert not pool.abandoned()[0].returned
    release.set()
    pool.abandoned()[0].thread.join(30)
    assert pool.abandoned()[0].returned


def test_an_earlier_deadline_wakes_the_watchdog(pool):
    """A long deadline is running when a short one starts: the short one still
    times out on time (the watchdog does not sleep until the long one)."""
    release = threading.Event()
    long_ = pool.submit("long", release.wait, timeout=3600)
    short = pool.submit("short", release.wait, timeout=0.1)
    with pytest.raises(HookTimeout):
        short.result(timeout=30)
    assert not long_.done()
    release.set()
    assert long_.result(timeout=30) is True


def test_shutdown_refuses_new_tasks(pool):
    pool.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        pool.submit("a", lambda: None, timeout=1).result(timeout=5)
