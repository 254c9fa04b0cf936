"""The core's conformance kit, run against this engine: all it takes is this file."""

from strategy_manager.testing import EngineConformance


class TestExampleEngine(EngineConformance):
    engine = "example"

    def strategy_document(self, tmp_path):
        return {
            "user_id": "test",
            "symbol": "600000.SH",
            "strategy_key": "grid",
            "engine": "example",
            "params": {"interval": 0.001, "step": 0.3},
        }
