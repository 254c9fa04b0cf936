"""A MongoDB wire-protocol server for tests: mongoeco (SQLite-backed), Python 3.13+."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def mongoeco_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URI of a mongoeco server on a loopback port, shared by the session.

    Real pymongo clients talk to it over TCP; give each test its own database.
    """
    if sys.version_info < (3, 13):
        pytest.skip("mongoeco (the MongoDB wire-protocol test server) needs Python 3.13+")
    from mongoeco._pytest_runtime import ProxyThread

    server = ProxyThread("sqlite", tmp_path_factory.mktemp("mongoeco"), "7.0", "auto-installed")
    uri = server.start()
    try:
        yield uri
    finally:
        server.close()
