"""A distribution built outside the repository, installed with pip, is found with no core change."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import pip_install_target, run_cli

PLUGIN = """
from strategy_manager.core.hookspecs import hookimpl

@hookimpl
def qsm_engine_info():
    return {"name": "{name}", "version": "9.9", "capabilities": [], "description": "third party"}

@hookimpl
def qsm_create_engine(spec, context):
    return {{"symbol": spec.symbol, "started": False}}

@hookimpl
def qsm_start_engine(engine, context):
    engine["started"] = True

@hookimpl
def qsm_stop_engine(engine, context):
    engine["started"] = False
"""


def write_dist(root: Path, dist: str, module: str, engine: str, body: str) -> Path:
    folder = root / dist
    (folder / module).mkdir(parents=True)
    (folder / module / "__init__.py").write_text(body)
    (folder / "pyproject.toml").write_text(
        textwrap.dedent(f"""
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "{dist}"
        version = "0.0.1"
        [project.entry-points."quant_strategy_manager.engines"]
        {engine} = "{module}"
        """)
    )
    return folder


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """Build four throwaway distributions and pip-install them into a target folder."""
    src = tmp_path_factory.mktemp("src")
    folders = [
        write_dist(
            src,
            "qsm-acme",
            "qsm_acme",
            "acme",
            PLUGIN.replace("{name}", "acme").replace("{{", "{").replace("}}", "}"),
        ),
        write_dist(
            src,
            "qsm-broken-one",
            "qsm_broken_one",
            "shaky",
            "raise ImportError('acme-sdk is not installed')\n",
        ),
        write_dist(
            src,
            "qsm-twin-a",
            "qsm_twin_a",
            "twin",
            PLUGIN.replace("{name}", "twin").replace("{{", "{").replace("}}", "}"),
        ),
        write_dist(
            src,
            "qsm-twin-b",
            "qsm_twin_b",
            "twin",
            PLUGIN.replace("{name}", "twin").replace("{{", "{").replace("}}", "}"),
        ),
    ]
    return pip_install_target(tmp_path_factory.mktemp("site"), *folders)


def test_an_installed_third_party_engine_is_listed_and_resolvable(installed):
    env = {"PYTHONPATH": str(installed)}
    listing = run_cli("engines", "--json", env=env)
    assert listing.returncode == 0, listing.stderr
    by_name = {e["name"]: e for e in json.loads(listing.stdout) if e["name"] != "twin"}
    assert by_name["acme"]["status"] == "ok"
    assert by_name["acme"]["distribution"] == "qsm-acme"
    assert by_name["acme"]["version"] == "9.9"
    # The broken and duplicated plugins are reported while every other engine still lists.
    assert by_name["shaky"]["status"] == "broken"
    assert "acme-sdk is not installed" in by_name["shaky"]["error"]
    twins = [e for e in json.loads(listing.stdout) if e["name"] == "twin"]
    assert {e["status"] for e in twins} == {"conflict"}
    assert "qsm-twin-a" in twins[0]["error"] and "qsm-twin-b" in twins[0]["error"]
    assert {"python", "demo"} <= {n for n, e in by_name.items() if e["status"] == "ok"}

    script = textwrap.dedent("""
        from strategy_manager.core.registry import EngineRegistry
        from strategy_manager.core.spec import parse_strategy
        reg = EngineRegistry.from_entry_points()
        hooks = reg.resolve("acme")
        spec = parse_strategy({"user_id": "u", "symbol": "AAPL", "strategy_key": "k", "engine": "acme"})
        engine = hooks.create(spec, None)
        hooks.start(engine, None)
        print(engine)
        """)
    resolved = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, **env},
        check=False,
    )
    assert resolved.returncode == 0, resolved.stderr
    assert resolved.stdout.strip() == "{'symbol': 'AAPL', 'started': True}"
