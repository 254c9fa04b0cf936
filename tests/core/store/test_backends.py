"""Which store backends the contract suite ran against, and why one was left out."""

from __future__ import annotations

import pytest

from .conftest import HAS_WIRE_SERVER, REAL_MONGO_URI


def test_contract_runs_through_the_mongodb_wire_server():
    if not HAS_WIRE_SERVER:
        pytest.skip(
            "mongoeco (the wire-protocol test server) needs Python 3.13+; MongoStore contract not run"
        )


def test_contract_runs_against_a_real_mongodb():
    if not REAL_MONGO_URI:
        pytest.skip(
            "no real MongoDB: set QSM_TEST_MONGO_URI=mongodb://... (a replica set also exercises change streams)"
        )
