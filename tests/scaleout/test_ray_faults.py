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
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ray", reason="Ray is not installed: make test-ray installs it")

from strategy_manager.core.context import safe_dirname
from strategy_manager.core.settings import Settings
from strategy_manager.core.store import open_store
from tests.conftest import run_cli, wait_for
from tests.reliability.harness import demo_document, run_env, stop
from tests.scaleout.ray_cluster import simulated_cluster

pytestmark = pytest.mark.ray

LEASE = 3.0
DEADLINE = LEASE + LEASE / 3  # every strategy trades again within this after a fault
STRATEGIES = 30
SETTINGS = {"lease_seconds": LEASE, "lease_renew_seconds": 0.5, "snapshot_interval": 0.5}


def ids() -> list[str]:
    return [f"f:F{i}:k" for i in range(STRATEGIES)]


# -- what the engines did ---------------------------------------------------------------
def orders(data: Path, sid: str, engine: str = "demo") -> list[dict[str, Any]]:
    path = data / "engines" / engine / safe_dirname(sid) / "orders.jsonl"
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # being written right now
    return sorted(records, key=lambda r: r["t"])


def longest_pause(times: list[float], since: float, until: float) -> float:
    """The longest stretch of [since, until] without an order."""
    points = [since, *(t for t in times if since < t < until), until]
    return max(b - a for a, b in itertools.pairwise(points))


def epoch_violations(store: Any, data: Path, sid: str, engine: str = "demo") -> list[str]:
    """Accepted writes (orders from the order log, snapshots from the store) that came
    after a write of a newer epoch."""
    writes = [(r["t"], r["epoch"], f"order by {r['process']}") for r in orders(data, sid, engine)]
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


class Fleet:
    """The driver process, the store it shares with the hosts, and what they did."""

    def __init__(self, tmp_path: Path, cluster: Any, engine: str = "demo", **settings: Any) -> None:
        self.data = tmp_path / "data"
        self.engine = engine
        self.log = tmp_path / "driver.log"
        self.store = open_store(Settings(data_dir=str(self.data)))
        for i in range(STRATEGIES):
            document = demo_document(i, bar_seconds=0.02)
            if engine != "demo":
                document |= {
                    "engine": "python",
                    "engine_class": "tests.scaleout.unfenced.Unfenced",
                    "params": {"bar_seconds": 0.02},
                }
            self.store.upsert_strategy(document)
        env = run_env(self.data, **SETTINGS, poll_interval=0.2, **settings)
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
        return orders(self.data, sid, self.engine)

    def owners(self) -> list[Any]:
        return [o for o in self.store.read_owners() if o.details.get("executor") == "ray"]

    def all_trading(self, since: float, besides: int | None = None) -> bool:
        """Every strategy has traded after ``since`` (in a process other than pid ``besides``)."""
        return all(any(r["t"] > since and r["pid"] != besides for r in self.orders(sid)) for sid in ids())

    def wait_all_trading(self, since: float, besides: int | None = None) -> None:
        what = "every strategy trading" + (f" without pid {besides}" if besides else "")
        self.wait(lambda: self.all_trading(since, besides), 30, what)

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

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def check(self, fault_at: float, until: float) -> dict[str, Any]:
        """Per strategy: the longest pause in trading from the fault on, and every write
        that went back an epoch."""
        pauses = {sid: longest_pause([r["t"] for r in self.orders(sid)], fault_at, until) for sid in ids()}
        violations = {
            sid: v for sid in ids() if (v := epoch_violations(self.store, self.data, sid, self.engine))
        }
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


@pytest.fixture
def cluster(tmp_path):
    with simulated_cluster(tmp_path / "home") as sim:
        yield sim


def test_hosts_outlive_a_killed_driver_and_a_new_one_adopts_them_then_a_node_crash_moves_strategies_in_time(
    tmp_path, cluster
):
    fleet = Fleet(tmp_path, cluster)
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
        fleet.wait(lambda: fleet.tail().count("host-adopted") == 3, 60, "three hosts adopted")
        fleet.wait_all_trading(time.time())
        again = {r["strategy_id"]: r for r in json.loads(run_cli("status", "--json", env=env).stdout)}
        assert {s: again[s]["owner"] for s in ids()} == {s: status[s]["owner"] for s in ids()}
        assert {s: again[s]["details"]["epoch"] for s in ids()} == {
            s: status[s]["details"]["epoch"] for s in ids()
        }

        victim = fleet.busiest_host()
        moved = [s for s in ids() if status[s]["pid"] == victim.pid]
        fault_at = time.time()
        cluster.crash(cluster.node(victim.details["ray_node"]))
        fleet.wait_all_trading(fault_at, besides=victim.pid)
        time.sleep(1.0)  # a second of the fleet after the takeover, where a double run would show
        result = fleet.check(fault_at, time.time() - 0.2)
        hosts = {h["owner"]: h for h in json.loads(run_cli("hosts", "--json", env=env).stdout)}
        after = {r["strategy_id"]: r for r in json.loads(run_cli("status", "--json", env=env).stdout)}
    finally:
        fleet.close()
    _assert_recovered(result, fleet)
    assert moved and hosts[victim.owner]["state"] == "silent"
    assert {after[s]["node"] for s in moved} <= nodes - {victim.details["ray_node"]}
    print(f"node crash: longest pause {max(result['pauses'].values()):.2f}s")


def test_a_host_frozen_for_two_leases_is_replaced_and_trades_nothing_when_it_wakes(tmp_path, cluster):
    fleet = Fleet(tmp_path, cluster)
    try:
        fleet.wait_all_running()
        victim = fleet.busiest_host()
        cluster.freeze(victim.pid)
        fault_at = time.time()
        fleet.wait_all_trading(fault_at, besides=victim.pid)
        wait_for(lambda: time.time() > fault_at + 2 * LEASE + 0.5, 30, "two leases frozen")
        cluster.thaw(victim.pid)
        woke_at = time.time()
        wait_for(
            lambda: any(
                o.owner == victim.owner and o.heartbeat.timestamp() > woke_at for o in fleet.owners()
            ),
            30,
            "the frozen host renewing again",
        )
        time.sleep(1.0)  # where a late order or snapshot of the woken host would show
        result = fleet.check(fault_at, time.time() - 0.2)
        back = {o.owner: o for o in fleet.owners()}[victim.owner]
    finally:
        fleet.close()
    _assert_recovered(result, fleet)
    late = [r for sid in ids() for r in fleet.orders(sid) if r["pid"] == victim.pid and r["t"] > fault_at]
    assert late == [], late[:3]
    assert back.leases == 0  # it holds nothing now: its strategies run elsewhere
    print(f"frozen host: longest pause {max(result['pauses'].values()):.2f}s")


def test_a_frozen_raylet_is_declared_dead_but_its_live_host_keeps_its_leases_until_it_is_gone(
    tmp_path, cluster
):
    fleet = Fleet(tmp_path, cluster)
    try:
        fleet.wait_all_running()
        victim = fleet.busiest_host()
        node = cluster.node(victim.details["ray_node"])
        raylet = cluster.raylet(node)
        cluster.freeze(raylet.pid)
        fault_at = time.time()
        wait_for(
            lambda: "ray-dead" in fleet.tail(), 30, "Ray declaring the node dead\n" + fleet.tail(), poll=0.25
        )
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
        time.sleep(1.0)
        result = fleet.check(fault_at, time.time() - 0.2)
    finally:
        fleet.close()
    _assert_recovered(result, fleet)
    print(f"frozen raylet: longest pause {max(result['pauses'].values()):.2f}s")


def test_negative_control_with_the_fence_off_a_woken_host_trades_under_a_lost_lease(tmp_path, cluster):
    fleet = Fleet(tmp_path, cluster, engine="python", on_lease_loss="keep_running")
    try:
        fleet.wait_all_running()
        victim = fleet.busiest_host()
        mine = {r.strategy_id for r in fleet.store.read_status() if r.owner == victim.owner}
        cluster.freeze(victim.pid)
        fault_at = time.time()
        fleet.wait_all_trading(fault_at, besides=victim.pid)
        wait_for(lambda: time.time() > fault_at + 2 * LEASE + 0.5, 30, "two leases frozen")
        cluster.thaw(victim.pid)
        time.sleep(2.0)  # where the woken host's orders show
        result = fleet.check(fault_at, time.time() - 0.2)
    finally:
        fleet.close()
    assert result["violations"], "with the fence off, the woken host should have traded under its lost lease"
    assert set(result["violations"]) <= mine  # the woken host's strategies, and only those
    print(f"negative control: {len(result['violations'])} strategies with writes that went back an epoch")
