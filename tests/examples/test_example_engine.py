"""The example engine adapter, copied out of the installed core with
``strategy-manager examples engine DIR`` and installed with pip like any third-party
adapter, passes its own tests (the conformance kit) and runs under the orchestrator
by name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from strategy_manager.core.settings import Settings
from strategy_manager.core.store import open_store
from tests.conftest import ROOT, pip_install_target, run_cli

TEMPLATE = ROOT / "strategy_manager" / "examples" / "qsm-example-engine"


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> Path:
    """The template as a user gets it: copied by the command, outside the repository."""
    folder = tmp_path_factory.mktemp("copy") / "my-engine"
    out = run_cli("examples", "engine", str(folder))
    assert out.returncode == 0, out.stderr
    return folder


@pytest.fixture(scope="module")
def site(tmp_path_factory, example) -> Path:
    return pip_install_target(tmp_path_factory.mktemp("site"), example)


def test_the_copy_holds_every_file_of_the_template_and_nothing_else(example):
    def files(root):
        return sorted(
            str(p.relative_to(root))
            for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and ".egg-info" not in str(p) and "build" not in p.parts
        )

    assert files(example) == files(TEMPLATE)
    assert "pyproject.toml" in files(example) and "tests/test_conformance.py" in files(example)
    again = run_cli("examples", "engine", str(example))
    assert again.returncode == 2
    assert again.stderr == f"error: {example}: already exists; name a new folder\n"


def test_its_own_tests_pass_against_the_installed_copy(site, example, tmp_path):
    # Run from a folder outside the repository so nothing but the installed copy is found.
    tests = tmp_path / "tests"
    subprocess.run(["cp", "-r", str(example / "tests"), str(tests)], check=True)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "13 passed" in result.stdout


def test_the_orchestrator_runs_it_by_name(site):
    env = {"PYTHONPATH": str(site)}
    engines = {e["name"]: e for e in json.loads(run_cli("engines", "--json", env=env).stdout)}
    assert engines["example"]["status"] == "ok"
    assert engines["example"]["distribution"] == "qsm-example-engine"

    store = open_store(Settings(data_dir=os.environ["QSM_DATA_DIR"]))
    store.upsert_strategy(
        {
            "user_id": "u",
            "symbol": "600000.SH",
            "strategy_key": "grid",
            "engine": "example",
            "params": {"interval": 0.001},
            "schedule": {"mode": "always"},
        }
    )
    # A simulated clock stands still while the engine starts, however slow the machine.
    sim = ("--clock", "sim", "--start", "2026-11-24T10:00+08:00", "--speed", "60")
    out = run_cli("run", *sim, "--for", "2m", "--poll-interval", "0.1", env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "started   u:600000.SH:grid  fresh" in out.stdout
    assert "summary: 1 strategies; 1 STOPPED" in out.stdout
    snapshot = store.latest_snapshot("u:600000.SH:grid")
    assert snapshot is not None and snapshot.engine == "example"
    assert snapshot.state["tick"] > 100
