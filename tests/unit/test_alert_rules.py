"""Prometheus alert rules and scrape config: promtool accepts them, and every metric they
use is one pricelab exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

from streams.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
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
    for family in Metrics().registry.collect():
        exported |= {family.name + sfx for sfx in suffixes.get(family.type, ("",))}
    rules = yaml.safe_load(RULES.read_text())
    used = set()
    for group in rules["groups"]:
        for rule in group["rules"]:
            used |= set(re.findall(r"\b(pricelab_[a-z_]+)", rule["expr"]))
    assert used, "no pricelab metric in the rules?"
    assert sorted(used - exported) == []
