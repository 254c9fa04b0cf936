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

    class_allow = ("test_bt_accounts",)

    def account(self, tmp_path):
        return {"engine": "backtrader", "store": {"factory": "test_bt_accounts:CountingStore", "kwargs": {}}}

    def account_documents(self, tmp_path, name):
        """Feeds from the account's shared store."""
        documents = []
        for i in range(3):
            document = self.strategy_document(tmp_path)
            document["params"]["backtrader"]["feed"] = {"store": {"dataname": f"S{i}", "bars": 2000}, "pace": 500}
            documents.append({**document, "strategy_key": f"sma{i}", "account": name})
        return documents
