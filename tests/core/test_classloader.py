from __future__ import annotations

import sys

import pytest

from strategy_manager.core.classloader import ClassLoader
from strategy_manager.core.errors import ClassRefused


def test_a_class_outside_import_paths_and_allow_list_is_refused_before_import(tmp_path):
    loader = ClassLoader([str(tmp_path)], ["mypkg"])
    sys.modules.pop("wave", None)
    with pytest.raises(ClassRefused, match=r"engine_class 'wave\.open' refused: module 'wave' is neither"):
        loader.load("wave.open")
    assert "wave" not in sys.modules


def test_allow_list_prefixes_match_whole_module_names():
    loader = ClassLoader([], ["json"])
    assert loader.load("json.JSONDecoder").__name__ == "JSONDecoder"
    with pytest.raises(ClassRefused):
        ClassLoader([], ["js"]).load("json.JSONDecoder")


def test_a_module_inside_an_import_path_loads(tmp_path):
    pkg = tmp_path / "scripts_qsm_test"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "engines.py").write_text("class RealTime:\n    pass\n")
    loader = ClassLoader([str(tmp_path)], [])
    assert loader.load("scripts_qsm_test.engines.RealTime").__name__ == "RealTime"
    with pytest.raises(ClassRefused, match="has no attribute 'Nope'"):
        loader.load("scripts_qsm_test.engines.Nope")


@pytest.mark.parametrize("bad", ["", "NoModule", "a..b", "os.system; rm", "1x.Y"])
def test_malformed_paths_are_refused(bad):
    with pytest.raises(ClassRefused, match="expected a dotted path"):
        ClassLoader([], ["os"]).check(bad)
