from __future__ import annotations

import os
import socket
import subprocess
import sys

from strategy_manager.core.ownership import dead_local_owners


def test_only_gone_processes_of_this_host_count_as_dead():
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    host = socket.gethostname()
    owners = [f"{host}:{gone.pid}", f"{host}:{os.getpid()}", f"{host}:1", "elsewhere:123", None, "junk"]
    assert dead_local_owners(owners) == {f"{host}:{gone.pid}"}
