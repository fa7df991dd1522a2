"""The Grafana dashboard and the alert rules only query metrics that pricelab exports.

The list of exported series is derived from a real ``Metrics()`` registry (counter families
export ``<name>_total``, histograms ``_bucket``/``_sum``/``_count``), not written down here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry

from streams.console.metrics import ConsoleMetrics
from streams.worker.metrics import Metrics

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "pricelab.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
_NAME = re.compile(r"\bpricelab_[a-z0-9_]+")


def exported() -> set[str]:
    names: set[str] = set()
    families = [
        *Metrics(CollectorRegistry()).registry.collect(),
        *ConsoleMetrics(CollectorRegistry()).registry.collect(),  # the web console's
    ]
    for fam in families:
        if fam.type == "counter":
            names |= {fam.name + "_total", fam.name + "_created"}
        elif fam.type == "histogram":
            names |= {fam.name + s for s in ("_bucket", "_sum", "_count", "_created")}
        else:
            names.add(fam.name)
    return names


def _panels(dash: dict) -> list[dict]:
    out = []
    for p in dash["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))  # rows
    return out


def test_every_dashboard_query_uses_exported_metrics():
    dash = json.loads(DASHBOARD.read_text())
    known = exported()
    panels = _panels(dash)
    assert panels
    for p in panels:
        assert p["targets"], p["title"]
        for t in p["targets"]:
            names = set(_NAME.findall(t["expr"]))
            assert names, f"{p['title']}: no pricelab metric in {t['expr']!r}"
            assert names <= known, f"{p['title']}: unknown {names - known}"


def test_dashboard_is_well_formed():
    dash = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in _panels(dash)]
    assert len(ids) == len(set(ids))
    assert dash["uid"] and dash["title"]
    for p in _panels(dash):
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs))


def test_dashboard_covers_every_alert_metric_and_lag():
    dash_names = {
        n
        for p in _panels(json.loads(DASHBOARD.read_text()))
        for t in p["targets"]
        for n in _NAME.findall(t["expr"])
    }
    rules = [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]
    alert_names = {n for r in rules for n in _NAME.findall(r["expr"])}
    assert alert_names <= exported(), alert_names - exported()
    assert alert_names <= dash_names, alert_names - dash_names
    assert "pricelab_consumer_lag" in dash_names
