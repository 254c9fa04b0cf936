"""``run --executor ray`` on a simulated cluster (a head and 3 nodes), 30 strategies on
a 3 s lease, through three faults: a node crash, a host process frozen for more than
two leases, a raylet frozen. After each, every strategy trades again within lease +
lease/3, and no strategy's writes ever go back an epoch, measured from the engines'
own order logs and the stored snapshots. A negative control with the fence switched
off fails that same check.
"""

from __future__ import annotations

import itertools
import json
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ray", reason="Ray is not installed: make test installs it (the ray extra)")

from strategy_manager.core.context import safe_dirname
from strategy_manager.core.settings import Settings
from strategy_manager.core.store import open_store
from tests.conftest import run_cli, wait_for
from tests.reliability.harness import demo_document, run_env, stop
from tests.scaleout.ray_cluster import simulated_cluster
from tests.scaleout.store_server import store_server

pytestmark = pytest.mark.ray

LEASE = 3.0
DEADLINE = LEASE + LEASE / 3  # every strategy trades again within this after a fault
STRATEGIES = 30
SETTINGS = {"lease_seconds": LEASE, "lease_renew_seconds": 0.5, "snapshot_interval": 0.5}


def ids() -> list[str]:
    return [f"f:F{i}:k" for i in range(STRATEGIES)]


# -- what the engines did ---------------------------------------------------------------
class OrderLogs:
    """The engines' order logs, read as they grow: each poll parses only the lines
    added since the last (the test's own polling must not load a 2-core machine)."""

    def __init__(self, data: Path, engine: str) -> None:
        self.folder = data / "engines" / engine
        self._read: dict[str, tuple[int, list[dict[str, Any]]]] = {}

    def __call__(self, sid: str) -> list[dict[str, Any]]:
        offset, records = self._read.get(sid, (0, []))
        path = self.folder / safe_dirname(sid) / "orders.jsonl"
        if path.exists():
            with path.open("rb") as handle:
                handle.seek(offset)
                chunk = handle.read()
            complete = chunk[: chunk.rfind(b"\n") + 1]  # a line being written waits for the next poll
            if complete:
                records = sorted(
                    [*records, *(json.loads(line) for line in complete.splitlines())], key=lambda r: r["t"]
                )
                offset += len(complete)
        self._read[sid] = (offset, records)
        return records


def _traded_since(records: list[dict[str, Any]], since: float, besides: int | None) -> bool:
    for record in reversed(records):  # newest first: the answer is near the end
        if record["t"] <= since:
            return False
        if record["pid"] != besides:
            return True
    return False


def longest_pause(times: list[float], since: float, until: float) -> float:
    """The longest stretch of [since, until] without an order."""
    points = [since, *(t for t in times if since < t < until), until]
    return max(b - a for a, b in itertools.pairwise(points))


def epoch_violations(store: Any, orders: list[dict[str, Any]], sid: str) -> list[str]:
    """Accepted writes (``orders`` from the engine's log, snapshots from the store) that
    came after a write of a newer epoch."""
    writes = [(r["t"], r["epoch"], f"order by {r['process']}") for r in orders]
    writes += [
        (s.taken_at.timestamp(), s.lease[1], f"snapshot #{s.seq}")
        for s in store.snapshot_history(sid, limit=100_000)
        if s.lease is not None
    ]
    writes.sort()
    newest, found = 0, []
    for t, epoch, what in writes:
        if epoch < newest:
            found.append(f"{what} of epoch {epoch} at {t:.3f}, after epoch {newest} had begun")
        newest = max(newest, epoch)
    return found


class LogWatch:
    """When ``needle`` first shows in a log from now on (wall seconds), watched on a
    thread every 50 ms: how long Ray took to declare a node dead."""

    def __init__(self, path: Path, needle: str) -> None:
        self.path, self.needle = path, needle.encode()
        self.offset = path.stat().st_size if path.exists() else 0
        self.at: float | None = None
        self._done = threading.Event()  # never set: the thread ends when it finds the text
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        while not self._done.wait(0.05):
            try:
                with self.path.open("rb") as handle:
                    handle.seek(self.offset)
                    seen = self.needle in handle.read()
            except OSError:  # the test is over and its folder gone
                return
            if seen:
                self.at = time.time()
                return


class Fleet:
    """The driver process, the store it shares with the hosts, and what they did."""

    def __init__(
        self, tmp_path: Path, cluster: Any, store_uri: str, engine: str = "demo", **settings: Any
    ) -> None:
        self.data = tmp_path / "data"
        self.engine = engine
        self._orders = OrderLogs(self.data, engine)
        self.log = tmp_path / "driver.log"
        database = {"mongo_uri": store_uri, "mongo_db": f"ray_{secrets.token_hex(4)}"}
        self.store = open_store(Settings(data_dir=str(self.data), **database))
        for i in range(STRATEGIES):
            document = demo_document(i, bar_seconds=0.02)
            if engine != "demo":
                document |= {
                    "engine": "python",
                    "engine_class": "tests.scaleout.unfenced.Unfenced",
                    "params": {"bar_seconds": 0.02},
                }
            self.store.upsert_strategy(document)
        env = run_env(self.data, **database, **SETTINGS, poll_interval=0.2, **settings)
        Path(env["QSM_CONFIG_DIR"]).mkdir(parents=True, exist_ok=True)
        env["QSM_ENGINE_OPTIONS"] = json.dumps({engine: {"order_log": True}})
        env["QSM_ENGINE_CLASS_ALLOW"] = "tests.scaleout.unfenced"
        self.env = env
        self.address = cluster.address
        self.driver = self.start_driver()

    def start_driver(self) -> subprocess.Popen[bytes]:
        command = ["run", "--executor", "ray", "--ray-address", self.address]
        return subprocess.Popen(
            [sys.executable, "-m", "strategy_manager.cli", *command],
            env=self.env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )

    def orders(self, sid: str) -> list[dict[str, Any]]:
        return self._orders(sid)

    def owners(self) -> list[Any]:
        return [o for o in self.store.read_owners() if o.details.get("executor") == "ray"]

    def all_trading(self, since: float, besides: int | None = None) -> bool:
        """Every strategy has traded after ``since`` (in a process other than pid ``besides``)."""
        return all(_traded_since(self.orders(sid), since, besides) for sid in ids())

    def wait_all_trading(self, since: float, besides: int | None = None) -> None:
        what = "every strategy trading" + (f" without pid {besides}" if besides else "")
        self.wait(lambda: self.all_trading(since, besides), 30, what)

    def trade_on(self, seconds: float, besides: int | None = None) -> None:
        """Wait until every strategy has traded ``seconds`` from now: a stretch of the
        fleet's life after a takeover, where a double run would show."""
        self.wait_all_trading(time.time() + seconds, besides)

    def wait(self, predicate: Any, timeout: float, what: str) -> None:
        """wait_for, failing at once if the driver has exited."""

        def check() -> bool:
            assert self.driver.poll() is None, f"the driver exited ({self.driver.returncode})\n{self.tail()}"
            return bool(predicate())

        wait_for(check, timeout, f"{what}\n{self.tail()}", poll=0.25)

    def wait_all_running(self) -> None:
        self.wait(
            lambda: (
                sum(r.state == "RUNNING" for r in self.store.read_status()) == STRATEGIES
                and len([o for o in self.owners() if o.leases]) == 3
            ),
            90,
            "30 strategies RUNNING on 3 hosts",
        )
        self.wait_all_trading(time.time())

    def busiest_host(self) -> Any:
        return max(self.owners(), key=lambda o: (o.leases, o.owner))

    def processes_of(self, sid: str, since: float) -> set[str]:
        return {r["process"] for r in self.orders(sid) if r["t"] > since}

    def logged(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def check(self, fault_at: float, until: float) -> dict[str, Any]:
        """Per strategy: the longest pause in trading from the fault on, and every write
        that went back an epoch."""
        pauses = {sid: longest_pause([r["t"] for r in self.orders(sid)], fault_at, until) for sid in ids()}
        violations = {sid: v for sid in ids() if (v := epoch_violations(self.store, self.orders(sid), sid))}
        return {"pauses": pauses, "violations": violations}

    def close(self) -> None:
        codes = stop(self.driver, timeout=60)
        assert codes == [0], f"driver exited with {codes}\n{self.tail()}"


def _assert_recovered(result: dict[str, Any], fleet: Fleet) -> None:
    worst = max(result["pauses"].items(), key=lambda kv: kv[1])
    assert worst[1] <= DEADLINE, (
        f"{worst[0]} did not trade for {worst[1]:.2f}s (limit {DEADLINE:.1f}s)\n{fleet.tail()}"
    )
    assert result["violations"] == {}, result["violations"]


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory):
    """MongoDB (a wire server in a process of its own), as scale-out needs: a frozen
    host holds no lock of the store, as it would the embedded store's file."""
    with store_server(tmp_path_factory.mktemp("store")) as uri:
        yield uri


@pytest.fixture
def cluster(tmp_path):
    with simulated_cluster(tmp_path / "home") as sim:
        yield sim


def test_hosts_outlive_a_killed_driver_and_a_new_one_adopts_them_then_a_node_crash_moves_strategies_in_time(
    tmp_path, cluster, store_uri
):
    fleet = Fleet(tmp_path, cluster, store_uri)
    try:
        fleet.wait_all_running()
        # status and hosts: each strategy's host and node; three hosts, one per node.
        nodes = {n.node_id for n in cluster.nodes}
        env = fleet.env
        status = {r["strategy_id"]: r for r in json.loads(run_cli("status", "--json", env=env).stdout)}
        assert {status[s]["node"] for s in ids()} == nodes
        hosts = json.loads(run_cli("hosts", "--json", env=env).stdout)
        assert {h["node"] for h in hosts} == nodes and {h["state"] for h in hosts} == {"alive"}
        assert sum(h["leases"] for h in hosts) == STRATEGIES
        table = run_cli("status", env=env).stdout
        assert all(f"node {n[:12]}" in table for n in nodes)

        # The driver dies: the hosts (detached actors) trade on, and a new driver adopts
        # them with their assignments; no strategy moves.
        fleet.driver.kill()
        fleet.driver.wait()
        killed_at = time.time()
        wait_for(lambda: time.time() > killed_at + LEASE, 10, "a lease without a driver")
        wait_for(lambda: fleet.all_trading(killed_at + LEASE), 30, "trading on without a driver", poll=0.25)
        fleet.driver = fleet.start_driver()
        fleet.wait(lambda: fleet.logged().count("host-adopted") == 3, 60, "three hosts adopted")
        fleet.wait_all_trading(time.time())
        unattended = max(fleet.check(killed_at, time.time())["pauses"].values())
        again = {r["strategy_id"]: r for r in json.loads(run_cli("status", "--json", env=env).stdout)}
        assert {s: again[s]["owner"] for s in ids()} == {s: status[s]["owner"] for s in ids()}
        assert {s: again[s]["details"]["epoch"] for s in ids()} == {
            s: status[s]["details"]["epoch"] for s in ids()
        }

        victim = fleet.busiest_host()
        moved = [s for s in ids() if status[s]["pid"] == victim.pid]
        dead = LogWatch(fleet.log, "ray-dead")
        fault_at = time.time()
        cluster.crash(cluster.node(victim.details["ray_node"]))
        fleet.wait_all_trading(fault_at, besides=victim.pid)
        fleet.trade_on(1.0)
        result = fleet.check(fault_at, time.time() - 0.2)
        fleet.wait(lambda: dead.at, 30, "Ray declaring the node dead")
        hosts = {h["owner"]: h for h in json.loads(run_cli("hosts", "--json", env=env).stdout)}
        after = {r["strategy_id"]: r for r in json.loads(run_cli("status", "--json", env=env).stdout)}
    finally:
        fleet.close()
    assert unattended <= DEADLINE, f"a strategy paused {unattended:.2f}s while the driver was away"
    _assert_recovered(result, fleet)
    assert moved and hosts[victim.owner]["state"] == "silent"
    assert {after[s]["node"] for s in moved} <= nodes - {victim.details["ray_node"]}
    assert dead.at is not None
    print(f"driver killed and replaced: longest pause {unattended:.2f}s")
    print(
        f"node crash: longest pause {max(result['pauses'].values()):.2f}s, "
        f"Ray declared the node dead after {dead.at - fault_at:.2f}s"
    )


def test_a_host_frozen_for_two_leases_is_replaced_and_trades_nothing_when_it_wakes(
    tmp_path, cluster, store_uri
):
    fleet = Fleet(tmp_path, cluster, store_uri)
    try:
        fleet.wait_all_running()
        victim = fleet.busiest_host()
        cluster.freeze(victim.pid)
        fault_at = time.time()
        fleet.wait_all_trading(fault_at, besides=victim.pid)
        wait_for(lambda: time.time() > fault_at + 2 * LEASE + 0.5, 30, "two leases frozen")
        cluster.thaw(victim.pid)
        woke_at = time.time()
        # It wakes fenced, learns it lost its leases, and says so in its heartbeat.
        fleet.wait(
            lambda: any(
                o.owner == victim.owner and o.heartbeat.timestamp() > woke_at and o.leases == 0
                for o in fleet.owners()
            ),
            30,
            "the woken host renewing again, holding nothing",
        )
        fleet.trade_on(1.0, besides=victim.pid)  # where a late order or snapshot of it would show
        result = fleet.check(fault_at, time.time() - 0.2)
    finally:
        fleet.close()
    _assert_recovered(result, fleet)
    late = [r for sid in ids() for r in fleet.orders(sid) if r["pid"] == victim.pid and r["t"] > fault_at]
    assert late == [], late[:3]
    print(f"frozen host: longest pause {max(result['pauses'].values()):.2f}s")


def test_a_frozen_raylet_is_declared_dead_but_its_live_host_keeps_its_leases_until_it_is_gone(
    tmp_path, cluster, store_uri
):
    fleet = Fleet(tmp_path, cluster, store_uri)
    try:
        fleet.wait_all_running()
        victim = fleet.busiest_host()
        node = cluster.node(victim.details["ray_node"])
        raylet = cluster.raylet(node)
        dead = LogWatch(fleet.log, "ray-dead")
        cluster.freeze(raylet.pid)
        fault_at = time.time()
        fleet.wait(lambda: dead.at, 30, "Ray declaring the node dead")
        # Ray's death notice is no proof: the host still renews, and keeps its strategies.
        wait_for(lambda: time.time() > fault_at + 2 * LEASE, 30, "two leases")
        mine = [r.strategy_id for r in fleet.store.read_status() if r.owner == victim.owner]
        assert len(mine) == victim.leases, "a live host's strategies were taken on a death notice"
        assert all(
            fleet.processes_of(sid, fault_at + LEASE) and len(fleet.processes_of(sid, fault_at)) == 1
            for sid in mine
        )
        cluster.thaw(raylet.pid)  # the raylet learns it was declared dead and exits; its host with it
        gone_at = time.time()
        assert raylet.wait(timeout=30) is not None  # reaped
        fleet.wait_all_trading(gone_at, besides=victim.pid)
        fleet.trade_on(1.0)
        result = fleet.check(fault_at, time.time() - 0.2)
    finally:
        fleet.close()
    _assert_recovered(result, fleet)
    assert dead.at is not None
    print(
        f"frozen raylet: longest pause {max(result['pauses'].values()):.2f}s, "
        f"Ray declared the node dead after {dead.at - fault_at:.2f}s"
    )


def test_negative_control_with_the_fence_off_a_woken_host_trades_under_a_lost_lease(
    tmp_path, cluster, store_uri
):
    fleet = Fleet(tmp_path, cluster, store_uri, engine="python", on_lease_loss="keep_running")
    try:
        fleet.wait_all_running()
        victim = fleet.busiest_host()
        mine = {r.strategy_id for r in fleet.store.read_status() if r.owner == victim.owner}
        cluster.freeze(victim.pid)
        fault_at = time.time()
        fleet.wait_all_trading(fault_at, besides=victim.pid)
        wait_for(lambda: time.time() > fault_at + 2 * LEASE + 0.5, 30, "two leases frozen")
        cluster.thaw(victim.pid)
        woke_at = time.time()
        # Unfenced, it trades on as soon as it wakes, until it learns it lost its leases.
        fleet.wait(
            lambda: any(
                r["pid"] == victim.pid and r["t"] > woke_at for sid in mine for r in fleet.orders(sid)
            ),
            30,
            "the woken host trading",
        )
        result = fleet.check(fault_at, time.time())
    finally:
        fleet.close()
    assert result["violations"], "with the fence off, the woken host should have traded under its lost lease"
    assert set(result["violations"]) <= mine  # the woken host's strategies, and only those
    print(f"negative control: {len(result['violations'])} strategies with writes that went back an epoch")
