"""docs/validation.md's sections as plain contexts: each function reads saved results (the
validation study's tables under docs/figures and the files of the studies the page quotes) and
returns the figures and verdicts its template (``lab/studies/templates/validation_page/``) prints;
the prose is in the templates. :func:`page_context` is the page's; :func:`section` renders
one section (what a test reads).

The declarations the page and the study share (the seed, the days, the extra estimators run
beside the published ones, the sub-daily periods) are here, so that the study
(:mod:`lab.studies.validation`) and its page read one source.
"""

from __future__ import annotations

import json
import math
import platform
import sys
from collections.abc import Iterable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from scipy.stats import binom

from lab.compare import BASELINE_DESIGN, summarise
from lab.config import MarketConfig
from lab.studies import dm_timebound, ht_random_days
from lab.studies.harness import fragment
from lab.studies.live_arms_page import live_arms
from lab.studies.render import render_text

SEED = 0
DAYS = 28
#: the sub-daily table: (period, days, designs; None = every design)
SUB_DAILY: tuple[tuple[timedelta, int, tuple[str, ...] | None], ...] = (
    (timedelta(hours=4), 14, None),
    (timedelta(hours=1), 7, ("random-days", "optimal-switchback")),
)
#: the off-target pairs' runs are continued to this many times the table's runs (2,000 of 400)
CONTINUE_FACTOR = 5
SPILLOVER = -0.2  # the example market of docs/simulator.md
#: every design runs its own default estimators (what the live worker publishes), plus these
MAIN_EXTRA = {
    "time-bound": ("dm",),
    "random-days": ("did",),
    "crossover": ("did",),
    "cluster": ("dm@class", "did@class"),
}
SLOW_AA_NAMES = ("hpte", "mc")
NOT_RUN = {
    "trop": "one fit on a 200 x 28 block did not finish within 9 minutes on this machine "
    "(2 shared cores); left out rather than shrunk until it fits",
}

Col = tuple[str, str, str]
SUMMARY_COLS: list[Col] = [
    ("design", "design", "s"),
    ("estimator", "estimator", "s"),
    ("runs", "runs", "d"),
    ("failed", "failed", "d"),
    ("truth", "true effect", ".3f"),
    ("bias", "bias", "+.3f"),
    ("bias_mcse", "MC SE of bias", ".3f"),
    ("mean_se", "mean SE", ".3f"),
    ("emp_sd", "empirical SD", ".3f"),
    ("rmse", "RMSE", ".3f"),
    ("coverage", "coverage", ".3f"),
    ("power", "power", ".3f"),
    ("se_reduction", "SD vs time-bound DID", "+.0%"),
]
AA_COLS: list[Col] = [
    ("design", "design", "s"),
    ("estimator", "estimator", "s"),
    ("runs", "runs", "d"),
    ("failed", "failed", "d"),
    ("bias", "mean estimate", "+.3f"),
    ("mean_se", "mean SE", ".3f"),
    ("emp_sd", "empirical SD", ".3f"),
    ("se_ratio", "mean SE / SD", ".2f"),
    ("power", "type-I error (5%)", ".3f"),
    ("coverage", "coverage of 0", ".3f"),
]
SENS_COLS: list[Col] = [
    ("product_ar_sd", "product_ar_sd", ".2f"),
    ("levels", "levels (units/day)", "s"),
    ("random_days", "random days SD change", "+.0%"),
    ("crossover", "crossover SD change", "+.0%"),
    ("tb_sd", "time-bound DID SD", ".3f"),
]
LIVE_COLS: list[Col] = [
    ("design", "design", "s"),
    ("metric", "metric", "s"),
    ("form", "form", "s"),
    ("estimator", "estimator", "s"),
    ("final", "runs", "d"),
    ("unbounded", "no interval", "d"),
    ("restarted", "restarted", "d"),
    ("bias", "bias", "+.3f"),
    ("mean_se", "mean SE", ".3f"),
    ("emp_sd", "empirical SD", ".3f"),
    ("coverage", "95% interval coverage", ".3f"),
    ("coverage_mcse", "MC SE", ".3f"),
    ("cs_ever_missed", "CS ever missed", ".3f"),
]
LIVE_METRIC_COLS: list[Col] = [
    ("metric", "metric", "s"),
    ("form", "form", "s"),
    ("experiments", "experiments", "d"),
    ("coverage_all", "coverage, all estimators", ".3f"),
    ("intervals_all", "intervals", "d"),
    ("coverage_primary", "coverage, primary", ".3f"),
    ("intervals_primary", "intervals", "d"),
    ("unbounded", "no relative interval", "d"),
    ("cs_ever_missed_all", "CS ever missed, all", ".3f"),
    ("cs_ever_missed_primary", "CS ever missed, primary", ".3f"),
]
SPILL_WORKER_COLS: list[Col] = [
    ("design", "design", "s"),
    ("contrast", "contrast", "s"),
    ("runs", "runs", "d"),
    ("published", "published", "d"),
    ("truth", "truth", "+.2f"),
    ("bias", "bias", "+.3f"),
    ("mean_se", "mean SE", ".3f"),
    ("emp_sd", "empirical SD", ".3f"),
    ("coverage", "coverage", ".3f"),
    ("coverage_mcse", "MC SE", ".3f"),
]
CONSERVATIVE_COLS: list[Col] = [
    ("case", "design", "s"),
    ("arm", "market", "s"),
    ("estimator", "estimator", "s"),
    ("runs", "runs", "d"),
    ("mean_se", "mean SE", ".3f"),
    ("emp_sd", "empirical SD", ".3f"),
    ("se_ratio", "SE / SD", ".2f"),
    ("coverage", "coverage", ".3f"),
]

#: the studies' saved files the page quotes
CONSERVATIVE_SE = "conservative-se.csv"  # lab/studies/conservative_se.py's table
CLUSTER_FE = "cluster-fe-variance.csv"  # lab/studies/cluster_fe_variance.py's
SDID_SUBDAILY = {"P1D": "sdid-subdaily-p1d.csv", "PT4H": "sdid-subdaily-pt4h.csv"}
DIFP_AA = "validation-difp_aa.json"
DM_TIMEBOUND = "validation-dm-timebound.json"
LIVE_SUMMARY, LIVE_RESULT, LIVE_RUNS = (
    "live-coverage.csv",
    "live-coverage.json",
    "live-coverage-runs.csv",
)
SPILL_WORKER = "validation-spillover-worker.csv"
SPILL_CONTINUED = "validation-spillover-continued.csv"
CONDITIONAL = "spillover-random-days-conditional.json"

#: causes established by a dedicated study, keyed by (design, estimator): the study's figures
#: file and the cause's name in findings.md.j2; they replace "cause not established" in the
#: findings when that file is present
KNOWN_CAUSES = {
    ("time-bound", "difp"): (DIFP_AA, "difp"),
    ("time-bound", "dm"): (DM_TIMEBOUND, "dm"),
}

#: what the cluster design's fe is published as, in live_coverage.plan_texts' form
CLUSTER_FE_PLAN = 'fe {"cluster": "class_period"}'
#: the worker path the conditional study's figures must be measured on (its WORKER_PATH)
CONDITIONAL_PATH = "levels netted out (analysis.spillover.past_levels)"
#: finding 3's rows of the spillover worker study: the worker's path, and its ablations
RD = "random-days"
RD_RAW = "random-days (raw outcomes)"
RD_PAST = "random-days (past mean, not net of effects)"
RD_UNSCALED = "random-days (residuals unscaled)"
SPILL_CONTRASTS = ("direct", "spillover_control:any", "spillover_treated:any")
Z = 1.959964


def iso(period: timedelta) -> str:
    hours = int(period // timedelta(hours=1))
    return "P1D" if hours == 24 else f"PT{hours}H"


def section(template: str, ctx: Mapping[str, Any], trace: list[str] | None = None) -> str:
    """One section of the page: ``validation_page/TEMPLATE`` filled from ``ctx``."""
    return render_text(f"validation_page/{template}", dict(ctx), trace)


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return df.to_dict("records")  # type: ignore[return-value]


# --------------------------------------------------------------------------- the target
def off_reasons(r: Any) -> dict[str, Any] | None:
    """Why a summary row is off the target (93-97% coverage, bias within 2 MC SE): its
    coverage and bias when they are off (None when neither is)."""
    cov = float(r.coverage)
    bias, mcse = float(r.bias), float(r.bias_mcse)
    out = {
        "coverage": None if 0.93 <= cov <= 0.97 else cov,
        "bias": bias if mcse > 0 and abs(bias) > 2 * mcse else None,
        "bias_in_mcse": abs(bias) / mcse if mcse > 0 else math.nan,
    }
    return out if out["coverage"] is not None or out["bias"] is not None else None


def off_target_pairs(
    tab: pd.DataFrame, published: set[tuple[str, str]] | None = None
) -> list[tuple[str, str]]:
    """(design label, estimator) of the published rows off the target."""
    return [
        (str(r.design), str(r.estimator))
        for r in tab.itertuples()
        if (published is None or (str(r.design).split(" ")[0], str(r.estimator)) in published)
        and off_reasons(r)
    ]


def published_main(main_tab: pd.DataFrame) -> set[tuple[str, str]]:
    """The main table's pairs the worker publishes (the extras run beside them left out)."""
    extras = {(d, e) for d, es in MAIN_EXTRA.items() for e in es}
    return {(str(r.design), str(r.estimator)) for r in main_tab.itertuples()} - extras


def off_target(
    tab: pd.DataFrame,
    published: set[tuple[str, str]] | None = None,
    continued: pd.DataFrame | None = None,
) -> list[dict[str, Any]]:
    """The published pairs outside the 93-97% coverage band or with a bias beyond 2 MC SE,
    with the figures over the runs continued when there are (macros.md.j2's off_target)."""
    more = {}
    if continued is not None and not continued.empty:
        more = {(str(r.design), str(r.estimator)): r for r in continued.itertuples()}
    out = []
    for r in tab.itertuples():
        base = str(r.design).split(" ")[0]
        if published is not None and (base, str(r.estimator)) not in published:
            continue
        bad = off_reasons(r)
        if bad:
            c = more.get((str(r.design), str(r.estimator)))
            out.append(
                {
                    "design": str(r.design),
                    "estimator": str(r.estimator),
                    "off": bad,
                    "se_sd": float(r.mean_se) / float(r.emp_sd)
                    if float(r.emp_sd) > 0
                    else math.nan,
                    "continued": None
                    if c is None
                    else {
                        "runs": int(c.runs),
                        "coverage": float(c.coverage),
                        "bias": float(c.bias),
                        "bias_mcse": float(c.bias_mcse),
                        "se_ratio": float(c.se_ratio),
                        "off": off_reasons(c),
                    },
                }
            )
    return out


# --------------------------------------------------------------------------- sections
def findings(aa_tab: pd.DataFrame, main_tab: pd.DataFrame, figures: Path | None) -> dict:
    """What the A/A table says about individual estimators (findings.md.j2)."""
    a = aa_tab.set_index(["design", "estimator"])
    variance = []
    for base in ("did", "sdid"):
        if ("time-bound", base) in a.index and ("time-bound", f"{base}:jackknife") in a.index:
            d, j = a.loc[("time-bound", base)], a.loc[("time-bound", f"{base}:jackknife")]
            variance.append(
                {
                    "base": base,
                    "placebo": bool(d["se_ratio"] > 1.5 * j["se_ratio"]),
                    "d": d.to_dict(),
                    "j": j.to_dict(),
                }
            )
    sc = None
    if ("time-bound", "sc") in a.index and a.loc[("time-bound", "sc"), "se_ratio"] > 1.5:
        sc = a.loc[("time-bound", "sc")].to_dict()
    biased = []
    for (design, est), r in a.iterrows():
        n = int(r["runs"]) - int(r["failed"])
        mcse = float(r["emp_sd"]) / math.sqrt(n) if n > 1 else math.nan
        if n >= 20 and mcse > 0 and abs(float(r["bias"])) > 3 * mcse:
            known = KNOWN_CAUSES.get((str(design), str(est)))
            cause, facts = None, {}
            if known and figures is not None and (figures / known[0]).exists():
                cause, facts = known[1], json.loads((figures / known[0]).read_text())
            biased.append(
                {
                    "design": str(design),
                    "estimator": str(est),
                    "bias": float(r["bias"]),
                    "in_mcse": abs(float(r["bias"])) / mcse,
                    "n": n,
                    "cause": cause,
                    "facts": facts,
                }
            )
    m = main_tab.set_index(["design", "estimator"])
    ht = None
    if ("random-days", "ht") in m.index and ("random-days", "dm") in m.index:
        ht = {
            "ht": m.loc[("random-days", "ht")].to_dict(),
            "dm": m.loc[("random-days", "dm")].to_dict(),
        }
    return {"variance": variance, "sc": sc, "biased": biased, "ht": ht}


def difp(figures: Path) -> dict[str, Any] | None:
    """The A/A subsection on difp's bias, from lab/studies/difp_aa.py's figures."""
    path = figures / DIFP_AA
    if not path.exists():
        return None
    d = json.loads(path.read_text())
    return {
        "d": d,
        "rep": d["reproduction"],
        "imp": d["implementation"],
        "rr": d["rerandomisation"],
        "mech": d["mechanism"],
        "rem": d["remedies"],
        "level": d["mechanism"]["lvl_tr"]["mean"],
        "SEED": SEED,
    }


def has_sequence(rows: pd.DataFrame) -> pd.Series:
    """Rows of the live study whose estimate carries an anytime-valid sequence."""
    if "metric" not in rows.columns:
        return pd.Series(True, index=rows.index)
    no_relative = rows["estimator"].isin(["ht", "did", "sdid"]) & (rows["form"] == "relative")
    return (rows["metric"] != "elasticity") & ~no_relative


def live_measured_class_period(r: Mapping[str, Any]) -> bool:
    """Whether a saved live run measured the cluster design's fe as published now (runs from
    before live_coverage saved its plans did not)."""
    return CLUSTER_FE_PLAN in (r.get("plans") or {}).get("cluster", [])


def live(figures: Path) -> dict[str, Any]:
    """The live coverage study's figures (python -m streams.live.coverage); ``ran`` False when
    it has not run."""
    summary_path, result_path = figures / LIVE_SUMMARY, figures / LIVE_RESULT
    if not (summary_path.exists() and result_path.exists()):
        return {"ran": False}
    summary = pd.read_csv(summary_path)
    summary["primary"] = summary["primary"].astype(bool)
    r = json.loads(result_path.read_text())
    if "metric" not in summary.columns:  # a study from before metrics: units, absolute
        summary = summary.assign(metric="units", form="absolute", unbounded=0)
    metric_order = {
        m: i for i, m in enumerate(("units", "revenue", "profit", "price", "elasticity"))
    }
    ordered = summary[summary["primary"]].sort_values(
        ["design", "metric", "form"], key=lambda c: c.map(metric_order) if c.name == "metric" else c
    )
    per_metric = pd.DataFrame(r.get("by_metric") or [])
    runs_path = figures / LIVE_RUNS
    if runs_path.exists() and len(per_metric):
        # a "CS ever missed" share counts only rows that have a sequence: the elasticity has
        # none, and estimators without arm means (ht, did, sdid) have no relative one
        rr_all = pd.read_csv(runs_path)
        with_seq = rr_all[has_sequence(rr_all)]
        r["cs_ever_missed_all"] = float(with_seq["cs_ever_missed"].mean())
        r["cs_ever_missed_primary"] = float(
            with_seq.loc[with_seq["primary"].astype(bool), "cs_ever_missed"].mean()
        )
        for i, row in per_metric.iterrows():
            g = with_seq[(with_seq["metric"] == row["metric"]) & (with_seq["form"] == row["form"])]
            prim = g[g["primary"].astype(bool)]
            per_metric.loc[i, "cs_ever_missed_all"] = (
                g["cs_ever_missed"].mean() if len(g) else math.nan
            )
            per_metric.loc[i, "cs_ever_missed_primary"] = (
                prim["cs_ever_missed"].mean() if len(prim) else math.nan
            )
        ordered = ordered.assign(
            cs_ever_missed=ordered["cs_ever_missed"].where(has_sequence(ordered), math.nan)
        )
    # per design, the primaries whose sequences missed more often than the pooled target
    over = ordered[ordered["cs_ever_missed"] > 0.05]
    over_cs = [
        {
            "design": d,
            "estimators": ", ".join(sorted(set(g["estimator"]))),
            "low": g["cs_ever_missed"].min(),
            "high": g["cs_ever_missed"].max(),
        }
        for d, g in over.groupby("design")
    ]
    by_restart = None
    if runs_path.exists():
        rr = pd.read_csv(runs_path)
        rr = rr[rr["covered"].notna()]
        cov = rr.groupby("restarted")["covered"].agg(lambda c: c.astype(bool).mean())
        n = rr.groupby("restarted").size()
        if True in cov.index and False in cov.index:
            by_restart = {"cov": float(cov[True]), "n": int(n[True]),
                          "cov_on": float(cov[False]), "n_on": int(n[False])}  # fmt: skip
    hourly = r.get("hourly") or {}
    return {
        "ran": True,
        "r": r,
        "quick": bool(r.get("quick")),
        "before_class_period": not live_measured_class_period(r),
        "lost": r.get("units_mismatch") or [],
        "hourly": hourly if hourly.get("experiments") else None,
        "over_cs": over_cs,
        "mcse_all": math.sqrt(0.95 * 0.05 / r["intervals_all"]),
        "by_restart": by_restart,
        "per_metric": records(per_metric),
        "ordered": records(ordered),
        "row_mcse": math.sqrt(0.05 * 0.95 / max(1, int(ordered["final"].max()))),
        "LIVE_COLS": LIVE_COLS,
        "LIVE_METRIC_COLS": LIVE_METRIC_COLS,
    }


def bias_mcse(r: Mapping[str, Any]) -> float:
    """A worker-study row's bias MC SE: its SD over the runs that published."""
    return float(r["emp_sd"] / math.sqrt(r["published"]))


def on_target(r: Mapping[str, Any]) -> bool:
    """Coverage in 93-97% and the bias within 2 MC SE of zero (issue #27's target)."""
    return bool(0.93 <= r["coverage"] <= 0.97 and abs(r["bias"]) <= 2.0 * bias_mcse(r))


def spillover_worker(figures: Path) -> dict[str, Any]:
    """lab/studies/spillover_worker.py's table; ``ran`` False when it has not run."""
    path = figures / SPILL_WORKER
    if not path.exists():
        return {"ran": False}
    t = pd.read_csv(path)
    g = t[t["design"] == "cluster (withheld)"].set_index("contrast")
    cluster = None
    if "direct" in g.index:
        cluster = [
            {"contrast": c, "ratio": r["mean_se"] / r["emp_sd"], "coverage": r["coverage"],
             "published": int(r["published"])}
            for c, r in g.iterrows()
            if r["published"] >= 20 and not on_target(r)
        ]  # fmt: skip
    return {
        "ran": True,
        "rows": records(t),
        "cols": SPILL_WORKER_COLS,
        "minutes": float(t["minutes"].iloc[0]) if "minutes" in t else math.nan,
        "cluster_missing": cluster is None,
        "cluster_off": cluster or [],
    }


def spillover_continued(figures: Path, table: pd.DataFrame) -> dict[str, Any] | None:
    """Finding 3's random-days runs continued (python -m lab.studies spillover-continued): the
    paragraph's figures and ``settled``, whether the direct effect covers within 2 MC SE of
    95% over the runs after the table's (None: not run, or its first runs are not the
    table's)."""
    path = figures / SPILL_CONTINUED
    if not path.exists():
        return None
    rows = pd.read_csv(path)
    runs = rows["seed"].nunique()
    first = int(table.loc[("random-days", "direct"), "runs"])
    lines, off, fine = [], [], []
    start = rows["seed"].min() + first
    for contrast, g in rows.groupby("contrast", sort=False):
        ok = g[g["published"].astype(bool)]
        head, later = ok[ok["seed"] < start], ok[ok["seed"] >= start]
        same = abs(
            head["covered"].astype(bool).mean() - table.loc[("random-days", contrast), "coverage"]
        )
        if len(head) != int(table.loc[("random-days", contrast), "published"]) or same > 1e-9:
            print(
                f"warning: {path.name} left out of validation.md: its first {first} runs of "
                f"{contrast} do not reproduce the table's (rerun --continue-to)",
                file=sys.stderr,
            )
            return None
        cells = []
        for part in (ok, later):
            err = part["effect"] - part["truth"]
            sd = err.std(ddof=1)
            cells.append({"n": len(part), "bias": err.mean(), "mcse": sd / math.sqrt(len(part)),
                          "ratio": part["se"].mean() / sd,
                          "coverage": float(part["covered"].astype(bool).mean())})  # fmt: skip
        # the later runs alone were not chosen for looking off: within 2 MC SE of 95%?
        later_cov = cells[1]["coverage"]
        if abs(later_cov - 0.95) > 2.0 * math.sqrt(0.95 * 0.05 / len(later)):
            off.append({"contrast": str(contrast), "coverage": later_cov,
                        "inside": 0.93 <= later_cov <= 0.97})  # fmt: skip
        else:
            fine.append(str(contrast))
        lines.append({"contrast": str(contrast), "cells": cells})
    return {
        "runs": runs,
        "first": first,
        "later_runs": runs - first,
        "minutes": float(rows["minutes"].iloc[0]),
        "lines": lines,
        "off": off,
        "fine": fine,
        "settled": "direct" in fine,
    }


def conditional_figures(figures: Path) -> dict[str, Any] | None:
    """lab/studies/spillover_conditional.py's figures, if it has run."""
    path = figures / CONDITIONAL
    return json.loads(path.read_text()) if path.exists() else None


def conditional_open(figures: Path) -> list[dict[str, Any]]:
    """What the conditional study of the present path still finds off: biases beyond 2 MC SE
    and SEs below 0.97 of the spread (none when nothing, or not run on this path)."""
    d = conditional_figures(figures)
    if d is None or d.get("path") != CONDITIONAL_PATH or "contrasts" not in d:
        return []
    said = []
    for name, c in d["contrasts"].items():
        if abs(c["bias"]) > 2.0 * c["bias_mcse"]:
            said.append({"name": name, "what": "bias", "bias": c["bias"], "mcse": c["bias_mcse"]})
        if c["se_over_total_sd"] < 0.97:
            said.append({"name": name, "what": "se", "ratio": c["se_over_total_sd"]})
    return said


def missed(row: Mapping[str, Any]) -> tuple[float, float, float]:
    """A row's mean SE / SD, the share of the variance that SE misses, and that share's MC SE
    (the SD's MC SE over n runs is about SD / sqrt(2 (n - 1)): the share moves by 2 r^2 over
    sqrt(2 (n - 1)))."""
    ratio = float(row["mean_se"] / row["emp_sd"])
    return ratio, 1.0 - ratio**2, 2.0 * ratio * ratio / math.sqrt(2.0 * (row["published"] - 1))


def hajek_shared_bias(
    figures: Path, raw_ctrl: Mapping[str, Any], raw_dir: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The conditional study's exact part: how much of a raw-outcome estimate's variance is
    the bias its periods share, against what the raw SE missed in the worker study."""
    d = conditional_figures(figures)
    if d is None or "hajek" not in d:
        return None
    h = d["hajek"]
    ex = {k: v["exact"] for k, v in h["contrasts"].items()}
    mc = {k: v["monte_carlo"] for k, v in h["contrasts"].items()}
    ctrl, direct, trt = (
        ex[k] for k in (SPILL_CONTRASTS[1], SPILL_CONTRASTS[0], SPILL_CONTRASTS[2])
    )
    ratio, miss, miss_mcse = missed(raw_ctrl)
    d_ratio, d_missed, d_mcse = missed(raw_dir)
    share = ctrl["between_share"]
    return {
        "h": h, "mc": mc, "ctrl": ctrl, "direct": direct, "trt": trt,
        "ratio": ratio, "missed": miss, "missed_mcse": miss_mcse,
        "low": miss - 2 * miss_mcse, "high": miss + 2 * miss_mcse,
        "of_missed": share / miss if miss > 0 else math.nan,
        "of_high": share / (miss + 2 * miss_mcse) if miss > 0 else math.nan,
        "of_low": share / (miss - 2 * miss_mcse) if miss - 2 * miss_mcse > 0 else math.nan,
        "d_ratio": d_ratio, "d_missed": d_missed, "d_mcse": d_mcse,
    }  # fmt: skip


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def spillover_conditional(figures: Path) -> dict[str, Any] | None:
    """The conditional study's worker-path part: within a world, the SE against the design's
    own spread; across worlds, what the SE cannot see; its biases beyond 2 MC SE with the
    coverage they and the SE's shortfall leave."""
    d = conditional_figures(figures)
    if d is None or "contrasts" not in d:
        return None
    if d.get("path") != CONDITIONAL_PATH:
        return {"stale": True}
    off = [
        {**c, "name": name, "of_se": abs(c["bias"]) / c["mean_se"],
         "implied": _phi(Z * r - b) - _phi(-Z * r - b)}
        for name, c in d["contrasts"].items()
        if abs(c["bias"]) > 2.0 * c["bias_mcse"]
        for r, b in [(c["se_over_total_sd"], abs(c["bias"]) / c["total_sd"])]
    ]  # fmt: skip
    short = [
        {"name": name, "ratio": c["se_over_total_sd"]}
        for name, c in d["contrasts"].items()
        if c["se_over_total_sd"] < 0.97
    ]
    return {
        "stale": False,
        "d": d,
        "rows": [{"name": name, **c} for name, c in d["contrasts"].items()],
        "off": off,
        "short": short,
    }


def finding_3(figures: Path, t: pd.DataFrame) -> dict[str, Any]:
    """Finding 3: the spillover worker study's random-days rows and their ablations, and the
    conditional study's parts; ``complete`` False when the table predates them."""
    if any(
        (d, c) not in t.index for d in (RD, RD_RAW, RD_PAST, RD_UNSCALED) for c in SPILL_CONTRASTS
    ):
        return {"complete": False}
    rows = {
        d: {c: t.loc[(d, c)].to_dict() for c in SPILL_CONTRASTS}
        for d in (RD, RD_RAW, RD_PAST, RD_UNSCALED)
    }
    off = [c for c in SPILL_CONTRASTS if not on_target(rows[RD][c])]
    raw_ctrl, raw_dir = rows[RD_RAW]["spillover_control:any"], rows[RD_RAW]["direct"]
    past_off = [
        {"contrast": c, "bias": r["bias"], "mcse": bias_mcse(r)}
        for c, r in rows[RD_PAST].items()
        if abs(r["bias"]) > 2.0 * bias_mcse(r)
    ]
    return {
        "complete": True,
        "runs": int(rows[RD]["direct"]["runs"]),
        "off": off,
        "still": conditional_open(figures),
        "table": [
            {
                "design": d,
                "contrast": c,
                **r,
                "mcse": bias_mcse(r),
                "ratio": r["mean_se"] / r["emp_sd"],
            }
            for d in (RD_RAW, RD_PAST, RD)
            for c, r in rows[d].items()
        ],  # fmt: skip
        "raw_ctrl": raw_ctrl,
        "new_dir": rows[RD]["direct"],
        "old_dir": rows[RD_UNSCALED]["direct"],
        "narrower": raw_dir["mean_se"] / rows[RD]["direct"]["mean_se"],
        "past_off": past_off,
        "hajek": hajek_shared_bias(figures, raw_ctrl, raw_dir),
        "continued": spillover_continued(figures, t),
        "conditional": spillover_conditional(figures),
    }


def finding_3_text(figures: Path, t: pd.DataFrame, trace: list[str] | None = None) -> str:
    """Finding 3 rendered, with its parts from the conditional and continued studies."""
    ctx = finding_3(figures, t)
    if ctx["complete"]:
        ctx["hajek_text"] = rendered("hajek_shared_bias.md.j2", ctx["hajek"], trace)
        ctx["continued_text"] = rendered("spillover_continued.md.j2", ctx["continued"], trace)
        ctx["conditional_text"] = rendered("spillover_conditional.md.j2", ctx["conditional"], trace)
    return section("finding_3.md.j2", ctx, trace)


def live_row(figures: Path, design: str, estimator: str) -> dict[str, float] | None:
    """Bias, its MC SE and the share of sequences that ever missed, of one live pair (units)."""
    path = figures / LIVE_RUNS
    if not path.exists():
        return None
    r = pd.read_csv(path)
    g = r[
        (r["design"] == design)
        & (r["estimator"] == estimator)
        & (r["metric"] == "units")
        & (r["form"] == "absolute")
    ]
    if len(g) < 2:
        return None
    err = g["effect"] - g["truth"]
    return {
        "n": len(g),
        "bias": float(err.mean()),
        "mcse": float(err.std(ddof=1) / math.sqrt(len(g))),
        "coverage": float(g["covered"].astype(bool).mean()),
        "cs_missed": float(g["cs_ever_missed"].astype(bool).mean()),
    }


def open_findings(figures: Path, trace: list[str] | None = None) -> dict[str, Any]:
    """#27's four findings, each with its cause, from the studies' own figures files: the
    ported studies' own sections, finding 3's and finding 4's figures."""
    fragments = [fragment(s, figures) for s in (ht_random_days.STUDY, dm_timebound.STUDY)]
    sw = figures / SPILL_WORKER
    f3 = None
    if sw.exists():
        f3 = finding_3_text(figures, pd.read_csv(sw).set_index(["design", "contrast"]), trace)
    trig = live_row(figures, "triggered", "dm")
    cl_fe, cl_dm = live_row(figures, "cluster", "fe"), live_row(figures, "cluster", "dm")
    live_json = figures / LIVE_RESULT
    fe_now = live_json.exists() and live_measured_class_period(json.loads(live_json.read_text()))
    f4 = None
    if trig and cl_fe and cl_dm:
        f4 = {"trig": trig, "cl_fe": cl_fe, "cl_dm": cl_dm, "fe_now": fe_now}
    return {"fragments": [f for f in fragments if f is not None], "finding_3": f3, "finding_4": f4}


def sub_daily(results: Mapping[str, Any]) -> dict[str, Any] | None:
    """The sub-daily table: the designs at periods shorter than a day."""
    sub = results.get("sub_tab")
    if not isinstance(sub, pd.DataFrame) or sub.empty:
        return None
    parts = [
        {"designs": designs, "iso": iso(period), "days": days,
         "periods": days * 24 // int(period // timedelta(hours=1))}
        for period, days, designs in SUB_DAILY
    ]  # fmt: skip
    return {
        "parts": parts,
        "rows": records(sub),
        "cols": SUMMARY_COLS[:-1],
        "off": off_target(sub, continued=results.get("cont_tab")),
    }


def continued(results: Mapping[str, Any]) -> dict[str, Any] | None:
    """The off-target pairs' designs with their runs continued (the study's second stage)."""
    cont = results.get("cont_tab")
    if not isinstance(cont, pd.DataFrame) or cont.empty:
        return None
    runs = int(results["runs"])
    # chance that a calibrated pair's coverage over `runs` falls outside 93-97% (exact binomial;
    # the band is inclusive; coverage alone, not the bias test)
    lo, hi = math.ceil(0.93 * runs - 1e-9), math.floor(0.97 * runs + 1e-9)
    p_out = 1.0 - float(binom.cdf(hi, runs, 0.95) - binom.cdf(lo - 1, runs, 0.95))
    main_tab, sub = results.get("main_tab"), results.get("sub_tab")
    pairs = 0
    if isinstance(main_tab, pd.DataFrame):
        pairs += len(published_main(main_tab))
    if isinstance(sub, pd.DataFrame):
        pairs += len(sub)
    return {
        "runs": runs,
        "factor": int(results.get("continue_factor", CONTINUE_FACTOR)),
        "mcse": math.sqrt(0.95 * 0.05 / runs),
        "p_out": p_out,
        "pairs": pairs,
        "rows": records(cont),
        "cols": SUMMARY_COLS[:-2],
        "off": off_target(cont),
    }


def reproduces(
    tab: object, design: str, estimator: str, row: Mapping[str, Any], cols: tuple[str, ...]
) -> bool | None:
    """Whether a study's saved ``row`` is the table's own (design, estimator) row, the same
    runs giving the same ``cols``; None when the table has no such row over as many runs."""
    if not isinstance(tab, pd.DataFrame) or tab.empty:
        return None
    own = tab[(tab["design"] == design) & (tab["estimator"] == estimator)]
    if not len(own) or int(own["runs"].iloc[0]) != int(row["runs"]):
        return None
    return all(abs(float(own[c].iloc[0]) - float(row[c])) < 1e-9 for c in cols)


def _all_hold(checks: Iterable[bool | None]) -> bool:
    done = [c for c in checks if c is not None]
    return bool(done) and all(done)


def cluster_fe_published(figures: Path, results: Mapping[str, Any]) -> dict[str, Any] | None:
    """lab/studies/cluster_fe_variance.py: the cluster fe's class x period variance,
    published, against the class clusters published before."""
    path = figures / CLUSTER_FE
    if not path.exists():
        return None
    t = pd.read_csv(path).set_index(["period", "variance"])
    before, pub = "fe, class clusters (published before)", "fe, class x period clusters (published)"
    third = "class effects removed, class x period clusters"
    try:
        rows = {
            p: (t.loc[(p, before)], t.loc[(p, pub)], t.loc[(p, third)]) for p in ("P1D", "PT4H")
        }
    except KeyError:
        return {"stale": True}
    change = max(abs(float(e["mean_se"]) / float(c["mean_se"]) - 1.0) for _, c, e in rows.values())

    # its published rows must be the tables' own runs and estimator (same coverage and SE)
    def tables_are(which: int) -> bool:
        """Whether the tables' cluster fe rows (P1D, PT4H) are the study's rows ``which``
        (0 before, 1 published), where the tables have them over as many runs."""
        return _all_hold(
            (
                reproduces(results.get("main_tab"), "cluster", "fe", rows["P1D"][which], ("mean_se",)),
                reproduces(results.get("sub_tab"), "cluster PT4H", "fe", rows["PT4H"][which], ("mean_se",)),
            )
        )  # fmt: skip

    return {
        "stale": False,
        "n": int(rows["PT4H"][1]["runs"]),
        "runs_are": "published" if tables_are(1) else "before" if tables_are(0) else "unchecked",
        "periods": [
            {"period": p, "before": a.to_dict(), "published": c.to_dict()}
            for p, (a, c, _) in rows.items()
        ],
        "change": change,
    }


def conservative_se(
    figures: Path, results: Mapping[str, Any], trace: list[str] | None = None
) -> dict[str, Any] | None:
    """Why the crossover's and the cluster design's clustered SEs run large, from the saved
    arms of lab/studies/conservative_se.py (every statement computed from them)."""
    path = figures / CONSERVATIVE_SE
    if not path.exists():
        return None
    tab = pd.read_csv(path)
    tab = tab.assign(case=tab["design"] + " " + tab["period"])
    cl, xo, equal = "cluster PT4H", "crossover P1D", "equal lifts"

    def row(case: str, arm: str, est: str) -> pd.Series | None:
        hit = tab[(tab["case"] == case) & (tab["arm"] == arm) & (tab["estimator"] == est)]
        return hit.iloc[0] if len(hit) else None

    cl_def, cl_eq, xo_def = (
        row(cl, "defaults", "fe"),
        row(cl, equal, "fe"),
        row(xo, "defaults", "crossover"),
    )
    if cl_def is None or cl_eq is None or xo_def is None:
        return None
    # the defaults arm must be the tables' own runs
    main_tab, sub = results.get("main_tab"), results.get("sub_tab")
    reproduced = _all_hold(
        (
            reproduces(main_tab, "crossover", "crossover", xo_def, ("coverage", "mean_se")),
            # the tables' cluster `fe` is clustered by class x period now: the same runs give
            # the same estimates, so the same empirical SD
            reproduces(sub, cl, "fe", cl_def, ("emp_sd",)),
        )
    )
    xo_arms = tab[(tab["case"] == xo) & (tab["estimator"] == "crossover")].set_index("arm")
    excess = float(xo_def["se_ratio"]) - 1.0
    dm_width = None
    if isinstance(sub, pd.DataFrame) and not sub.empty:
        se = sub[sub["design"] == cl].set_index("estimator")
        if {"fe", "dm"} <= set(se.index):
            dm_width = {
                "coverage": float(se.loc["dm", "coverage"]),
                "ratio": float(se.loc["dm", "mean_se"] / se.loc["fe", "mean_se"]),
            }
    fe = cluster_fe_published(figures, results)
    return {
        "reproduced": reproduced,
        "cl_def": cl_def.to_dict(),
        "cl_eq": cl_eq.to_dict(),
        "xo_def": xo_def.to_dict(),
        "lifts_explain": abs(float(cl_eq["se_ratio"]) - 1.0) <= 0.03,
        "best_arm": str(xo_arms["se_ratio"].idxmin()),
        "removed": (excess - (float(xo_arms["se_ratio"].min()) - 1.0)) / excess
        if excess > 0
        else 0.0,
        "rows": records(tab),
        "cols": CONSERVATIVE_COLS,
        "dm_width": dm_width,
        "cluster_fe": "" if fe is None else section("cluster_fe_published.md.j2", fe, trace).rstrip("\n"),
    }  # fmt: skip


def sdid_subdaily(figures: Path, sub: pd.DataFrame | None = None) -> dict[str, Any] | None:
    """Why sdid under-covers on time-bound PT4H: its default variance (the jackknife, weights
    held fixed) against the bootstrap (weights re-estimated), from the saved study runs."""
    rows: list[dict[str, Any]] = []
    study_se: dict[str, float] = {}
    for period, name in SDID_SUBDAILY.items():
        path = figures / name
        if not path.exists():
            return None
        runs = pd.read_csv(path, keep_default_na=False, na_values=[""])
        # the plain `sdid` rows ran with the default of their day: label them by the method
        # they used, and drop them where that method also ran by name on the same runs
        plain = runs["estimator"] == "sdid"
        methods = runs.loc[plain, "se_method"].dropna().unique()
        if len(methods) == 1:
            named = f"sdid:{methods[0]}"
            if named in set(runs["estimator"]):
                runs = runs[~plain]
            else:
                runs = runs.assign(estimator=runs["estimator"].where(~plain, named))
        tab = summarise(runs)
        if period == "PT4H":
            study_se = {str(r.estimator): float(r.mean_se) for r in tab.itertuples()}
        rows += [
            {"period": period, "estimator": str(r.estimator), "runs": int(r.runs),
             "mean_se": float(r.mean_se), "emp_sd": float(r.emp_sd),
             "se_sd": float(r.mean_se) / float(r.emp_sd), "coverage": float(r.coverage)}
            for r in tab.itertuples()
            if str(r.estimator).startswith(("sdid", "did"))
        ]  # fmt: skip
    table_is = None
    if sub is not None and not sub.empty:
        own = sub[(sub["design"] == "time-bound PT4H") & (sub["estimator"] == "sdid")]
        if len(own):
            se = float(own["mean_se"].iloc[0])
            which = [
                m
                for m in ("bootstrap", "jackknife")
                if abs(study_se.get(f"sdid:{m}", -1) - se) < 1e-9
            ]
            table_is = which[0] if which else None
    return {"rows": rows, "table_is": table_is}


def rendered(template: str, ctx: Mapping[str, Any] | None, trace: list[str] | None = None) -> str:
    """A section, or nothing when its context is None (its study has not run)."""
    return "" if ctx is None else section(template, ctx, trace)


def sub_daily_text(
    results: Mapping[str, Any], figures: Path, trace: list[str] | None = None
) -> str:
    """The sub-daily section with what follows it: sdid's cause, the continued pairs and the
    conservative SEs' cause (each empty when its saved file is missing)."""
    ctx = sub_daily(results)
    if ctx is None:
        return ""
    return section(
        "sub_daily_section.md.j2",
        {
            **ctx,
            "sdid": rendered("sdid_subdaily.md.j2", sdid_subdaily(figures, results.get("sub_tab")), trace),
            "continued": rendered("continued_section.md.j2", continued(results), trace),
            "conservative": rendered("conservative_se.md.j2", conservative_se(figures, results, trace), trace),
        },
        trace,
    )  # fmt: skip


# --------------------------------------------------------------------------- the page
def claims(results: Mapping[str, Any]) -> dict[str, Any]:
    """The three claims, the magnitudes' reading and the spillover comparison's figures."""
    main_tab: pd.DataFrame = results["main_tab"]
    spill_tab: pd.DataFrame = results["spill_tab"]
    sens: pd.DataFrame = results["sens"]
    idx = main_tab.set_index(["design", "estimator"])
    primary = {str(r.design): str(r.estimator) for r in main_tab.itertuples() if r.primary}

    def red(design: str, est: str | None = None, col: str = "se_reduction") -> float:
        return float(idx.loc[(design, est or primary[design]), col])

    s_idx = spill_tab.set_index(["design", "estimator"])
    bias_rd = float(s_idx.loc[("random-days", "dm"), "bias"])
    bias_cl = float(s_idx.loc[("cluster", "dm"), "bias"])
    sens_by = {(round(float(r.product_ar_sd), 2), r.levels): r for r in sens.itertuples()}
    lo_row, hi_row = sens_by.get((0.05, "20-50")), sens_by.get((0.2, "20-50"))
    narrow = next((r for key, r in sens_by.items() if key[1] == "30-40"), None)
    nan = float("nan")
    return {
        "primary": primary,
        "rd_claim": red("random-days"),
        "co_claim": red("crossover"),
        "rd_reported": red("random-days", col="reported_se_reduction"),
        "co_reported": red("crossover", col="reported_se_reduction"),
        "rd_did": red("random-days", "did"),
        "co_did": red("crossover", "did"),
        "rd_fe": red("random-days", "fe"),
        "rd_dm": red("random-days", "dm"),  # the sensitivity runs dm on random days
        "cl_red": red("cluster"),
        "cl_class_bias": red("cluster", "dm@class", col="bias"),
        "cl_dm_bias": red("cluster", "dm", col="bias"),
        "tb_sd": float(idx.loc[(BASELINE_DESIGN, primary[BASELINE_DESIGN]), "emp_sd"]),
        "bias_rd": bias_rd,
        "bias_cl": bias_cl,
        "bias_cut": 1.0 - abs(bias_cl) / abs(bias_rd),
        "mcse_rd": float(s_idx.loc[("random-days", "dm"), "bias_mcse"]),
        "mcse_cl": float(s_idx.loc[("cluster", "dm"), "bias_mcse"]),
        "sd_cl": float(s_idx.loc[("cluster", "dm"), "emp_sd"]),
        "sd_rd": float(s_idx.loc[("random-days", "dm"), "emp_sd"]),
        "bias_cl_class": float(s_idx.loc[("cluster", "dm@class"), "bias"]),
        "cut": float(results["cut_share"]),
        "sens_tb_lo": lo_row.tb_sd if lo_row else nan,
        "sens_tb_hi": hi_row.tb_sd if hi_row else nan,
        "sens_rd_lo": lo_row.random_days if lo_row else nan,
        "sens_rd_hi": hi_row.random_days if hi_row else nan,
        "sens_rd_narrow": narrow.random_days if narrow else nan,
    }


def page_context(
    results: Mapping[str, Any], figures: Path, trace: list[str] | None = None
) -> dict[str, Any]:
    """validation_page/page.md.j2's variables: the study's saved ``results`` (validation.load's)
    and the sections rendered from the files in ``figures`` (``trace``: every value the
    section templates printed)."""
    aa_tab: pd.DataFrame = results["aa_tab"]
    main_tab: pd.DataFrame = results["main_tab"]
    market = results["market"]
    if not isinstance(market, MarketConfig):
        market = MarketConfig.model_validate(market)
    runs = int(results["runs"])
    lv = live(figures)
    sw = spillover_worker(figures)
    of = open_findings(figures, trace)
    return {
        "k": dict(results),
        "market": market,
        "machine": platform.machine(),
        "python": platform.python_version(),
        "SEED": SEED,
        "DAYS": DAYS,
        "SPILLOVER": SPILLOVER,
        "SLOW_AA": ", ".join(SLOW_AA_NAMES),
        "NOT_RUN": NOT_RUN,
        **claims(results),
        "main_rows": records(main_tab),
        "main_cols": SUMMARY_COLS,
        "main_off": off_target(main_tab, published_main(main_tab), results.get("cont_tab")),
        "sens_rows": records(results["sens"]),
        "sens_cols": SENS_COLS,
        "spill_rows": records(results["spill_tab"]),
        "spill_cols": SUMMARY_COLS[:-1] + [("bias_vs_direct", "bias vs direct effect", "+.3f")],
        "aa_rows": records(aa_tab),
        "aa_cols": AA_COLS,
        "aa_mcse": math.sqrt(0.05 * 0.95 / runs),
        "aa_bad": records(aa_tab[(aa_tab["power"] > 0.10) | (aa_tab["coverage"] < 0.90)]),
        "failures": records(aa_tab[aa_tab["failed"] > 0]),
        "findings": section("findings.md.j2", findings(aa_tab, main_tab, figures), trace).rstrip("\n"),
        "live_section": section("live_section.md.j2", lv, trace),
        "live_arms_section": section("live_arms_section.md.j2", live_arms(figures), trace),
        "spill_worker_section": section("spillover_worker_section.md.j2", sw, trace),
        "sub_daily_section": sub_daily_text(results, figures, trace),
        "difp_section": rendered("difp_aa.md.j2", difp(figures), trace),
        "open_findings": section("open_findings.md.j2", of, trace),
    }  # fmt: skip
