"""What may be printed of settings and text: masking by position, URIs by their parts."""

from __future__ import annotations

import json
import logging

import pytest

from strategy_manager.core.masking import (
    MASK,
    RedactingFilter,
    Redactor,
    mask_uri,
    masked_options,
    settings_view,
    uri_secrets,
)
from strategy_manager.core.settings import Settings


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("mongodb://localhost:27017", "mongodb://localhost:27017"),
        (
            "mongodb://h1:1,h2:2/live?replicaSet=rs0&tls=true",
            "mongodb://h1:1,h2:2/live?replicaSet=rs0&tls=true",
        ),
        ("mongodb://trader:hunter2@db:27017/?authSource=admin", "mongodb://***@db:27017/?authSource=admin"),
        ("mongodb://AKIAKEYID@db/", "mongodb://***@db/"),
        (
            "mongodb://db/?tls=true&tlsCertificateKeyFilePassword=s3cr3t-key",
            "mongodb://db/?tls=true&tlsCertificateKeyFilePassword=***",
        ),
        (
            "mongodb://db/?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:tok3n",
            "mongodb://db/?authMechanism=MONGODB-AWS&authMechanismProperties=***",
        ),
        ("mongodb://db/?appName=a@b", "mongodb:***"),  # '@' after the hosts: not parsed, hidden
        ("mongodb:/user:hunter2@localhost", "mongodb:***"),  # the typo
        ("mongodb:user:hunter2@localhost", "mongodb:***"),
        ("mongodb//user:hunter2@localhost", MASK),
        ("mongodb://user:pa/ss@host", "mongodb:***"),  # a password holding '/'
        ("mongodb://user:1234?x@host", "mongodb:***"),
        ("mongodb://user:hunter2", "mongodb://***"),  # no host: the 'port' is not a number
        ("mongodb://db/?w=majority&journal=true&x=1", "mongodb://db/?w=majority&journal=true&x=***"),
        ("mongodb://db/?readPreference=sec<ret>", "mongodb://db/?readPreference=***"),
        ("mongodb://db/#frag", "mongodb://db/#***"),
        ("mongodb+srv://u:p@cluster0.example.net/db", "mongodb+srv://***@cluster0.example.net/db"),
        ("mongodb://%2Ftmp%2Fmongodb-27017.sock", "mongodb://%2Ftmp%2Fmongodb-27017.sock"),
        ("https://example.com/docs/a/b.html", "https://example.com/docs/a/b.html"),
        ("file:///var/lib/qsm/store.sqlite3", "file:///var/lib/qsm/store.sqlite3"),
        ("https://example.com/a/<b>", "https://example.com/***"),
    ],
)
def test_uris_show_hosts_database_and_harmless_options_only(uri, shown):
    assert mask_uri(uri) == shown
    assert mask_uri(mask_uri(uri)) == mask_uri(uri)


def test_the_settings_view_masks_by_position_not_by_english_key_names():
    settings = Settings(
        mongo_uri="mongodb://u:pw-123456@db/?tlsCertificateKeyFilePassword=keypass-999",
        engine_options={
            "vnpy": {
                "gateways": {"CTP": {"用户名": "8000123", "密码": "ctp-pass-1", "授权编码": "AUTHCODE0"}},
                "settings": {"datafeed.password": "df-pass", "database.name": "sqlite"},
                "exchange_map": {"US": "SMART"},
            },
            "other": {"gateways": {"X": {"pwd": "p-1", "Bearer": "b-1", "nested": {"k": 1}}}, "plain": 3},
        },
    )
    view = settings_view(settings, {"vnpy": [["settings", "datafeed.password"]]})
    assert view["mongo_uri"] == "mongodb://***@db/?tlsCertificateKeyFilePassword=***"
    assert view["engine_options"] == {
        "vnpy": {
            "gateways": {"CTP": {"用户名": MASK, "密码": MASK, "授权编码": MASK}},
            "settings": {"datafeed.password": MASK, "database.name": "sqlite"},
            "exchange_map": {"US": "SMART"},
        },
        "other": {"gateways": {"X": {"pwd": MASK, "Bearer": MASK, "nested": {"k": MASK}}}, "plain": 3},
    }
    assert view["calendar_map"] == dict(Settings().calendar_map)
    json.dumps(view)  # plain data


def test_names_that_say_secret_are_masked_as_a_backstop_and_uris_anywhere_in_options():
    options = {"myengine": {"api_key": "k-1", "密钥": "k-2", "url": "https://bot:tok@api.example/x", "n": 1}}
    assert masked_options(options) == {
        "myengine": {"api_key": MASK, "密钥": MASK, "url": "https://***@api.example/x", "n": 1}
    }


def test_the_redactor_masks_every_written_form_of_a_secret():
    secret = 'pa"ss\\word密码'
    redactor = Redactor([secret])
    for text in (
        f"login failed for {secret}",
        json.dumps({"error": f"login failed for {secret}"}, ensure_ascii=False),
        json.dumps({"error": f"login failed for {secret}"}),
        repr(f"login failed for {secret}"),
        "login failed for pa%22ss%5Cword%E5%AF%86%E7%A0%81",
    ):
        assert "pa" not in redactor.text(text).replace("login failed for", ""), text


def test_the_redactor_knows_the_settings_secrets_and_masks_uris_in_any_text():
    settings = Settings(
        mongo_uri="mongodb://trader:uri-secret-7@db/?authMechanismProperties=AWS_SESSION_TOKEN:sess-tok-9",
        engine_options={"vnpy": {"gateways": {"CTP": {"密码": "ctp-secret-3", "经纪商代码": 9999}}}},
    )
    redactor = Redactor.for_settings(settings)
    text = redactor.text(
        "connect ctp-secret-3 broker 9999 as trader:uri-secret-7 token sess-tok-9; "
        "also see postgres://bob:pg-secret@pg/db and http://example.com/a."
    )
    for secret in ("ctp-secret-3", "9999", "uri-secret-7", "sess-tok-9", "pg-secret", "bob"):
        assert secret not in text
    assert "http://example.com/a." in text


def test_short_values_are_left_alone_in_free_text_only():
    redactor = Redactor(["abc", "true"])
    assert redactor.text("abc true") == "abc ***"


def test_a_malformed_uris_parts_are_all_secrets():
    assert "hunter2" in uri_secrets("mongodb:/user:hunter2@localhost")
    assert uri_secrets("mongodb://localhost:27017") == []


def test_the_log_filter_redacts_messages_arguments_and_tracebacks():
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(self.format(record))

    handler = Keep()
    handler.addFilter(RedactingFilter(Redactor(["gateway-pass-1"])))
    logger = logging.getLogger("test_masking_filter")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("login with %s refused", "gateway-pass-1")
        try:
            raise RuntimeError("bad password gateway-pass-1")
        except RuntimeError:
            logger.exception("crash")
    finally:
        logger.removeHandler(handler)
    assert len(records) == 2 and all("gateway-pass-1" not in r for r in records)
    assert "RuntimeError: bad password ***" in records[1]


def test_every_account_value_but_its_engine_is_masked_in_views_and_text():
    settings = Settings(
        accounts={
            "ctp-main": {
                "engine": "vnpy",
                "gateway": "CTP",
                "setting": {"用户名": "8000123", "交易服务器": "tcp://10.1.2.3:10201", "port": 10201},
                "connect_timeout": 30,
            },
            "ib": {"engine": "backtrader", "store": {"factory": "x:Store", "kwargs": {"clientId": 7}}},
        }
    )
    view = settings_view(settings)
    assert view["accounts"] == {
        "ctp-main": {
            "engine": "vnpy",
            "gateway": MASK,
            "setting": {"用户名": MASK, "交易服务器": MASK, "port": MASK},
            "connect_timeout": MASK,
        },
        "ib": {"engine": "backtrader", "store": {"factory": MASK, "kwargs": {"clientId": MASK}}},
    }
    text = Redactor.for_settings(settings).text(
        "vnpy login 8000123 at tcp://10.1.2.3:10201 (port 10201) failed; backtrader store x:Store"
    )
    assert "8000123" not in text and "10.1.2.3" not in text and "10201" not in text
    assert "x:Store" not in text
    assert "vnpy login" in text and "backtrader store" in text  # the engines' names are not secrets
