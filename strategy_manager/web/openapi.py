"""The OpenAPI 3.1 description of the HTTP API, served at ``/api/openapi.json``."""

from __future__ import annotations

from typing import Any

from strategy_manager import __version__
from strategy_manager.core.worker import WorkerState

_ERROR = {"$ref": "#/components/schemas/Error"}


def _response(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"description": description}
    if schema is not None:
        body["content"] = {"application/json": {"schema": schema}}
    return body


def _errors(*codes: int) -> dict[str, Any]:
    words = {
        400: "bad id, query or body",
        401: "no bearer token",
        403: "wrong token, or no token configured",
        404: "no such strategy",
        409: "not possible in the strategy's state or not run here",
        503: "store unavailable",
    }
    return {str(code): _response(words[code], _ERROR) for code in codes}


_ID = {
    "name": "ident",
    "in": "path",
    "required": True,
    "description": "user_id:symbol:strategy_key, or the document's _id (URL-encoded)",
    "schema": {"type": "string", "maxLength": 610},
}


def _write(summary: str, status: int = 200) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "security": [{"bearer": []}],
            "parameters": [_ID],
            "requestBody": {
                "required": False,
                "description": "none, or an empty JSON object",
                "content": {"application/json": {"schema": {"type": "object", "maxProperties": 0}}},
            },
            "responses": {
                str(status): _response("done", {"$ref": "#/components/schemas/Action"}),
                **_errors(400, 401, 403, 404, 409, 503),
            },
        }
    }


def describe() -> dict[str, Any]:
    filters = [
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": f"only these {name} values (comma-separated or repeated)",
            "schema": {"type": "string"},
        }
        for name in ("state", "engine", "user", "symbol", "account")
    ]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "quant-strategy-manager",
            "version": __version__,
            "description": "The strategies one `strategy-manager run` orchestrates: read, enable, "
            "disable, restart, and follow their transitions.",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string", "description": "one line"}},
                },
                "Action": {
                    "type": "object",
                    "properties": {"action": {"type": "string"}, "id": {"type": "string"}},
                },
                "Strategy": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "user_id": {"type": ["string", "null"]},
                        "symbol": {"type": ["string", "null"]},
                        "strategy_key": {"type": ["string", "null"]},
                        "account": {"type": ["string", "null"]},
                        "engine": {"type": ["string", "null"]},
                        "enabled": {"type": ["boolean", "null"]},
                        "state": {"type": "string", "enum": [str(s) for s in WorkerState]},
                        "reason": {"type": ["string", "null"]},
                        "restarts": {"type": "integer"},
                        "starts": {"type": "integer"},
                        "owner": {"type": ["string", "null"]},
                        "host": {"type": ["string", "null"]},
                        "elsewhere": {"type": "boolean"},
                        "epoch": {"type": ["integer", "null"]},
                        "last_snapshot_seq": {"type": ["integer", "null"]},
                        "last_snapshot_at": {"type": ["string", "null"], "format": "date-time"},
                        "snapshot_age_seconds": {"type": ["number", "null"]},
                        "calendar": {"type": ["string", "null"]},
                        "next_transition": {"type": ["string", "null"]},
                        "next_transition_at": {
                            "type": ["string", "null"],
                            "format": "date-time",
                            "description": "in the exchange's time zone",
                        },
                        "zone": {"type": ["string", "null"], "description": "the exchange's IANA zone"},
                    },
                },
                "Event": {
                    "type": "object",
                    "properties": {
                        "time": {"type": "string", "format": "date-time"},
                        "kind": {"type": "string"},
                        "strategy_id": {"type": "string"},
                        "detail": {"type": "string"},
                    },
                },
            },
        },
        "security": [{"bearer": []}],
        "paths": {
            "/healthz": {
                "get": {
                    "summary": "the process is alive",
                    "security": [],
                    "responses": {"200": _response("ok")},
                }
            },
            "/readyz": {
                "get": {
                    "summary": "the store answers and the leases were renewed within lease_seconds",
                    "security": [],
                    "responses": {"200": _response("ready"), "503": _response("not ready", _ERROR)},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics (text format)",
                    "responses": {"200": {"description": "metrics", "content": {"text/plain": {}}}},
                }
            },
            "/api/strategies": {
                "get": {
                    "summary": "the strategies, filtered and paginated, with counts per state",
                    "parameters": [
                        *filters,
                        {"name": "q", "in": "query", "schema": {"type": "string"}, "description": "search"},
                        {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                        },
                    ],
                    "responses": {
                        "200": _response(
                            "a page",
                            {
                                "type": "object",
                                "properties": {
                                    "total": {"type": "integer"},
                                    "offset": {"type": "integer"},
                                    "limit": {"type": "integer"},
                                    "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
                                    "engines": {"type": "array", "items": {"type": "string"}},
                                    "items": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/Strategy"},
                                    },
                                },
                            },
                        ),
                        **_errors(400, 401, 403),
                    },
                }
            },
            "/api/strategies/{ident}": {
                "get": {
                    "summary": "one strategy: status, document (secrets masked), snapshot history, events",
                    "parameters": [_ID],
                    "responses": {"200": _response("the strategy"), **_errors(400, 401, 403, 404, 503)},
                }
            },
            "/api/strategies/{ident}/enable": _write("enable (also clears FAILED)"),
            "/api/strategies/{ident}/disable": _write("disable (a running engine stops with a snapshot)"),
            "/api/strategies/{ident}/restart": _write("stop with a snapshot and start again", 202),
            "/api/events": {
                "get": {
                    "summary": "server-sent events: 'transition' (an Event), 'status' (rows), 'reset'",
                    "responses": {"200": {"description": "a stream", "content": {"text/event-stream": {}}}},
                }
            },
            "/api/events/recent": {
                "get": {
                    "summary": "the last 1,000 events, newest first",
                    "responses": {"200": _response("events")},
                }
            },
            "/api/openapi.json": {
                "get": {"summary": "this description", "responses": {"200": _response("it")}}
            },
        },
    }
