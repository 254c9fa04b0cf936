"""The three wheels ``make dist`` builds hold what an installed copy needs: the
license, the type markers, the example files and the adapter template."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest

from tests.conftest import ROOT


@pytest.fixture(scope="module")
def wheels(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(out), str(ROOT), str(ROOT / "qsm_backtrader"), str(ROOT / "qsm_vnpy")],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    found = {p.name.split("-")[0]: p for p in out.glob("*.whl")}
    assert set(found) == {"quant_strategy_manager", "qsm_backtrader", "qsm_vnpy"}
    return {name: zipfile.ZipFile(path).namelist() for name, path in found.items()}


@pytest.mark.slow
def test_each_wheel_has_the_license_and_a_type_marker(wheels):
    for name, files in wheels.items():
        assert f"{name}-0.1.0.dist-info/licenses/LICENSE" in files, name
    assert "strategy_manager/py.typed" in wheels["quant_strategy_manager"]
    assert "qsm_backtrader/py.typed" in wheels["qsm_backtrader"]
    assert "qsm_vnpy/py.typed" in wheels["qsm_vnpy"]


@pytest.mark.slow
def test_the_examples_and_the_adapter_template_are_package_data(wheels):
    core = wheels["quant_strategy_manager"]
    assert "strategy_manager/examples/demo.json" in core
    template = sorted(f for f in core if "qsm-example-engine/" in f)
    assert [f.split("qsm-example-engine/")[1] for f in template] == [
        "README.md",
        "pyproject.toml",
        "src/qsm_example_engine/__init__.py",
        "src/qsm_example_engine/grid.py",
        "src/qsm_example_engine/plugin.py",
        "tests/test_conformance.py",
        "tests/test_grid.py",
    ]
    assert "qsm_backtrader/examples/strategies.json" in wheels["qsm_backtrader"]
    assert {"qsm_vnpy/examples/strategies.json", "qsm_vnpy/examples/ctp.json"} <= set(wheels["qsm_vnpy"])
