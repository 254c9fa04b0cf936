"""Plain JSON for the values a snapshot holds, and back."""

from __future__ import annotations

import collections
import json
import math
from datetime import UTC, date, datetime

import pytest

from qsm_backtrader.codec import decode, encode
from strategy_manager.core.errors import SnapshotError


def test_values_round_trip_through_json():
    value = {
        "when": datetime(2024, 5, 6, 23, 59, 59, 999990),
        "aware": datetime(2024, 5, 6, 1, 2, tzinfo=UTC),
        "day": date(2024, 5, 6),
        "limits": [math.inf, -math.inf, 1.5, -0.0],
        "queue": collections.deque([1, "a", None]),
        "nested": {"ok": True, "n": 3, "t": (1, 2)},
    }
    back = decode(json.loads(json.dumps(encode(value, "$"), allow_nan=False)), "$")
    assert back == {**value, "nested": {"ok": True, "n": 3, "t": [1, 2]}}
    assert isinstance(back["queue"], collections.deque)
    assert math.copysign(1.0, back["limits"][3]) == -1.0


def test_nan_survives_as_a_tag():
    back = decode(json.loads(json.dumps(encode([math.nan], "$"), allow_nan=False)), "$")
    assert math.isnan(back[0])


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"a": [1, object()]}, r"^\$\.a\[1\] holds a object, which a snapshot cannot keep"),
        ({1: "x"}, r"^\$: key 1 cannot be kept"),
        ({"__qsm__": "x"}, r"^\$: key '__qsm__' cannot be kept"),
    ],
)
def test_what_cannot_be_kept_is_named(value, message):
    with pytest.raises(SnapshotError, match=message):
        encode(value, "$")


def test_unknown_tags_are_refused():
    with pytest.raises(SnapshotError, match=r"\$\.x: unknown tagged value 'mystery'"):
        decode({"x": {"__qsm__": "mystery"}}, "$")
    with pytest.raises(SnapshotError, match=r"malformed 'datetime' value"):
        decode({"__qsm__": "datetime", "v": "yesterday"}, "$")
