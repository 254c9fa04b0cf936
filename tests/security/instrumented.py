"""Run ``strategy-manager`` in this process with an audit hook that records every
module imported, every attempt to start a process and every touch of the marker
file; at exit, write them and ``sys.modules`` to the JSON file named by
``QSM_TEST_AUDIT_REPORT``. The hostile-document tests run the CLI through it:

    python tests/security/instrumented.py run
"""

from __future__ import annotations

import atexit
import faulthandler
import json
import os
import signal
import sys

REPORT = os.environ["QSM_TEST_AUDIT_REPORT"]
MARKER = os.environ["QSM_TEST_MARKER"]
SPAWNS = (
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "os.fork",
    "os.forkpty",
    "subprocess.Popen",
    "pty.spawn",
    "os.startfile",
)

events: dict[str, list[str]] = {"imports": [], "spawns": [], "marker": [], "sockets": []}


def hook(event: str, args: tuple) -> None:  # type: ignore[type-arg]
    if event == "import":
        events["imports"].append(str(args[0]))
    elif event.startswith(SPAWNS):
        events["spawns"].append(f"{event} {args!r:.300}")
    elif event in ("open", "os.utime", "os.rename", "os.link", "os.symlink") and MARKER in str(args[0]):
        events["marker"].append(f"{event} {args!r:.300}")
    elif event in ("socket.connect", "socket.getaddrinfo") and "evil" in repr(args):
        events["sockets"].append(f"{event} {args!r:.300}")


def dump() -> None:
    with open(REPORT, "w", encoding="utf-8") as out:
        json.dump({"modules": sorted(sys.modules), **events}, out)


sys.addaudithook(hook)
atexit.register(dump)
faulthandler.register(signal.SIGUSR1)  # a test that times out asks for every thread's stack

from strategy_manager.cli import main  # noqa: E402

sys.argv[0] = "strategy-manager"
main()
