"""A conformance suite for engine adapters, run with pytest.

Subclass :class:`EngineConformance` in a test module of your adapter's own
distribution, name the engine and give one sample strategy document::

    from strategy_manager.testing import EngineConformance

    class TestMyEngine(EngineConformance):
        engine = "myengine"

        def strategy_document(self, tmp_path):
            return {"user_id": "t", "symbol": "TEST", "strategy_key": "k",
                    "engine": "myengine", "params": {}}

Every check goes through the real registry (your entry point must be installed)
and a real :class:`~strategy_manager.core.worker.EngineWorker`, the way the
orchestrator drives engines. A failing check says what to fix.
"""

from strategy_manager.testing.conformance import EngineConformance

__all__ = ["EngineConformance"]
