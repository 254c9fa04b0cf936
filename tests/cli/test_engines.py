from __future__ import annotations

import json
import textwrap

from tests.conftest import run_cli


def test_engines_json_lists_every_installed_engine_with_its_details():
    result = run_cli("engines", "--json")
    assert result.returncode == 0, result.stderr
    engines = {e["name"]: e for e in json.loads(result.stdout)}
    assert {"python", "demo", "backtrader", "vnpy"} <= set(engines)
    demo = engines["demo"]
    assert demo["status"] == "ok"
    assert demo["module"] == "strategy_manager.plugins.demo_engine"
    assert demo["distribution"] == "quant-strategy-manager"
    assert "qsm_create_engine" in demo["hooks"]
    assert demo["capabilities"] == ["snapshot", "restore"]
    assert engines["backtrader"]["distribution"] == "qsm-backtrader"
    vnpy = engines["vnpy"]
    assert vnpy["distribution"] == "qsm-vnpy"
    assert vnpy["status"] == "ok", vnpy.get("error")
    from importlib.metadata import version

    assert vnpy["version"] == version("vnpy")
    assert {"snapshot", "restore", "cta", "resume-check"} <= set(vnpy["capabilities"])


def test_listing_engines_imports_no_engine_library_and_is_fast():
    script = textwrap.dedent("""
        import sys, time
        t0 = time.perf_counter()
        from click.testing import CliRunner
        from strategy_manager.cli import cli
        result = CliRunner().invoke(cli, ["engines", "--json"])
        elapsed = time.perf_counter() - t0
        assert result.exit_code == 0, result.output
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("vnpy", "PySide6", "backtrader", "vnpy_ctastrategy"))
        print(heavy, elapsed)
        """)
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    heavy, elapsed = out.stdout.rsplit(" ", 1)
    assert heavy == "[]"
    assert float(elapsed) < 1.0


def test_disabled_engine_is_listed_as_disabled(tmp_path):
    result = run_cli("engines", "--json", env={"ENABLE_DEMO": "false"})
    demo = next(e for e in json.loads(result.stdout) if e["name"] == "demo")
    assert (demo["status"], demo["error"]) == ("disabled", "not enabled by configuration")


def test_version_option():
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("strategy-manager, version ")


def test_a_config_error_is_one_line_on_stderr_without_traceback(tmp_path):
    (tmp_path / "production.json").write_text('{"mongo_db": "x",\n  oops}')
    result = run_cli("--config-dir", str(tmp_path), "engines")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"error: {tmp_path / 'production.json'}: line 2 column 3: "
        "Expecting property name enclosed in double quotes"
    ]
    debug = run_cli("--config-dir", str(tmp_path), "--debug", "engines")
    assert "Traceback" in debug.stderr
