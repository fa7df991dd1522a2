"""The live adaptive study's figures (:mod:`streams.live.coverage_adaptive`): the batches' files
aggregated per world with Monte-Carlo SEs, saved, and rendered into docs/adaptive.md.

Pure but for :func:`load_batches`, :func:`save` and :func:`render`. A run's row is
:func:`streams.live.coverage_adaptive.run_row`'s; a batch's document carries its rows under
``runs``, or ``error`` when it failed live (counted, not scored).

The SEs are binomial over runs (:func:`lab.studies.harness.coverage`): the ladders of a batch
are independent markets and seeds, and a lock-step run is a function of its seeds, so the
batch's kill is a condition the run went through, not a shared random effect.
"""

from __future__ import annotations

import json
import math
import platform
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from scipy import stats

from lab.studies.harness import coverage
from lab.studies.render import render_text, replace_section

#: the figures' files under docs/figures/
RESULTS, RUNS_CSV = "adaptive-live-coverage.json", "adaptive-live-coverage-runs.csv"
#: the page's section and its template
SECTION, TEMPLATE = "adaptive-live-coverage", "adaptive_live_coverage.md.j2"
#: the issue's validity targets: family-wise at least, ever missed and A/A decisions at most
TARGETS = {"family": 0.95, "ever": 0.05, "aa": 0.05}
ALL = "all worlds"


def share(flags: Sequence[bool]) -> tuple[float, float]:
    """The share of True and its binomial Monte-Carlo SE (NaN, NaN without flags)."""
    return coverage(flags)


def bound(hits: int, n: int, upper: bool) -> float:
    """The one-sided 95% Clopper-Pearson bound of a share of ``hits`` in ``n`` (the upper one
    with ``upper``, else the lower): where a binomial SE says nothing (0 or n hits; at 0 of n
    the upper bound is ``1 - 0.05^(1/n)``, about 3 / n). NaN without runs."""
    if n == 0:
        return math.nan
    if upper:
        return 1.0 if hits == n else float(stats.beta.ppf(0.95, hits + 1, n - hits))
    return 0.0 if hits == 0 else float(stats.beta.ppf(0.05, hits, n - hits + 1))


def by_look(runs: Sequence[Mapping[str, Any]]) -> dict[int, tuple[float, int]]:
    """Per look (period count): the share of the runs published there whose whole family held,
    and how many runs that is."""
    looks: dict[int, list[bool]] = {}
    for r in runs:
        for k, held in r["family"].items():
            looks.setdefault(int(k), []).append(bool(held))
    return {k: (sum(v) / len(v), len(v)) for k, v in sorted(looks.items())}


def arm_summary(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per arm (by its place in the ladder): its name and price, the share of runs whose
    sequence of it ever missed, the share of those misses from above (the sequence above the
    truth), and its held cells at its lowest period (median and least over runs)."""
    out = []
    for j in range(max((len(r["arms"]) for r in runs), default=0)):
        arms = [r["arms"][j] for r in runs if len(r["arms"]) > j]
        missed = sum(a["missed"] for a in arms)
        held = [a["held_cells"] for a in arms if not math.isnan(a["held_cells"])]
        out.append(
            {
                "arm": arms[0]["arm"],
                "ratio": arms[0]["ratio"],
                "missed": missed / len(arms),
                "missed_runs": missed,
                "from_above": sum(a["from_above"] for a in arms) / missed if missed else math.nan,
                "excludes_zero": sum(a["excludes_zero"] for a in arms) / len(arms),
                "held_median": statistics.median(held) if held else math.nan,
                "held_least": min(held) if held else math.nan,
            }
        )
    return out


def summarise(name: str, batches: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One world's (or, under :data:`ALL`, every world's) figures over its batches' runs."""
    done = [b for b in batches if "runs" in b]
    runs = [r for b in done for r in b["runs"]]
    fam, fam_se = share([r["family_end"] for r in runs])
    ever, ever_se = share([r["ever_missed"] for r in runs])
    differs, differs_se = share([r["differs"] for r in runs])
    looks = by_look(runs)
    worst = min(looks, key=lambda k: (looks[k][0], k)) if looks else None
    w_share, w_n = looks[worst] if worst is not None else (math.nan, 0)
    return {
        "world": name,
        "batches": len(done),
        "failed_batches": len(batches) - len(done),
        "runs": len(runs),
        "kills": {
            w: sum(1 for b in done if (b.get("kill") or {}).get("worker") == w)
            for w in ("controller", "analysis")
        },
        "kills_confirmed": sum(1 for b in done if b.get("exit_status") == -9),
        "family_end": fam,
        "family_end_se": fam_se,
        "family_end_low": bound(sum(r["family_end"] for r in runs), len(runs), upper=False),
        "family_worst_look": w_share,
        "family_worst_look_se": math.sqrt(w_share * (1 - w_share) / w_n) if w_n else math.nan,
        "worst_look": worst,
        "looks": {str(k): v[0] for k, v in looks.items()},
        "ever_missed": ever,
        "ever_missed_se": ever_se,
        "ever_missed_high": bound(sum(r["ever_missed"] for r in runs), len(runs), upper=True),
        "differs": differs,
        "differs_se": differs_se,
        "differs_high": bound(sum(r["differs"] for r in runs), len(runs), upper=True),
        "final_published": share([r["final_published"] for r in runs])[0],
        "missing": sum(r["missing"] for r in runs),
        "units_lost": sum(max(r["units_sent"] - r["units_counted"], 0) for r in runs),
        "units_double": sum(max(r["units_counted"] - r["units_sent"], 0) for r in runs),
        "adapted": share([r["adapted"] for r in runs])[0],
        "lowest_probability": min((r["lowest_probability"] for r in runs), default=math.nan),
        "arms": arm_summary(runs) if name != ALL else [],
    }


def batch_line(b: Mapping[str, Any]) -> dict[str, Any]:
    """A batch as the page lists it."""
    kill = b.get("kill") or {}
    return {
        "batch": b["batch"],
        "world": b["world"],
        "killed": kill.get("worker"),
        "kill_period": kill.get("period"),
        "exit_status": b.get("exit_status"),
        "started_utc": b.get("started_utc"),
        "ended_utc": b.get("ended_utc"),
        "minutes": b["seconds"] / 60 if "seconds" in b else math.nan,
        "load_start": b.get("load_start", math.nan),
        "load_end": b.get("load_end", math.nan),
        "runs": len(b.get("runs", ())),
        "family_end": sum(r["family_end"] for r in b.get("runs", ())),
        "ever_missed": sum(r["ever_missed"] for r in b.get("runs", ())),
        "error": b.get("error"),
    }


def result(
    batches: Sequence[Mapping[str, Any]], meta: Mapping[str, Any], order: Sequence[str]
) -> dict[str, Any]:
    """The saved document: the study's settings (``meta``), per world in ``order`` (the worlds
    no batch ran left out) and over all, and the batches."""
    worlds = [
        summarise(w, [b for b in batches if b["world"] == w])
        for w in order
        if any(b["world"] == w for b in batches)
    ]
    return {
        **meta,
        "targets": TARGETS,
        "machine": f"{platform.machine()}, Python {platform.python_version()}",
        "cases": worlds,
        "all": summarise(ALL, batches),
        "batches": [batch_line(b) for b in sorted(batches, key=lambda b: b["batch"])],
    }


def runs_frame(batches: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per run: its scalar figures, each look's family flag (``3:1;4:1;...``), and per
    arm its misses and held cells."""
    rows = []
    for b in batches:
        for r in b.get("runs", ()):
            flat = {k: v for k, v in r.items() if k not in ("family", "arms")}
            flat["family_looks"] = ";".join(f"{k}:{int(v)}" for k, v in r["family"].items())
            flat["missed_arms"] = ";".join(a["arm"] for a in r["arms"] if a["missed"])
            flat["held_cells"] = ";".join(f"{a['arm']}:{a['held_cells']:.2f}" for a in r["arms"])
            rows.append(flat)
    return pd.DataFrame(rows)


def load_batches(out: Path) -> list[dict[str, Any]]:
    """The batches' documents in ``out`` (``batch-NNN.json``), in batch order; ValueError when
    there are none."""
    paths = sorted(out.glob("batch-*.json"))
    if not paths:
        raise ValueError(f"no batch-NNN.json in {out}: run some batches into it first")
    return [read_batch(p) for p in paths]


def read_batch(path: Path) -> dict[str, Any]:
    """One batch's document; ValueError naming the file when it is not a batch's JSON."""
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not a batch's JSON ({e}): remove it to run it again") from e
    if not isinstance(doc, dict):
        raise ValueError(f"{path} is not a batch's JSON object: remove it to run it again")
    return doc


def save(out: Path, figures: Path, meta: Mapping[str, Any]) -> list[Path]:
    """Aggregate the batches in ``out`` into ``figures``' JSON and per-run CSV."""
    batches = load_batches(out)
    doc = result(batches, meta, list(meta.get("worlds", {})))
    figures.mkdir(parents=True, exist_ok=True)
    js, csv = figures / RESULTS, figures / RUNS_CSV
    js.write_text(json.dumps(doc, indent=1, default=float) + "\n")
    runs_frame(batches).to_csv(csv, index=False)
    return [js, csv]


def context(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The template's values: the saved document, and the span of the batches that ran."""
    ran = [b for b in doc["batches"] if b.get("started_utc")]
    keys = sorted({int(k) for c in doc["cases"] for k in c["looks"]})
    loads = [x for b in ran for x in (b["load_start"], b["load_end"])]
    return {
        **doc,
        "first_start": min((b["started_utc"] for b in ran), default="-"),
        "last_end": max((b["ended_utc"] for b in ran if b.get("ended_utc")), default="-"),
        "load_low": min(loads, default=math.nan),
        "load_high": max(loads, default=math.nan),
        "minutes": [b["minutes"] for b in ran] or [math.nan],
        # family-wise by look: a row per world, a column per look (period count)
        "look_keys": keys,
        "look_rows": [
            {"world": c["world"], "cells": [c["looks"].get(str(k), math.nan) for k in keys]}
            for c in doc["cases"]
        ],
    }


def rendered(doc: Mapping[str, Any]) -> str:
    """The page's section from the saved document."""
    return render_text(TEMPLATE, context(doc))


def render(figures: Path, page: Path) -> Path:
    """Write the section of ``page`` from ``figures``' saved document."""
    path = figures / RESULTS
    if not path.exists():
        raise ValueError(f"no {path}: run with --save first")
    page.write_text(
        replace_section(page.read_text(), SECTION, rendered(json.loads(path.read_text())))
    )
    return page
