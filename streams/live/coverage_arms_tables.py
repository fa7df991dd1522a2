"""The live coverage study's three-arm tables (streams.live.coverage_arms scores each
experiment): the family of both arms per experiment, the summaries per design, metric, form,
estimator and arm, the pooled tests against the issue's targets, and the saved result that
docs/validation.md's section is rendered from (lab/studies/live_arms_page.py)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from lab.studies.harness import coverage, interval_summary, mean_mcse
from lab.studies.live_ladder import COST_SHARE, LADDER, WORLD

#: the issue's targets
TARGETS = {"coverage": (0.93, 0.97), "family": 0.95, "cs_joint": 0.05, "optimum": (0.93, 0.97)}


def _all(flags: pd.Series) -> bool | None:
    """True when every arm's flag is True; None when any arm's was not scored."""
    if flags.isna().any():
        return None
    return bool(flags.astype(bool).all())


def _any(flags: pd.Series) -> bool | None:
    """True when any scored flag is True; None when none was scored."""
    scored = flags.dropna()
    return bool(scored.astype(bool).any()) if len(scored) else None


def family_rows(rows: pd.DataFrame, n_arms: int = len(LADDER) - 1) -> pd.DataFrame:
    """Per experiment and (metric, form, estimator), from its :func:`arm_rows`: whether all its
    ``n_arms`` arms' simultaneous intervals (and, beside them, their own intervals) covered
    their truths at once, and whether either arm's sequence ever excluded its truth (None where
    an arm has no such interval, or no arm a sequence)."""
    keys = ["experiment", "design", "metric", "form", "estimator"]
    out = []
    for key, g in rows.groupby(keys, sort=False):
        complete = g["arm"].nunique() == n_arms
        out.append(
            dict(zip(keys, key, strict=True))
            | {
                "restarted": bool(g["restarted"].any()),
                "primary": bool(g["primary"].any()),
                "sim_method": _mode(g["sim_method"]) if "sim_method" in g else None,
                "sim_all_covered": _all(g["sim_covered"]) if complete else None,
                "own_all_covered": _all(g["covered"]) if complete else None,
                "cs_joint_ever_missed": _any(g["cs_ever_missed"]) if complete else None,
            }
        )
    return pd.DataFrame(out)


def share(flags: Iterable[Any]) -> tuple[float, float, int]:
    """The share of True among the scored flags (None: not scored), its Monte-Carlo SE and
    how many were scored."""
    scored = pd.Series(list(flags), dtype=object).dropna()
    p, mcse = coverage(scored.astype(bool))
    return p, mcse, len(scored)


def summarise_arms(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (design, metric, form, estimator, arm): coverage of the final intervals, bias,
    mean SE against the SD of the final errors, the simultaneous intervals' coverage and the
    share of sequences that ever missed."""
    out = []
    keys = ["design", "metric", "form", "estimator", "arm"]
    for key, g in rows.groupby(keys, sort=True):
        ok = g[g["covered"].notna()]
        fig = interval_summary(ok["effect"], ok["truth"], ok["se"], ok["covered"].astype(bool))
        bias, bias_mcse = mean_mcse(ok["effect"] - ok["truth"])
        sim, sim_mcse, _ = share(g["sim_covered"])
        cs, _, cs_n = share(g["cs_ever_missed"])
        out.append(
            dict(zip(keys, key, strict=True))
            | {
                "runs": len(g),
                "final": len(ok),
                "unbounded": int(g["unbounded"].sum()),
                "truth": float(ok["truth"].mean()) if len(ok) else math.nan,
                "coverage": fig["coverage"],
                "coverage_mcse": fig["coverage_mcse"],
                "bias": bias,
                "bias_mcse": bias_mcse,
                "mean_se": fig["mean_se"],
                "emp_sd": fig["emp_sd"],
                "se_sd": fig["mean_se"] / fig["emp_sd"] if fig["emp_sd"] else math.nan,
                "sim_coverage": sim,
                "sim_coverage_mcse": sim_mcse,
                "sim_method": _mode(g["sim_method"]),
                "cs_ever_missed": cs,
                "cs_scored": cs_n,
                "restarted": int(g["restarted"].sum()),
                "primary": bool(g["primary"].any()),
            }
        )
    return pd.DataFrame(out)


def _mode(values: pd.Series) -> str | None:
    """The most frequent of the values given (None: none given)."""
    given = values.dropna()
    return str(given.mode().iloc[0]) if len(given) else None


def summarise_families(fam: pd.DataFrame) -> list[dict[str, Any]]:
    """Per (design, metric, form, estimator): the family-wise coverage of the simultaneous
    intervals (and of the own intervals) and the share of experiments in which either arm's
    sequence ever missed."""
    out = []
    keys = ["design", "metric", "form", "estimator"]
    for key, g in fam.groupby(keys, sort=True):
        sim, sim_mcse, n_sim = share(g["sim_all_covered"])
        own, _, _ = share(g["own_all_covered"])
        cs, cs_mcse, n_cs = share(g["cs_joint_ever_missed"])
        out.append(
            dict(zip(keys, key, strict=True))
            | {
                "experiments": len(g),
                "sim_method": _mode(g["sim_method"]),
                "family": sim,
                "family_mcse": sim_mcse,
                "family_scored": n_sim,
                "own_family": own,
                "cs_joint_ever_missed": cs,
                "cs_joint_mcse": cs_mcse,
                "cs_joint_scored": n_cs,
                "primary": bool(g["primary"].any()),
            }
        )
    return out


def summarise_demand(demand: pd.DataFrame) -> list[dict[str, Any]]:
    """Per design: how many final looks had a demand curve, and the recommended ratio's bias,
    SD and interval coverage against the true optimum."""
    out = []
    for design, g in demand.groupby("design", sort=True):
        row: dict[str, Any] = {
            "design": design,
            "experiments": len(g),
            "published": int(g["published"].astype(bool).sum()),
            "truth_mean": float(g["truth"].mean()),
            "truth_min": float(g["truth"].min()),
            "truth_max": float(g["truth"].max()),
        }
        fit = g[g["published"].astype(bool)]
        if "covered" in fit and fit["covered"].notna().any():
            fit = fit[fit["covered"].notna()]
            err = fit["optimal_price_ratio"] - fit["truth"]
            bias, bias_mcse = mean_mcse(err)
            cov, cov_mcse = coverage(fit["covered"].astype(bool))
            row |= {
                "scored": len(fit),
                "estimate_mean": float(fit["optimal_price_ratio"].mean()),
                "bias": bias,
                "bias_mcse": bias_mcse,
                "sd": float(err.std(ddof=1)) if len(fit) > 1 else math.nan,
                "coverage": cov,
                "coverage_mcse": cov_mcse,
                "width": float((fit["ci_high"] - fit["ci_low"]).mean()),
                "at_edge": float(fit["at_range_edge"].astype(bool).mean()),
            }
        out.append(row)
    return out


def pooled(rows: pd.DataFrame, fam: pd.DataFrame, demand: pd.DataFrame) -> dict[str, Any]:
    """The study's tests, pooled over designs: the final intervals (every estimator, each
    design's primary; killed and uninterrupted), the family-wise simultaneous coverage, the
    sequences (per arm, and either arm of an experiment), and the recommended price."""
    prim = rows[rows["primary"]]
    out: dict[str, Any] = {}
    for name, frame in (("all", rows), ("primary", prim)):
        out[f"coverage_{name}"], out[f"coverage_{name}_mcse"], out[f"intervals_{name}"] = share(
            frame["covered"]
        )
        out[f"cs_ever_missed_{name}"], _, out[f"cs_scored_{name}"] = share(frame["cs_ever_missed"])
    for flag, frame in (("restarted", rows[rows["restarted"]]), ("uninterrupted", rows[~rows["restarted"]])):  # fmt: skip
        out[f"coverage_{flag}"], _, out[f"intervals_{flag}"] = share(frame["covered"])
    fprim = fam[fam["primary"]]
    for name, frame in (("all", fam), ("primary", fprim)):
        out[f"family_{name}"], out[f"family_{name}_mcse"], out[f"families_{name}"] = share(
            frame["sim_all_covered"]
        )
        out[f"cs_joint_{name}"], out[f"cs_joint_{name}_mcse"], out[f"cs_joint_scored_{name}"] = (
            share(frame["cs_joint_ever_missed"])
        )
    scored = demand[demand["published"].astype(bool)]
    if "covered" in scored:
        out["optimum_coverage"], out["optimum_coverage_mcse"], out["optimum_scored"] = share(
            scored["covered"]
        )
        out["optimum_bias"], out["optimum_bias_mcse"] = mean_mcse(
            (scored["optimal_price_ratio"] - scored["truth"]).dropna()
        )
    return out


def by_metric(rows: pd.DataFrame, fam: pd.DataFrame) -> list[dict[str, Any]]:
    """Pooled per metric and form over the designs: every estimator, and each design's
    primary; the simultaneous intervals' family-wise coverage; either arm's sequence."""
    out = []
    for (metric, form), g in rows.groupby(["metric", "form"], sort=False):
        f = fam[(fam["metric"] == metric) & (fam["form"] == form)]
        cov, _, n = share(g["covered"])
        cov_p, _, n_p = share(g.loc[g["primary"], "covered"])
        fw, _, n_fw = share(f["sim_all_covered"])
        cs, _, _ = share(g["cs_ever_missed"])
        joint, _, n_joint = share(f["cs_joint_ever_missed"])
        out.append(
            {
                "metric": metric,
                "form": form,
                "experiments": int(g["experiment"].nunique()),
                "coverage_all": cov,
                "intervals_all": n,
                "coverage_primary": cov_p,
                "intervals_primary": n_p,
                "unbounded": int(g["unbounded"].sum()),
                "family": fw,
                "families": n_fw,
                "cs_ever_missed": cs,
                "cs_joint_ever_missed": joint,
                "cs_joint_scored": n_joint,
            }
        )
    return out


#: the class-periods of an arm from which the cluster design's table pools its looks together
MANY_CLASS_PERIODS = 12


def by_look(looks: pd.DataFrame) -> list[dict[str, Any]]:
    """Per (design, estimator, metric, look), over the experiments' arms: how often the 95%
    interval and the sequence held the look's truth, how many sequences were not published,
    how many SEs were numerically zero (at most a millionth of the largest the arm's estimate
    had), and the mean products and (cluster design) class-periods each arm rested on."""
    out = []
    keys = ["design", "estimator", "metric", "look"]
    for key, g in looks.groupby(keys, sort=True):
        ci, _, n_ci = share(g["ci_covered"])
        cs, _, n_cs = share(g["cs_covered"])
        out.append(
            dict(zip(keys, key, strict=True))
            | {
                "estimates": len(g),
                "ci_coverage": ci,
                "ci_scored": n_ci,
                "cs_missed": 1 - cs if n_cs else math.nan,
                "cs_scored": n_cs,
                "cs_absent": int(g["cs_covered"].isna().sum()),
                "zero_se": int(g["zero_se"].sum()),
                "arm_products": float(g["arm_products"].mean()),
                "arm_class_periods": float(pd.to_numeric(g["arm_class_periods"]).mean()),
            }
        )
    return out


def by_class_periods(looks: pd.DataFrame) -> list[dict[str, Any]]:
    """The cluster design's looks per estimator by the class-periods the arm rested on at the
    look (:data:`MANY_CLASS_PERIODS` and more together): how often the 95% interval and the
    sequence held the truth, and how many SEs were numerically zero."""
    cl = looks[looks["design"] == "cluster"]
    if cl.empty:
        return []
    cl = cl.assign(
        draws=pd.to_numeric(cl["arm_class_periods"]).clip(upper=MANY_CLASS_PERIODS).astype(int)
    )
    out = []
    for (est, draws), g in cl.groupby(["estimator", "draws"], sort=True):
        ci, _, n_ci = share(g["ci_covered"])
        cs, _, n_cs = share(g["cs_covered"])
        out.append(
            {
                "estimator": est,
                "class_periods": int(draws),
                "at_least": bool(draws == MANY_CLASS_PERIODS),
                "estimates": len(g),
                "ci_coverage": ci,
                "cs_missed": 1 - cs if n_cs else math.nan,
                "cs_scored": n_cs,
                "zero_se": int(g["zero_se"].sum()),
            }
        )
    return out


def arms_result(
    rows: pd.DataFrame,
    demand: pd.DataFrame,
    looks: pd.DataFrame,
    batches: list[dict[str, Any]],
    settings: dict[str, Any],
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The per-arm summary table and the study's saved result (the page's context reads it):
    from :func:`~streams.live.coverage_arms.arm_rows`, ``demand_row`` and ``look_rows``."""
    fam = family_rows(rows)
    return summarise_arms(rows), settings | {
        "experiments": int(rows["experiment"].nunique()),
        # per design: experiments run, and those with a per-arm estimate at some look
        "per_design": {
            d: {
                "run": int(g["experiment"].nunique()),
                "estimated": int(rows.loc[rows["design"] == d, "experiment"].nunique()),
            }
            for d, g in demand.groupby("design", sort=False)
        },  # fmt: skip
        "restarted_experiments": int(rows.loc[rows["restarted"], "experiment"].nunique()),
        "designs": list(dict.fromkeys(rows["design"])),
        "arms": [a.model_dump(mode="json") for a in LADDER],
        "cost_share": COST_SHARE,
        "world": WORLD,
        "targets": TARGETS,
        "batches": batches,
        "units_mismatch": [m for b in batches for m in b["units_mismatch"]],
        "kills_confirmed": sum(1 for b in batches if b["killed"]),
        "kills_drawn": sum(1 for b in batches if b["kill_at"] is not None),
        "pooled": pooled(rows, fam, demand),
        "by_metric": by_metric(rows, fam),
        "families": summarise_families(fam),
        "demand": summarise_demand(demand),
        "demand_runs": demand.replace({np.nan: None}).to_dict("records"),
        "by_look": by_look(looks),
        "by_class_periods": by_class_periods(looks),
    }
