"""The HTTP server of ``strategy-manager run --http``: uvicorn on a thread of its own.

It serves what :mod:`~strategy_manager.web.app` describes, next to the control loop:
its event loop is the only thing on its thread, it reads the orchestrator's slots
without locking them, and it calls the store off that loop (a thread pool), so
neither a slow client nor a slow store reaches the control thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

import uvicorn

from strategy_manager.core.errors import ConfigError
from strategy_manager.core.masking import Redactor
from strategy_manager.web.app import Api, create_app
from strategy_manager.web.events import EventHub
from strategy_manager.web.metrics import Metrics

if TYPE_CHECKING:
    from strategy_manager.core.orchestrator import MultiStrategyOrchestrator
    from strategy_manager.core.settings import Settings
    from strategy_manager.core.store import Store

log = logging.getLogger("strategy_manager.web")

#: How long start waits for the server to listen, and stop for it to end.
START_SECONDS = 10.0
STOP_SECONDS = 5.0


def parse_listen(text: str) -> tuple[str, int]:
    """``127.0.0.1:8650``, ``[::1]:8650``, ``:8650`` (loopback) or ``8650`` -> (host, port)."""
    value = text.strip()
    host, sep, port_text = value.rpartition(":")
    if not sep:
        host, port_text = "", value
    host = host.strip("[]") or "127.0.0.1"
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"http_listen {text!r}: expected host:port such as 127.0.0.1:8650") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"http_listen {text!r}: port must be from 0 to 65535")
    return host, port


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class WebServer:
    """Build with the telemetry and the hub first (the orchestrator needs them), then
    :meth:`serve` the orchestrator once it exists."""

    def __init__(
        self, settings: Settings, listen: str, redactor: Redactor, now: Callable[[], datetime]
    ) -> None:
        self.settings = settings
        self.host, self.port = parse_listen(listen)
        if settings.http_auth_reads and not settings.http_token:
            raise ConfigError("http_auth_reads is on but no http_token is set (QSM_HTTP_TOKEN)")
        self.redactor = redactor
        self.hub = EventHub(now, redact=redactor.text)
        self.metrics = Metrics(self.hub)
        self.api: Api | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    def on_event(self, kind: str, strategy_id: str, detail: str) -> None:
        """The orchestrator's event sink (never blocks)."""
        self.metrics.event(kind, strategy_id)
        self.hub.event(kind, strategy_id, detail)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def serve(self, orchestrator: MultiStrategyOrchestrator, store: Store) -> None:
        """Bind (a busy port is a ConfigError now, not a log line later) and serve."""
        self.metrics.watch(orchestrator)
        api = self.api = Api(orchestrator, store, self.settings, self.hub, self.metrics, self.redactor)
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets that say TCP, and
        # without it a kept-alive connection waits 40 ms for a delayed ACK per response.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise ConfigError(f"http_listen {self.host}:{self.port}: cannot listen: {exc.strerror}") from None
        sock.listen(128)
        sock.setblocking(False)
        self._socket = sock
        self.port = sock.getsockname()[1]
        if not _loopback(self.host):
            log.warning(
                "HTTP server on %s, beyond this machine%s",
                self.url,
                "" if self.settings.http_auth_reads else ": reads need no token (http_auth_reads)",
            )
        self.app = create_app(api)
        config = uvicorn.Config(
            self.app,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
            server_header=False,
        )
        server = uvicorn.Server(config)
        self._server = server
        hub = self.hub

        def run() -> None:
            async def main() -> None:
                hub.attach(asyncio.get_running_loop())
                await server.serve(sockets=[sock])

            try:
                asyncio.run(main())
            except Exception:
                log.exception("HTTP server stopped")

        self._thread = threading.Thread(target=run, name="qsm-http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_SECONDS
        while not server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not server.started:
            raise ConfigError(f"HTTP server on {self.url} did not start")

    def stop(self) -> None:
        """Close the event streams, stop serving; bounded by STOP_SECONDS."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        loop = self.hub._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self.hub.close)
        server.should_exit = True
        thread.join(STOP_SECONDS)
        if thread.is_alive():
            log.warning("HTTP server did not stop within %gs", STOP_SECONDS)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = None
