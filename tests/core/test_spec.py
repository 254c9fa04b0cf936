"""Strategy identifiers are printable one-line text: they cannot forge status or log lines."""

from __future__ import annotations

import pytest

from strategy_manager.core.errors import InvalidStrategy
from strategy_manager.core.spec import MAX_NAME, parse_strategy

DOC = {"user_id": "u", "symbol": "600000.SH", "strategy_key": "k", "engine": "demo"}


@pytest.mark.parametrize("field", ["user_id", "symbol", "strategy_key", "engine"])
@pytest.mark.parametrize(
    "value",
    [
        "a\x00b",  # NUL
        "a\x1b[2J",  # ESC: clears a terminal
        "ok\nforged-line RUNNING",  # a forged status line
        "a\rb",
        "a\tb",
        "a\u2028b",  # a line separator
        "a\u202eb",  # a right-to-left override
        "a\u200bb",  # a zero-width space
        "x" * (MAX_NAME + 1),
    ],
)
def test_identifiers_must_be_printable_and_short(field, value):
    with pytest.raises(InvalidStrategy) as caught:
        parse_strategy({**DOC, field: value})
    message = str(caught.value)
    assert f"field '{field}' must be printable text of at most {MAX_NAME} characters" in message
    assert message.isprintable() and len(message) < 300


def test_printable_text_in_any_script_is_accepted():
    spec = parse_strategy(
        {**DOC, "user_id": "交易员一号", "strategy_key": "hidden dragon", "symbol": "x" * MAX_NAME}
    )
    assert spec.id == f"交易员一号:{'x' * MAX_NAME}:hidden dragon"


def test_a_document_may_name_its_account_and_a_change_of_it_recreates_the_worker():
    base = {"user_id": "u", "symbol": "X", "strategy_key": "k", "engine": "demo"}
    assert parse_strategy(base).account is None
    spec = parse_strategy({**base, "account": "ctp-main"})
    assert spec.account == "ctp-main" and "account" not in spec.extra
    assert spec.runtime_fingerprint() != parse_strategy(base).runtime_fingerprint()
    assert spec.runtime_fingerprint() != parse_strategy({**base, "account": "other"}).runtime_fingerprint()


@pytest.mark.parametrize("bad", ["", " padded", "line\nbreak", 7, "x" * 201])
def test_an_account_that_is_not_a_name_is_refused_naming_the_field(bad):
    doc = {"user_id": "u", "symbol": "X", "strategy_key": "k", "engine": "demo", "account": bad}
    with pytest.raises(InvalidStrategy, match=r"u:X:k: field 'account' must be the name of an account"):
        parse_strategy(doc)
