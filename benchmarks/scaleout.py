"""Scale-out on Ray: no-op strategies over simulated nodes, started and taken over.

    python benchmarks/scaleout.py [--strategies 3000] [--nodes 3] [--lease 15]

A ``ray.cluster_utils.Cluster`` on this machine (a head and ``--nodes`` nodes, health
checks every 500 ms, three misses), the embedded store, and ``strategy-manager run
--executor ray`` as its own process. Prints, with PASS/FAIL where there is a target:

* time from the driver's start until every strategy is RUNNING (status in the store);
* host memory (RSS per host process);
* after one node is killed (``remove_node(allow_graceful=False)``): the time until
  every strategy of that node is RUNNING elsewhere, against lease + lease/3.

Needs the ray extra (``make install-ray``). Not part of the test suite: a shared
machine is noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from importlib.metadata import version
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the Ray tests' simulated cluster

from strategy_manager.core.settings import Settings  # noqa: E402
from strategy_manager.core.store import open_store  # noqa: E402
from tests.scaleout.ray_cluster import simulated_cluster  # noqa: E402


def documents(n: int) -> list[dict[str, Any]]:
    return [
        {
            "user_id": "bench",
            "symbol": f"S{i:05d}",
            "strategy_key": "noop",
            "engine": "python",
            "engine_class": "noop_engine.NoopStrategy",
            "schedule": {"mode": "always"},
        }
        for i in range(n)
    ]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--strategies", type=int, default=3000)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--lease", type=float, default=15.0, help="lease_seconds (renewals every lease/6)")
    args = parser.parse_args()
    n, lease = args.strategies, args.lease

    with tempfile.TemporaryDirectory(prefix="qsm-bench-") as tmp_name:
        tmp = Path(tmp_name)
        data = tmp / "data"
        store = open_store(Settings(data_dir=str(data)))
        for document in documents(n):
            store.upsert_strategy(document)
        config = tmp / "config"
        config.mkdir()
        print(
            f"{n} no-op strategies over {args.nodes} simulated nodes, lease {lease:g}s; "
            f"ray {version('ray')}, Python {platform.python_version()}, {os.cpu_count()} cores",
            flush=True,
        )
        t0 = time.monotonic()
        with simulated_cluster(tmp / "home", nodes=args.nodes) as cluster:
            print(f"cluster of {args.nodes + 1} nodes up in {time.monotonic() - t0:.1f}s", flush=True)
            env = {k: v for k, v in os.environ.items() if not k.startswith(("QSM_", "MONGO_"))}
            env |= {
                "QSM_DATA_DIR": str(data),
                "QSM_CONFIG_DIR": str(config),
                "QSM_IMPORT_PATHS": str(HERE),
                "QSM_LEASE_SECONDS": str(lease),
                "QSM_LEASE_RENEW_SECONDS": str(lease / 6),
                "QSM_SNAPSHOT_INTERVAL": "3600",
                "QSM_HOOK_THREADS": "32",
            }
            log = (tmp / "driver.log").open("ab")
            started = time.monotonic()
            command = ["-q", "run", "--executor", "ray", "--ray-address", cluster.address]
            driver = subprocess.Popen(
                [sys.executable, "-m", "strategy_manager.cli", *command],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                report(store, cluster, driver, started, n, lease, tmp)
            finally:
                driver.terminate()
                try:
                    driver.wait(120)
                except subprocess.TimeoutExpired:
                    driver.kill()
                    driver.wait()


def running(store: Any, besides: str | None = None) -> int:
    return sum(r.state == "RUNNING" and r.owner != besides for r in store.read_status())


def wait(predicate: Any, timeout: float, what: str, driver: subprocess.Popen[bytes], tmp: Path) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic()
        if driver.poll() is not None:
            break
        time.sleep(0.05)
    sys.exit(f"timed out waiting for {what}\n" + (tmp / "driver.log").read_text()[-3000:])


def report(store: Any, cluster: Any, driver: Any, started: float, n: int, lease: float, tmp: Path) -> None:
    done = wait(lambda: running(store) == n, 600, f"{n} strategies RUNNING", driver, tmp)
    print(f"all {n} RUNNING {done - started:.1f}s after the driver started", flush=True)
    hosts = [o for o in store.read_owners() if o.details.get("executor") == "ray" and not o.stopped]
    owned = Counter(r.owner for r in store.read_status())
    for host in sorted(hosts, key=lambda o: o.owner):
        print(
            f"  host {host.owner} on node {host.details['ray_node'][:12]}: {owned[host.owner]} strategies, "
            f"RSS {rss_mib(host.pid):.0f} MiB",
            flush=True,
        )
    time.sleep(2 * lease / 6)  # a renewal or two after the start, as in steady running
    victim = max(hosts, key=lambda o: owned[o.owner])
    mine = {r.strategy_id for r in store.read_status() if r.owner == victim.owner}
    crashed = time.monotonic()
    cluster.crash(cluster.node(victim.details["ray_node"]))
    first: list[float] = []

    def moved() -> bool:
        status = {r.strategy_id: r for r in store.read_status()}
        elsewhere = sum(status[s].state == "RUNNING" and status[s].owner != victim.owner for s in mine)
        if elsewhere and not first:
            first.append(time.monotonic())
        return elsewhere == len(mine)

    back = wait(moved, 300, "the takeover", driver, tmp)
    limit = lease + lease / 3
    took = back - crashed
    verdict = "PASS" if took <= limit else "FAIL"
    print(
        f"node crash, {len(mine)} strategies: first RUNNING elsewhere after {first[0] - crashed:.1f}s, "
        f"all after {took:.1f}s  {verdict} (target <= lease + lease/3 = {limit:.1f}s)",
        flush=True,
    )
    print(json.dumps({"strategies": n, "start_s": round(done - started, 2), "takeover_s": round(took, 2)}))


if __name__ == "__main__":
    main()
