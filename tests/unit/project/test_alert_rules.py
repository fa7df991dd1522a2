"""Prometheus alert rules and scrape config: promtool accepts them, and every metric they
use is one pricelab exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

from streams.console.metrics import ConsoleMetrics
from streams.worker.metrics import Metrics

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "deploy/prometheus/alerts.yml"


def _promtool() -> str:
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: apt-get install prometheus (./run test does it as root)"
    return tool


def test_promtool_accepts_the_alert_rules():
    out = subprocess.run(
        [_promtool(), "check", "rules", str(RULES)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_promtool_accepts_the_scrape_config(tmp_path):
    cfg = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    cfg["rule_files"] = [str(RULES)]  # the container path, pointed at the repo's file
    local = tmp_path / "prometheus.yml"
    local.write_text(yaml.safe_dump(cfg))
    out = subprocess.run(
        [_promtool(), "check", "config", str(local)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_rules_use_only_metrics_pricelab_exports():
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    exported = set()
    for family in [*Metrics().registry.collect(), *ConsoleMetrics().registry.collect()]:
        exported |= {family.name + sfx for sfx in suffixes.get(family.type, ("",))}
    rules = yaml.safe_load(RULES.read_text())
    used = set()
    for group in rules["groups"]:
        for rule in group["rules"]:
            used |= set(re.findall(r"\b(pricelab_[a-z_]+)", rule["expr"]))
    assert used, "no pricelab metric in the rules?"
    assert sorted(used - exported) == []


RULE_TESTS = ROOT / "deploy/prometheus/alerts_test.yml"


def test_promtool_unit_tests_of_the_alerts_pass():
    out = subprocess.run(
        [_promtool(), "test", "rules", str(RULE_TESTS)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_every_alert_is_tested_both_quiet_and_firing():
    alerts = {
        r["alert"]
        for g in yaml.safe_load(RULES.read_text())["groups"]
        for r in g["rules"]
        if "alert" in r
    }
    quiet, firing = set(), set()
    for t in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for case in t.get("alert_rule_test", []):
            (firing if case["exp_alerts"] else quiet).add(case["alertname"])
    assert {"PricelabControllerDown", "PricelabFlipOverdue", "PricelabAnalysisStale",
            "PricelabWorkerNotReady"} <= alerts  # fmt: skip
    assert sorted(alerts - firing) == [] and sorted(alerts - quiet) == []


def test_a_wrong_expectation_fails_promtool(tmp_path):
    """The promtool run can fail: the same tests with one expectation changed do."""
    tests = yaml.safe_load(RULE_TESTS.read_text())
    tests["rule_files"] = [str(RULES)]
    case = tests["tests"][0]["alert_rule_test"][1]
    case["exp_alerts"][0]["exp_labels"]["severity"] = "ticket"
    broken = tmp_path / "broken_test.yml"
    broken.write_text(yaml.safe_dump(tests))
    out = subprocess.run(
        [_promtool(), "test", "rules", str(broken)], capture_output=True, text=True
    )
    assert out.returncode != 0 and "FAILED" in out.stdout + out.stderr
