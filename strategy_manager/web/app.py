"""The Starlette application: the JSON API, the event stream, probes, metrics and
the dashboard's files.

Every response is plain data passed through the settings' redactor, so no secret
the settings hold can appear in one. Every error is a 4xx or 5xx with a one-line
JSON body ``{"error": "..."}``; a traceback goes to the log, never to the client.

Writes need ``Authorization: Bearer <http_token>``; with ``http_auth_reads`` the
reads and ``/metrics`` do too. The probes never do: they say nothing but ok.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from strategy_manager.core.clock import steady
from strategy_manager.core.errors import QsmError, StoreError
from strategy_manager.core.masking import Redactor, masked_document
from strategy_manager.core.store.codec import natural_key
from strategy_manager.core.worker import WorkerState
from strategy_manager.web.fleet import EXACT_FILTERS, Fleet
from strategy_manager.web.metrics import content_type

if TYPE_CHECKING:
    from strategy_manager.core.orchestrator import MultiStrategyOrchestrator
    from strategy_manager.core.settings import Settings
    from strategy_manager.core.store import Store
    from strategy_manager.web.events import EventHub
    from strategy_manager.web.metrics import Metrics

log = logging.getLogger("strategy_manager.web")

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
#: Longest strategy id accepted in a path (three names of at most 200 characters).
MAX_ID = 610
#: How long /readyz waits for the store.
READY_TIMEOUT = 2.0
#: Seconds between keep-alive comments on an idle event stream.
KEEPALIVE_SECONDS = 15.0
STATES = frozenset(str(s) for s in WorkerState)
STATIC = resources.files("strategy_manager.web") / "static"


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Api:
    """The handlers, over one orchestrator and its store."""

    def __init__(
        self,
        orchestrator: MultiStrategyOrchestrator,
        store: Store,
        settings: Settings,
        hub: EventHub,
        metrics: Metrics,
        redactor: Redactor,
    ) -> None:
        self.orchestrator = orchestrator
        self.store = store
        self.settings = settings
        self.hub = hub
        self.metrics = metrics
        self.redactor = redactor
        self.fleet = Fleet(orchestrator)
        self.token = settings.http_token

    # -- plumbing ------------------------------------------------------------------
    def json(self, data: Any, status: int = 200) -> Response:
        body = json.dumps(self.redactor.data(data), ensure_ascii=False, default=str)
        return Response(body, status_code=status, media_type="application/json")

    def authorize(self, request: Request, write: bool) -> None:
        if not write and not self.settings.http_auth_reads:
            return
        if not self.token:
            raise ApiError(403, "writes are off: no http_token is configured (set QSM_HTTP_TOKEN)")
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise ApiError(401, "this needs 'Authorization: Bearer <http_token>'")
        if not secrets.compare_digest(given.strip().encode(), self.token.encode()):
            raise ApiError(403, "wrong token")

    def ident(self, request: Request) -> str:
        ident = str(request.path_params["ident"])
        if not ident or len(ident) > MAX_ID or not ident.isprintable():
            raise ApiError(400, f"bad strategy id: at most {MAX_ID} printable characters")
        return ident

    def route(
        self, handler: Callable[[Request], Awaitable[Response]], write: bool = False, public: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        """``handler`` behind the token check (none when ``public``) and the error rules."""

        async def endpoint(request: Request) -> Response:
            try:
                if not public:
                    self.authorize(request, write)
                return await handler(request)
            except ApiError as exc:
                return self.json({"error": exc.message}, exc.status)
            except QsmError as exc:
                return self.json({"error": _one_line(str(exc))}, 503 if isinstance(exc, StoreError) else 400)

        return endpoint

    async def in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """A store call, off the event loop."""
        return await run_in_threadpool(fn, *args)

    # -- probes and metrics ----------------------------------------------------------
    async def healthz(self, request: Request) -> Response:
        return self.json({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        problems: list[str] = []
        try:
            await asyncio.wait_for(self.in_thread(self.store.change_token), READY_TIMEOUT)
        except TimeoutError:
            problems.append(f"store did not answer within {READY_TIMEOUT:g}s")
        except QsmError as exc:
            problems.append(f"store unreachable: {_one_line(str(exc))}")
        keeper = self.orchestrator.keeper
        lease_seconds = self.settings.lease_seconds
        if keeper.last_renewal is None:
            problems.append("leases not renewed yet")
        elif steady() - keeper.last_renewal > lease_seconds:
            age = steady() - keeper.last_renewal
            problems.append(f"leases last renewed {age:.1f}s ago (lease_seconds {lease_seconds:g})")
        if self.orchestrator.fatal is not None:
            problems.append(f"orchestrator stopped: {_one_line(str(self.orchestrator.fatal))}")
        if problems:
            return self.json({"status": "not ready", "problems": problems, "error": "; ".join(problems)}, 503)
        return self.json({"status": "ready"})

    async def prometheus(self, request: Request) -> Response:
        return Response(self.metrics.scrape(), media_type=content_type())

    # -- reads -----------------------------------------------------------------------
    async def strategies(self, request: Request) -> Response:
        params = request.query_params
        unknown = set(params) - {*EXACT_FILTERS, "q", "offset", "limit"}
        if unknown:
            raise ApiError(400, f"unknown query parameter {sorted(unknown)[0]!r}")
        filters: dict[str, set[str]] = {}
        for name in EXACT_FILTERS:
            values = [v for item in params.getlist(name) for v in item.split(",") if v]
            if values:
                filters[name] = set(values)
        bad = filters.get("state", set()) - STATES
        if bad:
            raise ApiError(400, f"state {sorted(bad)[0]!r} is not one of {', '.join(sorted(STATES))}")
        offset = _int(params.get("offset"), "offset", 0, 0, 10**9)
        limit = _int(params.get("limit"), "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        return self.json(self.fleet.query(filters, params.get("q", ""), offset, limit))

    async def strategy(self, request: Request) -> Response:
        ident = self.ident(request)
        document = await self.in_thread(self.store.get_strategy, ident)
        strategy_id = ":".join(natural_key(document)) if document is not None else ident
        slot = self.fleet.slot(strategy_id)
        if document is None and slot is None:
            raise ApiError(404, f"strategy {ident}: not found")
        history = await self.in_thread(self.store.snapshot_history, strategy_id, 20)
        snapshots = [
            {
                "seq": s.seq,
                "taken_at": s.taken_at.isoformat(),
                "engine": s.engine,
                "bytes": len(json.dumps(s.state, default=str)),
                "error": s.error,
            }
            for s in history
        ]
        return self.json(
            {
                "id": strategy_id,
                "status": self.fleet.row(slot) if slot is not None else None,
                "document": masked_document(document) if document is not None else None,
                "snapshots": snapshots,
                "events": self.hub.events_of(strategy_id),
            }
        )

    async def events(self, request: Request) -> Response:
        hub = self.hub
        client = hub.subscribe()

        async def stream() -> AsyncIterator[str]:
            try:
                yield "retry: 2000\n: connected\n\n"
                while not hub.closed:
                    try:
                        message = await asyncio.wait_for(client.next(), KEEPALIVE_SECONDS)
                    except TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    if message is None:
                        return
                    name, data = message
                    body = json.dumps(self.redactor.data(data), ensure_ascii=False, default=str)
                    yield f"event: {name}\ndata: {body}\n\n"
            finally:
                hub.unsubscribe(client)

        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    async def recent(self, request: Request) -> Response:
        return self.json({"events": list(reversed(self.hub.recent))})

    # -- writes ----------------------------------------------------------------------
    async def _body(self, request: Request) -> None:
        """Writes take no parameters: an empty body or an empty JSON object."""
        raw = await request.body()
        if not raw.strip():
            return
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            raise ApiError(400, "body: not JSON (send no body, or {})") from None
        if body != {}:
            raise ApiError(400, "body: this endpoint takes no parameters (send no body, or {})")

    async def enable(self, request: Request) -> Response:
        return await self._set_enabled(request, True)

    async def disable(self, request: Request) -> Response:
        return await self._set_enabled(request, False)

    async def _set_enabled(self, request: Request, enabled: bool) -> Response:
        ident = self.ident(request)
        await self._body(request)
        if await self.in_thread(self.store.get_strategy, ident) is None:
            raise ApiError(404, f"strategy {ident}: not found")
        document = await self.in_thread(self.store.update_strategy, ident, {"enabled": enabled})
        self.orchestrator.wake()
        strategy_id = ":".join(natural_key(document))
        log.info("%s %s through the HTTP API", "enabled" if enabled else "disabled", strategy_id)
        return self.json({"action": "enabled" if enabled else "disabled", "id": strategy_id})

    async def restart(self, request: Request) -> Response:
        ident = self.ident(request)
        await self._body(request)
        slot = self.fleet.slot(ident)
        if slot is None:
            document = await self.in_thread(self.store.get_strategy, ident)
            if document is None:
                raise ApiError(404, f"strategy {ident}: not found")
            slot = self.fleet.slot(":".join(natural_key(document)))
            if slot is None:
                raise ApiError(409, f"strategy {ident}: not known to this orchestrator yet; try again")
        if slot.spec is None or not slot.spec.enabled:
            raise ApiError(409, f"strategy {slot.id}: is {slot.state}; enable it (or fix its document) first")
        if slot.lease is None:
            raise ApiError(409, f"strategy {slot.id}: is not run by this process (state {slot.state})")
        self.orchestrator.restart(slot.id)
        log.info("restart of %s requested through the HTTP API", slot.id)
        return self.json({"action": "restart requested", "id": slot.id}, 202)

    # -- the page ----------------------------------------------------------------------
    async def page(self, request: Request) -> Response:
        return FileResponse(str(STATIC / "index.html"), headers={"Cache-Control": "no-cache"})

    async def openapi(self, request: Request) -> Response:
        from strategy_manager.web.openapi import describe

        return self.json(describe())


def _int(raw: str | None, name: str, default: int, low: int, high: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer, got {raw[:20]!r}") from None
    if not low <= value <= high:
        raise ApiError(400, f"{name} must be from {low} to {high}, got {value}")
    return value


def _one_line(text: str) -> str:
    return " ".join(text.split())[:500]


def create_app(api: Api) -> Starlette:
    r = api.route

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        detail = exc.detail if isinstance(exc, HTTPException) else "not found"
        if status == 404:
            detail = f"no such path: {request.url.path}"
        return api.json({"error": _one_line(str(detail))}, status)

    async def server_error(request: Request, exc: Exception) -> Response:
        log.error("HTTP %s %s failed", request.method, request.url.path, exc_info=exc)
        return api.json({"error": f"internal error ({type(exc).__name__}); see the orchestrator's log"}, 500)

    routes = [
        # The page and its files hold no data: the page asks for the token if reads need it.
        Route("/", r(api.page, public=True), methods=["GET"]),
        Route("/strategies/{ident:path}", r(api.page, public=True), methods=["GET"]),
        Route("/healthz", r(api.healthz, public=True), methods=["GET"]),
        Route("/readyz", r(api.readyz, public=True), methods=["GET"]),
        Route("/metrics", r(api.prometheus), methods=["GET"]),
        Route("/api/openapi.json", r(api.openapi), methods=["GET"]),
        Route("/api/strategies", r(api.strategies), methods=["GET"]),
        Route("/api/events", r(api.events), methods=["GET"]),
        Route("/api/events/recent", r(api.recent), methods=["GET"]),
        Route("/api/strategies/{ident:path}/enable", r(api.enable, write=True), methods=["POST"]),
        Route("/api/strategies/{ident:path}/disable", r(api.disable, write=True), methods=["POST"]),
        Route("/api/strategies/{ident:path}/restart", r(api.restart, write=True), methods=["POST"]),
        Route("/api/strategies/{ident:path}", r(api.strategy), methods=["GET"]),
        Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
    ]
    return Starlette(
        routes=routes,
        exception_handlers={HTTPException: not_found, Exception: server_error},
    )
