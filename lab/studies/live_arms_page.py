"""docs/validation.md's section on the live coverage study's three-arm ladders
(``python -m streams.live.coverage --only arms``, streams/live/coverage_arms.py): the figures
and verdicts ``validation_page/live_arms_section.md.j2`` prints, read from the study's saved
files only (the tools layer does not import the edge that wrote them)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

RESULT, SUMMARY, RUNS = (
    "live-coverage-arms.json",
    "live-coverage-arms.csv",
    "live-coverage-arms-runs.csv",
)
#: the two-arm batches' summary (python -m streams.live.coverage), for comparison
TWO_ARM_SUMMARY = "live-coverage.csv"
#: a row's mean SE / SD below which the page looks at how its errors are spread
LOW_SE_SD = 0.7
#: how many Monte-Carlo SEs from a target a figure may be and still be called chance
CHANCE_MCSE = 2

Col = tuple[str, str, str]
METRIC_COLS: list[Col] = [
    ("metric", "metric", "s"),
    ("form", "form", "s"),
    ("experiments", "experiments", "d"),
    ("coverage_all", "coverage, all estimators", ".3f"),
    ("intervals_all", "intervals", "d"),
    ("coverage_primary", "coverage, primary", ".3f"),
    ("intervals_primary", "intervals", "d"),
    ("unbounded", "no interval", "d"),
    ("family", "both arms' simultaneous intervals", ".3f"),
    ("families", "families", "d"),
    ("cs_ever_missed", "an arm's CS ever missed", ".3f"),
    ("cs_joint_ever_missed", "either arm's CS ever missed", ".3f"),
]
ARM_COLS: list[Col] = [
    ("design", "design", "s"),
    ("metric", "metric", "s"),
    ("form", "form", "s"),
    ("estimator", "estimator", "s"),
    ("arm", "arm", "s"),
    ("final", "runs", "d"),
    ("unbounded", "no interval", "d"),
    ("truth", "mean truth", "+.3f"),
    ("bias", "bias", "+.3f"),
    ("bias_mcse", "MC SE", ".3f"),
    ("se_sd", "mean SE / SD", ".2f"),
    ("coverage", "95% interval coverage", ".3f"),
    ("sim_coverage", "simultaneous", ".3f"),
    ("cs_ever_missed", "CS ever missed", ".3f"),
]
FAMILY_COLS: list[Col] = [
    ("design", "design", "s"),
    ("metric", "metric", "s"),
    ("estimator", "estimator", "s"),
    ("sim_method", "simultaneous by", "s"),
    ("family_scored", "experiments", "d"),
    ("family", "both simultaneous intervals cover", ".3f"),
    ("own_family", "both own intervals cover", ".3f"),
    ("cs_joint_ever_missed", "either arm's CS ever missed", ".3f"),
    ("cs_joint_relative", "the same, relative", ".3f"),
]
DEMAND_COLS: list[Col] = [
    ("design", "design", "s"),
    ("experiments", "experiments", "d"),
    ("published", "curves at the final look", "d"),
    ("truth_mean", "true optimum (mean)", ".3f"),
    ("truth_range", "range", "s"),
    ("at_top", "optimum at the top", ".2f"),
    ("estimate_mean", "recommended (mean)", ".3f"),
    ("bias", "bias", "+.4f"),
    ("bias_mcse", "MC SE", ".4f"),
    ("coverage", "coverage", ".3f"),
    ("coverage_mcse", "MC SE", ".3f"),
    ("width", "mean width", ".3f"),
    ("at_edge", "at an edge", ".2f"),
]
METRIC_ORDER = ("units", "revenue", "profit", "price")


def verdict(x: float, n: int, low: float, high: float = 1.0) -> dict[str, Any]:
    """Whether the share ``x`` over ``n`` meets the target ``[low, high]``, and if not, how
    many Monte-Carlo SEs (of a share at the nearest end of the target) it lies outside."""
    if not n or not math.isfinite(x):
        return {"met": None, "mcse_away": math.nan, "chance": None}
    edge = low if x < low else high
    p = edge if 0 < edge < 1 else low
    away = max(low - x, x - high, 0.0) / math.sqrt(p * (1 - p) / n)
    return {"met": low <= x <= high, "mcse_away": away, "chance": away <= CHANCE_MCSE}


def _order(frame: pd.DataFrame, arms: list[str]) -> pd.DataFrame:
    rank = {m: i for i, m in enumerate(METRIC_ORDER)}
    keys = {"metric": rank, "arm": {a: i for i, a in enumerate(arms)}}
    cols = [c for c in ("design", "metric", "form", "estimator", "arm") if c in frame]
    return frame.sort_values(cols, key=lambda c: c.map(keys[c.name]) if c.name in keys else c)


def live_arms(figures: Path) -> dict[str, Any]:
    """The ladders' figures; ``ran`` False when the study has not run."""
    result_path, summary_path = figures / RESULT, figures / SUMMARY
    if not (result_path.exists() and summary_path.exists()):
        return {"ran": False}
    r = json.loads(result_path.read_text())
    arms = [a["name"] for a in r["arms"] if not a.get("control")]
    control = next(a for a in r["arms"] if a.get("control"))
    summary = pd.read_csv(summary_path)
    # each design's primary rows that have a final interval (did and sdid have no relative one)
    primary = _order(summary[summary["primary"].astype(bool) & (summary["final"] > 0)], arms)
    t, p = r["targets"], r["pooled"]
    band = t["coverage"]
    families = []
    for f in r["families"]:
        if f["form"] != "absolute" or not f["primary"]:
            continue
        rel = next(
            (g for g in r["families"] if g["form"] == "relative"
             and all(g[k] == f[k] for k in ("design", "metric", "estimator"))),
            None,
        )  # fmt: skip
        families.append(
            f
            | {
                "sim_method": f.get("sim_method") or "-",
                "cs_joint_relative": math.nan if rel is None else rel["cs_joint_ever_missed"],
            }
        )
    families = _order(pd.DataFrame(families), arms).to_dict("records") if families else []
    high = max(a["price_ratio"] for a in r["arms"])
    demand = []
    for d in r["demand"]:
        runs = [x for x in r["demand_runs"] if x["design"] == d["design"]]
        top = sum(1 for x in runs if x["truth"] >= high - 1e-9) / max(1, len(runs))
        demand.append(
            d
            | {
                "truth_range": f"{d['truth_min']:.3f}-{d['truth_max']:.3f}",
                "at_top": top,
            }
        )
    # the per-arm primaries whose own interval misses the band by more than chance
    off = []
    for row in primary.to_dict("records"):
        v = verdict(row["coverage"], int(row["final"]), *band)
        if v["met"] is False and not v["chance"]:
            off.append(row | v)
    return {
        "ran": True,
        "r": r,
        "p": p,
        "quick": bool(r.get("quick")),
        "lost": r.get("units_mismatch") or [],
        "arms": arms,
        "control": control,
        "ratios": {a["name"]: a["price_ratio"] for a in r["arms"]},
        "split": len(arms),
        "per_metric": _order(pd.DataFrame(r["by_metric"]), arms).to_dict("records"),
        "arm_rows": primary.to_dict("records"),
        "families": families,
        "demand": demand,
        "off": off,
        "coverage_all": verdict(p["coverage_all"], p["intervals_all"], *band),
        "coverage_primary": verdict(p["coverage_primary"], p["intervals_primary"], *band),
        "family_all": verdict(p["family_all"], p["families_all"], t["family"]),
        "family_primary": verdict(p["family_primary"], p["families_primary"], t["family"]),
        "cs_joint_all": verdict(p["cs_joint_all"], p["cs_joint_scored_all"], 0.0, t["cs_joint"]),
        "cs_joint_primary": verdict(
            p["cs_joint_primary"], p["cs_joint_scored_primary"], 0.0, t["cs_joint"]
        ),
        "optimum": verdict(
            p.get("optimum_coverage", math.nan), p.get("optimum_scored", 0), *t["optimum"]
        ),  # fmt: skip
        "row_mcse": math.sqrt(0.05 * 0.95 / max(1, int(primary["final"].max()))),
        "METRIC_COLS": METRIC_COLS,
        "ARM_COLS": ARM_COLS,
        "FAMILY_COLS": FAMILY_COLS,
        "DEMAND_COLS": DEMAND_COLS,
        "CLASS_PERIOD_COLS": CLASS_PERIOD_COLS,
        "BIAS_COLS": BIAS_COLS,
        "SPREAD_COLS": SPREAD_COLS,
    } | findings(r, summary, figures)


CLASS_PERIOD_COLS: list[Col] = [
    ("estimator", "estimator", "s"),
    ("label", "the arm's class-periods at the look", "s"),
    ("estimates", "looks x arms", "d"),
    ("ci_coverage", "95% interval covered", ".3f"),
    ("cs_scored", "sequences published", "d"),
    ("cs_missed", "sequence excluded the truth", ".3f"),
    ("zero_se", "SE numerically zero", "d"),
]
BIAS_COLS: list[Col] = [
    ("design", "design", "s"),
    ("metric", "metric", "s"),
    ("form", "form", "s"),
    ("estimator", "estimator", "s"),
    ("arm", "arm", "s"),
    ("bias", "bias", "+.3f"),
    ("bias_mcse", "MC SE", ".3f"),
    ("away", "MC SEs", ".1f"),
    ("coverage", "coverage", ".3f"),
    ("products", "products in the arm (mean)", ".1f"),
]
SPREAD_COLS: list[Col] = [
    ("design", "design", "s"),
    ("metric", "metric", "s"),
    ("estimator", "estimator", "s"),
    ("arm", "arm", "s"),
    ("se_sd", "mean SE / SD", ".2f"),
    ("largest_share", "the largest error's share of the squared errors", ".2f"),
    ("largest_z", "its error / its own SE", "+.2f"),
    ("largest_covered", "its interval covered", "s"),
    ("coverage", "coverage", ".3f"),
]


def findings(r: dict[str, Any], summary: pd.DataFrame, figures: Path) -> dict[str, Any]:
    """What the page says where a target is missed or a row is off: the (design, estimator,
    metric, form) families whose sequences missed more often than the target beyond chance,
    and the primaries' pooled rate without them; the cluster design's looks by the
    class-periods an arm rested on, and its sequences that rested on a numerically zero SE
    (read from the runs file); the two-arm batches' rate of the same pair; the recommended
    price's intervals that span the whole ladder; the primaries whose bias is beyond 2 MC SE;
    and the rows whose mean SE / SD is low, with how much of their squared error one
    experiment holds."""
    t = r["targets"]
    over: list[dict[str, Any]] = []
    kept: list[dict[str, Any]] = []
    for f in r["families"]:
        if not f["cs_joint_scored"]:
            continue
        v = verdict(f["cs_joint_ever_missed"], f["cs_joint_scored"], 0.0, t["cs_joint"])
        (over if v["met"] is False and not v["chance"] else kept).append(f | v)
    prim = [f for f in kept if f["primary"]]
    n_kept = sum(f["cs_joint_scored"] for f in prim)
    missed_kept = sum(f["cs_joint_ever_missed"] * f["cs_joint_scored"] for f in prim)
    out: dict[str, Any] = {
        "cs_over": over,
        "cs_over_pairs": sorted({(f["design"], f["estimator"]) for f in over}),
        "cs_primary_without": missed_kept / n_kept if n_kept else math.nan,
        "cs_primary_without_n": n_kept,
    }
    out["class_periods"] = [
        c | {"label": f"{c['class_periods']}{' or more' if c['at_least'] else ''}"}
        for c in r.get("by_class_periods") or []
    ]
    runs_path = figures / RUNS
    runs = pd.read_csv(runs_path) if runs_path.exists() else None
    out["zero"] = None
    if runs is not None and "zero_se_looks" in runs:
        seq = runs[(runs["form"] == "absolute") & runs["cs_ever_missed"].notna()]
        zero = seq[seq["zero_se_looks"] > 0]
        missed = seq[seq["cs_ever_missed"].astype(bool)]
        looks = sorted({int(b["look"]) for b in r.get("by_look") or [] if b["zero_se"]})
        out["zero"] = {
            "sequences": len(zero),
            "missed": int(zero["cs_ever_missed"].astype(bool).sum()),
            "all_missed": len(missed),
            "one_look": int((zero["cs_looks"] == 1).sum()),
            "looks": looks,
            "pairs": sorted(
                {(d, e) for d, e in zip(zero["design"], zero["estimator"], strict=True)}
            ),
        }
    two_path = figures / TWO_ARM_SUMMARY
    out["two_arm"] = []
    if two_path.exists():
        two = pd.read_csv(two_path)
        for design, est in out["cs_over_pairs"]:
            g = two[(two["design"] == design) & (two["estimator"] == est)
                    & (two["form"] == "absolute") & (two["metric"] != "elasticity")]  # fmt: skip
            if len(g):
                out["two_arm"].append(
                    {"design": design, "estimator": est, "low": float(g["cs_ever_missed"].min()),
                     "high": float(g["cs_ever_missed"].max()), "runs": int(g["runs"].max())}
                )  # fmt: skip
    low, high = (min(a["price_ratio"] for a in r["arms"]), max(a["price_ratio"] for a in r["arms"]))
    fitted = [x for x in r["demand_runs"] if x.get("covered") is not None]
    whole = [x for x in fitted if x["ci_low"] <= low + 1e-9 and x["ci_high"] >= high - 1e-9]
    out["whole_ladder"] = len(whole) / len(fitted) if fitted else math.nan
    out["ladder_range"] = high - low
    out["fitted"] = len(fitted)
    # the primaries' biases beyond 2 MC SE (about 5% of the rows by chance)
    primary = summary[summary["primary"].astype(bool) & (summary["final"] > 1)]
    products = (
        runs.groupby(["design", "metric", "form", "estimator", "arm"])["arm_products"].mean()
        if runs is not None and "arm_products" in runs
        else None
    )
    biased = []
    for row in primary.to_dict("records"):
        away = abs(row["bias"]) / row["bias_mcse"] if row["bias_mcse"] > 0 else math.nan
        if away > CHANCE_MCSE:
            key = tuple(row[k] for k in ("design", "metric", "form", "estimator", "arm"))
            n = products.get(key, math.nan) if products is not None else math.nan
            biased.append(row | {"away": away, "products": float(n)})
    out["biased"] = _order(pd.DataFrame(biased), _arms(r)).to_dict("records") if biased else []
    out["bias_rows"] = len(primary)
    out["bias_chance"] = 2 * 0.0228 * len(primary)  # two-sided 2-sigma tail
    spread = []
    if runs is not None:
        low_rows = summary[(summary["form"] == "absolute") & (summary["se_sd"] < LOW_SE_SD)]
        for row in low_rows.to_dict("records"):
            g = runs[(runs["design"] == row["design"]) & (runs["metric"] == row["metric"])
                     & (runs["form"] == "absolute") & (runs["estimator"] == row["estimator"])
                     & (runs["arm"] == row["arm"]) & runs["covered"].notna()]  # fmt: skip
            err = g["effect"] - g["truth"]
            sq = (err - err.mean()) ** 2
            i = sq.idxmax()
            spread.append(row | {"largest_share": float(sq[i] / sq.sum()),
                                 "largest_z": float(err[i] / g.loc[i, "se"]),
                                 "largest_covered": "yes" if g.loc[i, "covered"] else "no"})  # fmt: skip
    out["spread"] = _order(pd.DataFrame(spread), _arms(r)).to_dict("records") if spread else []
    out["spread_covered"] = [
        x for x in out["spread"] if x["largest_share"] > 0.5 and x["largest_covered"] == "yes"
    ]
    out["spread_missed"] = [x for x in out["spread"] if x["largest_covered"] == "no"]
    out["LOW_SE_SD"] = LOW_SE_SD
    return out


def _arms(r: Mapping[str, Any]) -> list[str]:
    return [a["name"] for a in r["arms"] if not a.get("control")]
