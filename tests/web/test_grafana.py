"""The Grafana dashboard that ships in docs/grafana/ asks only for metrics the server
exports (a renamed metric would leave a panel silently empty)."""

from __future__ import annotations

import json
import re

from tests.conftest import ROOT
from tests.web.served import served

DASHBOARD = ROOT / "docs" / "grafana" / "strategy-manager.json"
SUFFIXES = {"histogram": ("_bucket", "_count", "_sum"), "counter": ("_total",), "gauge": ("",)}


def exported(text: str) -> set[str]:
    names = set()
    for kind_line in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
        name, kind = kind_line
        base = name.removesuffix("_total") if kind == "counter" else name
        names |= {base + suffix for suffix in SUFFIXES.get(kind, ("",))}
    return names


def test_every_panel_queries_metrics_that_the_server_exports(tmp_path):
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    asked = {name for expr in exprs for name in re.findall(r"\bqsm_[a-z_]+", expr)}
    assert len(asked) >= 15
    with served(tmp_path, documents=[]) as s:
        text = s.client.get("/metrics").text
    missing = asked - exported(text)
    assert not missing, f"{DASHBOARD.name} asks for metrics the server does not export: {sorted(missing)}"


def test_the_dashboard_covers_each_family_the_issue_names():
    text = DASHBOARD.read_text()
    for family in (
        "qsm_strategies",
        "qsm_restarts_total",
        "qsm_failures_total",
        "qsm_hook_duration_seconds_bucket",
        "qsm_snapshot_size_bytes_bucket",
        "qsm_snapshot_oldest_age_seconds",
        "qsm_lease_renewals_total",
        "qsm_lease_failures_total",
        "qsm_store_call_duration_seconds_bucket",
        "qsm_store_errors_total",
        "qsm_control_loop_lag_seconds_bucket",
    ):
        assert family in text, family
