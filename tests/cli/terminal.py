"""Run the command on a pseudo-terminal, as a person at a shell would."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time


def run_on_terminal(
    *args: str, env: dict[str, str] | None = None, answer: str | None = None, timeout: float = 60
) -> tuple[int, str]:
    """Run ``strategy-manager ARGS`` with stdin, stdout and stderr on one terminal;
    type ``answer`` once something was printed; return the exit status and all output."""
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "strategy_manager.cli", *args],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env={**os.environ, "COLUMNS": "120", **(env or {})},
        close_fds=True,
    )
    os.close(terminal)
    output = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(controller, 65536)
                except OSError:  # the terminal closed: the process ended
                    break
                if not chunk:
                    break
                output += chunk
                if answer is not None:
                    os.write(controller, answer.encode())
                    answer = None
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(controller)
    return code, output.decode(errors="replace").replace("\r\n", "\n")
