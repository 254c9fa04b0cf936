"""Owner ids and which owners count as gone."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime

import attrs

from strategy_manager.core.leases import dead_local_owners, this_process

NOW = datetime(2026, 11, 28, tzinfo=UTC)


def test_owner_ids_are_unique_per_process_object_even_with_the_same_host_and_pid():
    one, two = this_process(NOW), this_process(NOW)
    assert one.owner != two.owner
    assert one.owner.split(":")[:2] == two.owner.split(":")[:2]


def test_only_gone_processes_of_this_boot_and_pid_namespace_count_as_dead():
    me = this_process(NOW)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = attrs.evolve(this_process(NOW), pid=gone.pid)
    alive = attrs.evolve(this_process(NOW), pid=os.getppid())
    other_namespace = attrs.evolve(dead, owner="other-ns", pid_namespace="pid:[1]")
    other_boot = attrs.evolve(dead, owner="other-boot", boot_id="another-boot")
    stopped = attrs.evolve(alive, owner="stopped", stopped=True)
    records = [dead, alive, other_namespace, other_boot, stopped, me]
    holders = [r.owner for r in records] + ["unknown:1:x"]
    assert dead_local_owners(holders, records, me) == {dead.owner, stopped.owner}
