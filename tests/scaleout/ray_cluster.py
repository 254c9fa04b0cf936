"""A Ray cluster of simulated nodes on this machine (``ray.cluster_utils.Cluster``), for
the Ray tests and the scale-out benchmark, torn down whatever happens.

Ray writes nothing into the user's home or /tmp here: HOME and TMPDIR point at
folders of the cluster's own (TMPDIR short, since Ray's socket paths must stay under
108 bytes), and ``RAY_AUTH_MODE=disabled`` keeps Ray from writing an auth token.
Health checks every 500 ms, three misses: a dead node is declared dead in seconds.
The raylets are children of this process; a frozen process is resumed before the
cluster is shut down, and every raylet is reaped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

HEALTH_CHECKS = {
    "health_check_period_ms": 500,
    "health_check_timeout_ms": 500,
    "health_check_failure_threshold": 3,
    "health_check_initial_delay_ms": 0,
}


class SimulatedCluster:
    def __init__(self, cluster: Any, nodes: list[Any]) -> None:
        self.cluster = cluster
        self.nodes = nodes
        self.frozen: set[int] = set()

    @property
    def address(self) -> str:
        return str(self.cluster.address)

    def node(self, node_id: str) -> Any:
        return next(n for n in self.nodes if n.node_id == node_id)

    def raylet(self, node: Any) -> Any:
        """The raylet's Popen (a child of this process)."""
        return node.all_processes["raylet"][0].process

    def crash(self, node: Any) -> None:
        """Kill every process of the node at once, as a power cut would."""
        self.cluster.remove_node(node, allow_graceful=False)
        self.nodes.remove(node)

    def freeze(self, pid: int) -> None:
        """SIGSTOP, and return once every thread of the process has stopped (the signal
        is delivered asynchronously): from then on it does nothing until thawed."""
        os.kill(pid, signal.SIGSTOP)
        self.frozen.add(pid)
        deadline = time.monotonic() + 10
        while not _stopped(pid):
            if time.monotonic() > deadline:
                raise AssertionError(f"process {pid} did not stop within 10s of SIGSTOP")
            time.sleep(0.001)

    def thaw(self, pid: int) -> None:
        os.kill(pid, signal.SIGCONT)
        self.frozen.discard(pid)


def _stopped(pid: int) -> bool:
    """Whether every thread of ``pid`` is stopped (state T), by /proc."""
    states = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            stat = (task / "stat").read_text()
            states.append(stat[stat.rindex(")") + 2])
    return bool(states) and all(state in "Tt" for state in states)


@contextmanager
def simulated_cluster(
    home: Path, nodes: int = 3, weights: list[float] | None = None
) -> Iterator[SimulatedCluster]:
    """A head (no strategies) and ``nodes`` nodes offering ``qsm_host`` (1, or ``weights``),
    all with no CPUs. The environment (HOME, TMPDIR, RAY_AUTH_MODE, PYTHONPATH with this
    repository, so hosts can load test engines) is this process's while inside, for the
    driver processes started from it."""
    from ray.cluster_utils import Cluster

    saved = dict(os.environ)
    short = tempfile.mkdtemp(prefix="qsm-ray-", dir="/tmp")
    home.mkdir(parents=True, exist_ok=True)
    os.environ.update(
        HOME=str(home),
        TMPDIR=short,
        RAY_AUTH_MODE="disabled",
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), saved.get("PYTHONPATH")) if p),
    )
    for var in ("RAY_ADDRESS", "RAY_TMPDIR"):
        os.environ.pop(var, None)
    cluster = None
    sim = None
    raylets: list[Any] = []
    try:
        cluster = Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": 0, "include_dashboard": False, "_system_config": HEALTH_CHECKS},
        )
        added = [cluster.add_node(num_cpus=0, resources={"qsm_host": w}) for w in (weights or [1.0] * nodes)]
        raylets = [node.all_processes["raylet"][0].process for node in [cluster.head_node, *added]]
        cluster.wait_for_nodes()
        sim = SimulatedCluster(cluster, added)
        yield sim
    finally:
        try:
            for pid in sim.frozen if sim else ():
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGCONT)
            if cluster is not None:
                cluster.shutdown()
        finally:
            for raylet in raylets:  # reaped, whether Ray's shutdown did it or failed
                if raylet.poll() is None:
                    raylet.kill()
                raylet.wait(timeout=60)
            os.environ.clear()
            os.environ.update(saved)
            shutil.rmtree(short, ignore_errors=True)
