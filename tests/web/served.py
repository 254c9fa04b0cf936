"""A real orchestrator with its HTTP server on a free port, for the web tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import attrs
import httpx

from strategy_manager.core.clock import SystemClock
from strategy_manager.core.masking import Redactor
from strategy_manager.core.orchestrator import MultiStrategyOrchestrator
from strategy_manager.core.settings import Settings
from strategy_manager.core.store import open_store
from strategy_manager.core.telemetry import TimedStore
from strategy_manager.web.server import WebServer
from tests.conftest import wait_for

TOKEN = "tok-3f9a1c7e55d2"
#: A value a document must never show (its key names a secret).
DOCUMENT_SECRET = "doc-secret-8b1e44"


def document(symbol: str, key: str = "k", engine: str = "demo", **extra: Any) -> dict[str, Any]:
    return {
        "user_id": extra.pop("user_id", "u"),
        "symbol": symbol,
        "strategy_key": key,
        "engine": engine,
        "params": extra.pop("params", {"bar_seconds": 3600}),
        "schedule": {"mode": "always"},
        **extra,
    }


DOCUMENTS = [
    document("AAA", account="acct-1"),
    document("BBB", account="acct-2"),
    document("CCC", user_id="alice", params={"bar_seconds": 3600}, api_key=DOCUMENT_SECRET),
    document("DDD", enabled=False),
    document("EEE", engine="ib"),
]


class Served:
    def __init__(self, settings: Settings, documents: list[dict[str, Any]]) -> None:
        self.settings = settings
        self.raw_store = open_store(settings)
        for doc in documents:
            self.raw_store.upsert_strategy(doc)
        clock = SystemClock()
        self.events: list[tuple[str, str, str]] = []
        self.web = WebServer(settings, "127.0.0.1:0", Redactor.for_settings(settings), clock.now)
        self.store = TimedStore(self.raw_store, self.web.metrics)

        def sink(kind: str, ident: str, detail: str) -> None:
            self.events.append((kind, ident, detail))
            self.web.on_event(kind, ident, detail)

        self.orchestrator = MultiStrategyOrchestrator(
            settings, self.store, clock=clock, on_event=sink, telemetry=self.web.metrics
        )
        self.web.serve(self.orchestrator, self.store)
        self.orchestrator.start()
        # A fresh connection per request: a kept-alive one that the server closes after
        # its idle timeout while a slow test runs could be reset under the next request.
        self.client = httpx.Client(
            base_url=self.web.url, timeout=10, limits=httpx.Limits(max_keepalive_connections=0)
        )

    def auth(self, token: str = TOKEN) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def row(self, ident: str) -> dict[str, Any]:
        """The strategy's row; ``{"state": None}`` until the first reconcile has read it."""
        page = self.client.get("/api/strategies", params={"limit": 1000}, headers=self.auth()).json()
        return next((r for r in page["items"] if r["id"] == ident), {"state": None})

    def wait_state(self, ident: str, state: str, timeout: float = 15) -> dict[str, Any]:
        return wait_for(lambda: (r := self.row(ident))["state"] == state and r, timeout, f"{ident} {state}")

    def close(self) -> None:
        self.client.close()
        self.orchestrator.stop()
        self.web.stop()
        self.raw_store.close()


def settings_for(tmp_path: Any, **changes: Any) -> Settings:
    settings = Settings(
        data_dir=str(tmp_path / "data"),
        poll_interval=0.1,
        resync_interval=5,
        snapshot_interval=0.5,
        backoff_base=0.01,
        backoff_cap=0.05,
        stop_timeout=5,
        http_token=TOKEN,
        accounts={"acct-1": {"engine": "demo"}, "acct-2": {"engine": "demo"}},
    )
    return attrs.evolve(settings, **changes)


@contextlib.contextmanager
def served(tmp_path: Any, documents: list[dict[str, Any]] | None = None, **changes: Any) -> Iterator[Served]:
    s = Served(settings_for(tmp_path, **changes), DOCUMENTS if documents is None else documents)
    try:
        yield s
    finally:
        s.close()
