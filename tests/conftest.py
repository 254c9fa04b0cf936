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
    monkeypatch.setenv("QSM_CONFIG_DIR", str(home / "config"))
    monkeypatch.setenv("QSM_DATA_DIR", str(home / "data"))


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
