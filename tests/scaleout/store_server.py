"""The Ray tests' store: a MongoDB wire-protocol server (mongoeco) in a process of its own.

A host frozen with SIGSTOP must hold nothing the others need, as with MongoDB. The
embedded store cannot promise that: a host frozen inside a write transaction keeps
the SQLite file locked, and every other host then fails to renew. Nor may the server
live in the test process, whose threads poll order logs.

It runs at a higher CPU priority than everything else where the system allows it.
A real MongoDB is a compiled server, usually on a machine of its own; mongoeco is
Python and costs milliseconds per written document. Beside two CPU-bound processes
(``make test-under-load``) an unprioritised wire server fell behind the hosts'
renewals, so every host fenced its own engines, over and over: the tests measured
mongoeco's starvation instead of the takeover. The hosts, the driver, Ray's own
processes and the test stay at normal priority and feel the whole load.

    python -m tests.scaleout.store_server DIR

prints the server's URI on one line, then serves until its stdin closes.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def store_server(directory: Path) -> Iterator[str]:
    """The URI of a wire server in a child process, stopped on the way out."""
    directory.mkdir(parents=True, exist_ok=True)
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.scaleout.store_server", str(directory)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert server.stdout is not None
        uri = server.stdout.readline().decode().strip()
        if not uri.startswith("mongodb://"):
            raise RuntimeError(f"the store server did not start (exit code {server.wait(30)})")
        yield uri
    finally:
        if server.stdin is not None:
            server.stdin.close()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


#: The server's niceness relative to its parent (negative: more CPU under contention).
PRIORITY = -10


def main() -> None:
    import os

    from mongoeco._pytest_runtime import ProxyThread

    try:
        os.nice(PRIORITY)
    except OSError as exc:  # not permitted (not root, no CAP_SYS_NICE): normal priority
        print(f"store server: running at normal priority ({exc})", file=sys.stderr, flush=True)

    server = ProxyThread("sqlite", Path(sys.argv[1]), "7.0", "auto-installed")
    print(server.start(), flush=True)
    try:
        sys.stdin.read()
    finally:
        server.close()


if __name__ == "__main__":
    main()
