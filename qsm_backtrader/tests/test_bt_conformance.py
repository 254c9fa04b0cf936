"""qsm_backtrader passes the core's conformance kit."""

from __future__ import annotations

from strategy_manager.testing import EngineConformance


class TestBacktraderEngine(EngineConformance):
    engine = "backtrader"

    def strategy_document(self, tmp_path):
        return {
            "user_id": "kit", "symbol": "DEMO", "strategy_key": "sma", "engine": "backtrader",
            "engine_class": "backtrader.strategies.SMA_CrossOver",
            "params": {"fast": 5, "slow": 20, "backtrader": {
                "feed": {"factory": "qsm_backtrader.examples.prices:GeneratedFeed",
                         "kwargs": {"bars": 2000, "seed": 3}, "pace": 500},
            }},
        }
