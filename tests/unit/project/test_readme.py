"""The README stays true: the files it names exist, its spec loads, its commands exist."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from controller.spec import load_spec_file
from streams.cli import app

ROOT = Path(__file__).resolve().parents[3]
README = (ROOT / "README.md").read_text()


def test_files_named_in_the_readme_exist():
    named = set(re.findall(r"`((?:docs|deploy|tests|benchmarks)/[\w./-]+)`", README))
    named |= set(re.findall(r"\s((?:docs|deploy)/[\w./-]+\.(?:ya?ml|md))", README))
    assert named, "the README names no files?"
    missing = sorted(n for n in named if not (ROOT / n).exists())
    assert missing == []


def test_walkthrough_spec_loads():
    spec = load_spec_file(ROOT / "docs/walkthrough.yaml")
    assert spec.id == "walkthrough" and len(spec.all_products()) == 40


def test_every_pricelab_command_in_the_readme_exists():
    used = set(re.findall(r"^\s*(?:PRICELAB_\S+ )*pricelab ([a-z-]+)", README, flags=re.M))
    assert {"up", "worker", "schedule", "experiment", "assignments", "simulate", "analyze"} <= used
    runner = CliRunner()
    for cmd in sorted(used):
        r = runner.invoke(app, [cmd, "--help"])
        assert r.exit_code == 0, (cmd, r.output)


def test_every_metric_in_the_readme_catalogue_is_exported():
    from streams.worker.metrics import Metrics

    exported = {m.name for m in Metrics().registry.collect()}
    catalogued = set(re.findall(r"^\| `(pricelab_[a-z_]+)` \|", README, flags=re.M))
    assert catalogued
    # counters are collected under their base name (without _total)
    missing = sorted(
        m for m in catalogued if m not in exported and m.removesuffix("_total") not in exported
    )
    assert missing == []


def test_every_exported_metric_is_in_the_readme_catalogue():
    from streams.worker.metrics import Metrics

    catalogued = set(re.findall(r"^\| `(pricelab_[a-z_]+)` \|", README, flags=re.M))
    names = {m.name for m in Metrics().registry.collect()}
    ours = {n for n in names if n.startswith("pricelab_")}
    missing = sorted(n for n in ours if n not in catalogued and f"{n}_total" not in catalogued)
    assert missing == []
    # everything else is the standard process collector, which the README names
    assert names - ours and all(n.startswith("process_") for n in names - ours)
    assert "`process_start_time_seconds`" in README
