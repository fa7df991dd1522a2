"""The price-ladder study (lab/studies/ladder.py) on two small runs per case: every run goes
through the analysis worker and gives the rows its summary and page need, with finite truths
(the full study runs 400 runs per case: docs/ladder-validation.md)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from lab.studies import ladder
from lab.studies.harness import Run, context, run_rows
from lab.studies.render import render_text

#: the estimators each design plans that the worker estimates per arm, and those it says are not
PER_ARM = {
    "random-days": ({"fe", "dm"}, {"ht"}),
    "crossover": ({"dm"}, {"crossover"}),
    "time-bound": ({"did", "sdid", "cuped"}, set()),
    "optimal-switchback": (set(), {"hajek", "ht"}),
}


@pytest.fixture(scope="module")
def dry() -> tuple[pd.DataFrame, Run]:
    return run_rows(ladder.STUDY.with_options(runs=2, products=40, days=28))


def test_each_run_scores_every_arm_of_every_identified_estimator(dry) -> None:
    rows, _ = dry
    cases = ["world", "markets", "check", "design", "run"]
    for (_, _, check, design, _), g in rows.groupby(cases):
        identified, missing = PER_ARM[design]
        metrics = ladder.METRICS
        if check == "sdid-jackknife":  # sdid alone, with the jackknife
            identified, missing = {"sdid"}, set()
        arms = g[g["kind"] == "arm"]
        assert set(arms["estimator"]) == identified
        assert set(arms["metric"]) <= set(metrics)
        assert len(arms) == len(identified) * len(metrics) * len(ladder.ARMS)
        for _, per in arms.groupby(["metric", "estimator"]):
            assert sorted(per["arm"]) == sorted(ladder.ARMS)
        assert set(g.loc[g["kind"] == "not_identified", "estimator"]) == missing
        assert (g["kind"] == "demand").sum() == 1
    arms = rows[rows["kind"] == "arm"]
    # a ladder's time-bound sdid by the bootstrap as planned, by the jackknife in the checks
    # (the estimates the same on the same runs: only their SE differs)
    sdid = arms[arms["estimator"] == "sdid"]
    assert set(sdid.loc[sdid["check"] == "none", "se_method"]) == {"bootstrap"}
    assert set(sdid.loc[sdid["check"] != "none", "se_method"]) == {"jackknife"}
    key = ["run", "metric", "arm"]
    planned = sdid[sdid["check"] == "none"].set_index(key).sort_index()
    jackknife = sdid[sdid["check"] == "sdid-jackknife"].set_index(key).sort_index()
    assert np.allclose(planned["effect"], jackknife["effect"])
    assert not np.allclose(planned["se"], jackknife["se"])
    assert set(arms.loc[arms["estimator"] == "did", "se_method"]) == {"jackknife"}
    assert np.isfinite(arms[["effect", "se", "truth", "ci_low", "ci_high"]].to_numpy()).all()
    assert np.isfinite(arms[["sim_low", "sim_high"]].to_numpy()).all()
    assert (arms["sim_low"] <= arms["ci_low"]).all() and (arms["ci_high"] <= arms["sim_high"]).all()
    assert (arms["error"] == arms["effect"] - arms["truth"]).all()
    # a cut sells more units than the list price, a rise fewer
    units = arms[arms["metric"] == "units"].groupby("arm")["truth"].mean()
    assert units["p90"] > units["p95"] > 0 > units["p105"]


def test_the_true_optimum_is_inside_the_ladder_at_48_and_its_top_at_70(dry) -> None:
    rows, _ = dry
    demand = rows[rows["kind"] == "demand"]
    inside = demand.loc[demand["world"] == "cost-48", "optimum"]
    assert ((inside > 0.9) & (inside < 1.05)).all()
    assert np.allclose(demand.loc[demand["world"] == "cost-70", "optimum"], 1.05)
    # one market per world: its products, whatever the demand path; a new one per run else
    one = demand[(demand["markets"] == "one") & (demand["check"] != "products-x4")]
    assert one["elasticity_products"].nunique() == 1
    assert demand.loc[demand["markets"] == "per-run", "elasticity_products"].nunique() == 2
    diagnostic = demand[["elasticity_products", "elasticity_revenue", "one_curve_optimum"]]
    assert np.isfinite(diagnostic.to_numpy()).all()
    assert demand["one_curve_optimum"].between(0.9, 1.05).all()


def test_the_worker_publishes_a_demand_curve_where_products_see_several_prices(dry) -> None:
    rows, _ = dry
    demand = rows[rows["kind"] == "demand"]
    for design, g in demand.groupby("design"):
        if design == "time-bound":  # each product stays in one arm: no within-product slope
            assert not g["published"].astype(bool).any()
            assert g["reason"].str.contains("two or more prices").all()
            continue
        assert g["published"].astype(bool).all()
        assert np.isfinite(g[["elasticity", "optimal_price_ratio", "p_edge"]].to_numpy()).all()
        # a look whose bootstrap cannot place the interval publishes none (identified false)
        shown = g["identified"].astype(bool)
        lo, hi = g["optimal_price_ratio_ci_low"], g["optimal_price_ratio_ci_high"]
        assert ((lo >= 0.9) & (lo <= hi) & (hi <= 1.05))[shown].all()  # inside the ladder
        assert lo[~shown].isna().all() and hi[~shown].isna().all()


def test_the_summary_renders_the_page(dry) -> None:
    rows, meta = dry
    results = ladder.summarise(rows, meta)
    assert results["runs"] == 2 and results["products"] == 40
    families = {
        (r["world"], r["markets"], r["check"], r["design"], r["metric"], r["estimator"])
        for r in results["families"]
    }
    # cost-48: random days 2 estimators, crossover 1, time-bound 3; cost-70 and a market per
    # run: random days and crossover; sdid's jackknife 1; time-bound with more products 3
    assert len(families) == (2 + 1 + 3 + 2 + 1 + 2 + 1 + 1 + 3) * len(ladder.METRICS)
    assert all(r["runs"] == 2 for r in results["families"])
    curves = {
        (r["world"], r["markets"], r["check"], r["design"]): r["published"]
        for r in results["demand"]
    }
    looks = {}
    for check in ("none", "sdid-jackknife", "products-x4"):
        assert curves.pop(("cost-48", "one", check, "time-bound")) == 0
        (looks[check],) = (
            r for r in results["demand"] if r["design"] == "time-bound" and r["check"] == check
        )
    assert set(curves.values()) == {2}
    # a look fits sdid once per metric, all arms at once; the bootstrap's refits cost more
    # than the jackknife on the same cells
    assert {r["sdid_fits"] for r in looks.values()} == {len(ladder.METRICS)}
    assert looks["none"]["sdid_cpu"] > looks["sdid-jackknife"]["sdid_cpu"] > 0
    assert looks["none"]["look_cpu"] >= looks["none"]["sdid_cpu"]
    text = render_text("ladder.md.j2", context(ladder.STUDY, results))
    assert "| time-bound | units | sdid | bootstrap |" in text and "two or more prices" in text
    assert math.isfinite(results["seconds_per_run"])
