"""qsm_vnpy passes the core's conformance kit, with a CTA strategy on the replay
gateway and with a user's own engine."""

from __future__ import annotations

from strategy_manager.testing import EngineConformance


class TestVnpyCtaEngine(EngineConformance):
    engine = "vnpy"

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


class TestVnpyUserEngine(EngineConformance):
    engine = "vnpy"

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
