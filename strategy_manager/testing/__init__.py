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
orchestrator drives engines. A failing check says what to fix. The validation
checks need ``qsm_validate_engine``: the sample document must pass it without
starting anything, and each of ``bad_documents`` (by default the sample with an
unknown parameter; override it to add your own) must be refused in one line.

For an adapter's own tests, :class:`HookDriver` calls one plugin module's hooks
in the worker's order (snapshots through JSON both ways, as through a store), and
:func:`wait_for_snapshot` waits for the orchestrator to store a snapshot in a
given state.
"""

from strategy_manager.testing.conformance import EngineConformance
from strategy_manager.testing.driver import HookDriver, json_roundtrip, wait_for_snapshot

__all__ = ["EngineConformance", "HookDriver", "json_roundtrip", "wait_for_snapshot"]
