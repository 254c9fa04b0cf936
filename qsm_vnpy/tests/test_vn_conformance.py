"""qsm_vnpy passes the core's conformance kit, with a CTA strategy on the replay
gateway and with a user's own engine."""

from __future__ import annotations

from strategy_manager.testing import EngineConformance


def _account(tmp_path):
    """A replay account: one file per symbol in a folder."""
    from qsm_vnpy.examples.minute_bars import write_csv

    write_csv(tmp_path / "account-bars" / "002050.SZ.csv", days=12, seed=5)
    return {"engine": "vnpy", "gateway": "REPLAY", "setting": {"csv": str(tmp_path / "account-bars")}}


class TestVnpyCtaEngine(EngineConformance):
    engine = "vnpy"

    def account(self, tmp_path):
        return _account(tmp_path)

    def account_documents(self, tmp_path, name):
        """On a replay account a document sets its own replay only (the file is the account's)."""
        base = self.strategy_document(tmp_path)
        base["params"]["vnpy"]["gateway"]["setting"] = {"start": "2026-09-14T09:30:00", "pace": 500}
        return [{**base, "strategy_key": f"dma{i}", "account": name} for i in range(3)]

    def strategy_document(self, tmp_path):
        from qsm_vnpy.examples.minute_bars import write_csv

        csv = write_csv(tmp_path / "bars.csv", days=12, seed=5)
        return {
            "user_id": "kit",
            "symbol": "002050.SZ",
            "strategy_key": "dma",
            "engine": "vnpy",
            "engine_class": "vnpy_ctastrategy.strategies.double_ma_strategy.DoubleMaStrategy",
            "params": {
                "vnpy": {
                    "gateway": {
                        "name": "REPLAY",
                        "setting": {"csv": str(csv), "start": "2026-09-14T09:30:00", "pace": 500},
                    }
                }
            },
        }

    def edited_params(self, tmp_path):
        return {**self.strategy_document(tmp_path)["params"], "fast_window": 7}


class TestVnpyUserEngine(EngineConformance):
    engine = "vnpy"

    def account(self, tmp_path):
        return _account(tmp_path)  # a user engine keeps its own connections, on an account too

    def strategy_document(self, tmp_path):
        from qsm_vnpy.examples.minute_bars import write_csv

        csv = write_csv(tmp_path / "bars.csv", days=3, seed=5)
        return {
            "user_id": "kit",
            "symbol": "002050.SZ",
            "strategy_key": "breakout",
            "engine": "vnpy",
            "engine_class": "qsm_vnpy.examples.breakout_engine.BreakoutEngine",
            "params": {"csv": str(csv), "window": 20, "pace": 500},
        }
