from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _isolated_config(tmp_path_factory, monkeypatch):
    """No test reads the developer's config/ or environment, or writes into the repo."""
    for var in list(os.environ):
        if var.startswith(("QSM_", "MONGO_", "ENABLE_")) and var != "QSM_TEST_MONGO_URI":
            monkeypatch.delenv(var)
    home = tmp_path_factory.mktemp("home")
    (home / "config").mkdir()
    monkeypatch.setenv("QSM_CONFIG_DIR", str(home / "config"))
    monkeypatch.setenv("QSM_DATA_DIR", str(home / "data"))
    # where the user data directory is when a test leaves data_dir unset
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "xdg-data"))


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``strategy-manager`` in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "strategy_manager.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=timeout,
        check=False,
    )


def pip_install_target(target: Path, *sources: Path) -> Path:
    """Install distributions from source folders into ``target`` with pip, as a user
    would install a third-party package; put ``target`` on PYTHONPATH to use them."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            *map(str, sources),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return target


def wait_for(predicate, timeout: float, what: str, poll: float = 0.02):
    """Poll ``predicate`` every ``poll`` seconds until it returns something truthy;
    fail naming ``what``."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def owned_by(owner: str | None, pid: int) -> bool:
    """Whether an owner id (``host:pid:random``) names the process ``pid``."""
    parts = (owner or "").split(":")
    return len(parts) >= 3 and parts[-2] == str(pid)
