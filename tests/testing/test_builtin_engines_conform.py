"""The built-in engines pass the same conformance kit third parties run."""

from __future__ import annotations

from strategy_manager.testing import EngineConformance


class TestDemoEngine(EngineConformance):
    engine = "demo"

    def strategy_document(self, tmp_path):
        return {
            "user_id": "kit",
            "symbol": "600000.SH",
            "strategy_key": "ma",
            "engine": "demo",
            "params": {"bar_seconds": 0.001},
        }

    def edited_params(self, tmp_path):
        return {"bar_seconds": 0.002, "fast": 3, "slow": 9}


class TestPythonEngine(EngineConformance):
    engine = "python"
    class_allow = ("tests.core.user_engines",)

    def strategy_document(self, tmp_path):
        return {
            "user_id": "kit",
            "symbol": "AAPL",
            "strategy_key": "counter",
            "engine": "python",
            "engine_class": "tests.core.user_engines.Counter",
            "params": {"start": 3},
        }


class TestPythonEngineWithASeedStyleWorker(EngineConformance):
    engine = "python"
    class_allow = ("tests.core.user_engines",)

    def strategy_document(self, tmp_path):
        return {
            "user_id": "kit",
            "symbol": "AAPL",
            "strategy_key": "seed",
            "engine": "python",
            "engine_class": "tests.core.user_engines.SeedWorker",
        }
