"""The report of an experiment of more than two arms, as an analyst reads it: each arm
against the control in the scorecard (the worker's figures, its simultaneous intervals and
MCB sets), the verdict naming its arm, and for a price ladder the demand and profit curves
drawn from the worker's demand message, with the recommended price and the edge flag."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from analysis.demand import units_ratio, units_ratio_band
from analysis.report import assignment_heatmap, build_report, replay_estimates
from analysis.report.curves import curves_section, demand_svg, latest_demand, profit_svg
from analysis.report.verdict import verdict_section
from controller.arms import ArmSpec
from controller.spec import ExperimentSpec

SVG = "{http://www.w3.org/2000/svg}"
#: the ladder: list price (control) and three others; a product's price is 10 x its ratio
LADDER = {"list": 1.0, "p90": 0.90, "p95": 0.95, "p105": 1.05}
ARMS = ("p90", "p95", "p105")
ELASTICITY = -2.0
#: unit cost as a share of the list price: the profit-maximising ratio is then
#: eps c / (1 + eps) = 0.96 (every product alike)
COST_SHARE = 0.48


def _spec(n: int, periods: int) -> ExperimentSpec:
    start = datetime(2026, 1, 5, tzinfo=UTC)
    arms = [
        ArmSpec(name=a, policy=f"price-{a}", price_ratio=r, allocation=0.25, control=a == "list")
        for a, r in LADDER.items()
    ]
    products = tuple(f"p{i:02d}" for i in range(n))
    return ExperimentSpec(
        id="ladder",
        products=products,
        arms=arms,
        start=start,
        end=start + timedelta(days=periods),
        unit_costs=dict.fromkeys(products, 10.0 * COST_SHARE),
        mde_pct=5.0,
    )


def _ladder(n: int = 40, periods: int = 6, seed: int = 3) -> pd.DataFrame:
    """Random days over the ladder: each product-period draws an arm with equal shares; units
    Poisson with mean base * ratio^-2, at a list price of 10."""
    rng = np.random.default_rng(seed)
    names = list(LADDER)
    base = rng.uniform(20, 60, n)
    arm = rng.integers(len(names), size=(n, periods))
    ratio = np.array([LADDER[a] for a in names])[arm]
    units = rng.poisson(base[:, None] * ratio**ELASTICITY).astype(float)
    price = 10.0 * ratio
    return pd.DataFrame(
        {
            "product": np.repeat([f"p{i:02d}" for i in range(n)], periods),
            "period": np.tile(np.arange(periods), n),
            "units": units.ravel(),
            "revenue": (units * price).ravel(),
            "profit": (units * (price - 10.0 * COST_SHARE)).ravel(),
            "treated": (arm != 0).ravel().astype(int),
            "probability": 0.75,
            "blackout": False,
            "arm": np.array(names)[arm].ravel(),
        }
    )


@pytest.fixture(scope="module")
def replayed() -> tuple[pd.DataFrame, pd.DataFrame]:
    df = _ladder()
    spec = _spec(40, 6)
    est = replay_estimates(
        df, experiment="ladder", design="random-days", estimators=["fe", "dm"],
        params=spec.model_dump(mode="json"),
    )  # fmt: skip
    return df, est


@pytest.fixture(scope="module")
def page(replayed) -> str:  # type: ignore[no-untyped-def]
    df, est = replayed
    return build_report(df, est, title="ladder", design="random-days", true_optimum=0.96).html


def _cells(page: str, attrs: str) -> list[str]:
    row = page.split(f"<tr {attrs}>")[1].split("</tr>")[0]
    return re.findall(r"<td>(.*?)</td>", row)


def test_the_replay_runs_the_worker_on_every_arm_and_the_ladder(replayed) -> None:  # type: ignore[no-untyped-def]
    """Replayed on a ladder with its spec, the worker publishes what it does live: each arm
    against the control, a verdict naming an arm and the demand curve at every look; without
    the spec, each arm (the panel's arm column) and nothing a spec is needed for."""
    df, est = replayed
    kinds = est["kind"].fillna("estimate")
    estimates, demand = est[kinds == "estimate"], est[kinds == "demand"]
    assert set(estimates["arm"]) == set(ARMS)  # never pooled as one treatment
    assert sorted(demand["n_units"].notna().groupby(demand["as_of"]).size()) == [1] * 5
    verdicts = est[kinds == "verdict"]
    assert len(verdicts) == 5 and set(verdicts["arm"]) <= set(ARMS)
    bare = replay_estimates(df, experiment="ladder", design="random-days", estimators=["dm"])
    assert "kind" not in bare.columns and set(bare["arm"]) == set(ARMS)
    # arms without prices (three models against the current one, say): each arm, no curve
    page = build_report(df, bare, title="k arms", design="random-days").html
    assert '<tr data-metric="units" data-arm="p95">' in page and "Which arm is best" in page
    assert "Demand and profit curves" not in page


def test_the_scorecard_shows_each_arm_against_control(replayed, page) -> None:  # type: ignore[no-untyped-def]
    _, est = replayed
    last = est[(est["as_of"] == est["as_of"].max()) & est["kind"].isna()]  # its estimates
    fe = last[last["estimator"] == "fe"].set_index(["metric", "arm"])
    for metric in ("units", "revenue", "profit", "price"):
        for arm in ARMS:
            cells = _cells(page, f'data-metric="{metric}" data-arm="{arm}"')
            r = fe.loc[(metric, arm)]
            assert cells[0] == arm
            assert cells[1] == f"{r['effect']:+.3f}"
            assert cells[2] == f"[{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]"
            assert cells[3] == f"[{r['sim_ci_low']:+.3f}, {r['sim_ci_high']:+.3f}]"
            assert cells[4] == f"{r['relative_effect']:+.2%}"
            # the simultaneous interval is the wider: it holds for the three arms at once
            assert r["sim_ci_low"] < r["ci_low"] and r["sim_ci_high"] > r["ci_high"]
    # the arms in the ladder's price order, each metric's rows under its heading
    card = page.split("<h2>Scorecard</h2>")[1].split("</table>")[0]
    assert re.findall(r'data-metric="units" data-arm="(\w+)"', card) == ["p90", "p95", "p105"]
    # fe's comparisons have no joint distribution here: Bonferroni, as its messages say
    assert set(fe["sim_method"]) == {"bonferroni"}
    assert "units: fe; units per product-period; simultaneous intervals: Bonferroni" in card
    assert "arm (against list)" in card
    # Hsu's MCB set on revenue and profit is the dm messages'
    best = page.split("Which arm is best")[1].split("</table>")[0]
    dm = last[last["estimator"] == "dm"].set_index(["metric", "arm"])
    for metric in ("revenue", "profit"):
        kept = dm.loc[(metric, "p90"), "best_set"]
        row = _cells(best, f'data-metric="{metric}"')
        assert row[2] == ", ".join(a + (" (control)" if a == "list" else "") for a in kept)
        for arm, cell in zip(("p90", "p95", "p105"), row[3:], strict=True):
            lo, hi = dm.loc[(metric, arm), ["mcb_low", "mcb_high"]]
            assert cell == f"[{lo:+.3f}, {hi:+.3f}] " + (
                "may be best" if arm in kept else "not the best"
            )
    # the two-arm scorecard (one row per metric) is not drawn for k arms
    assert "<tr><td>units</td>" not in card


def test_the_verdict_names_its_arm_and_lists_every_arm(replayed, page) -> None:  # type: ignore[no-untyped-def]
    _, est = replayed
    verdict = est[est["kind"] == "verdict"].iloc[-1]
    band = page.split('id="verdict">')[1].split("</section>")[0]
    shipped = verdict["verdict"] == "ship"
    assert f"{'shipped' if shipped else 'leading'} arm {verdict['arm']}:" in band
    rows = re.findall(r'<tr( class="named")? data-arm="(\w+)">', band)
    assert [a for _, a in rows] == ["p90", "p95", "p105"]  # by price, as on the whole page
    assert [a for named, a in rows if named] == [verdict["arm"]]
    # a ship names its arm on its word
    ship = verdict.to_dict() | {"verdict": "ship", "arm": "p95"}
    band = verdict_section(pd.DataFrame([ship]))
    assert '<p class="word">Ship p95</p>' in band and "shipped arm p95:" in band


def test_the_page_draws_the_latest_demand_curve(replayed, page) -> None:  # type: ignore[no-untyped-def]
    _, est = replayed
    demand = latest_demand(est)
    assert demand is not None
    assert demand["as_of"] == est.loc[est["kind"] == "demand", "as_of"].max()
    section = page.split('<h2 id="ladder">')[1].split("<h2>")[0]
    assert (
        f"the fitted profit curve peaks at <b>x{demand['optimal_price_ratio']:.3f}</b>" in section
    )
    # labelled beside the page's verdict (the decision), in the analyst's terms
    verdict = page.split('id="verdict">')[1].split("</section>")[0]
    if "KEEP RUNNING" in verdict.upper():
        assert "Where the evidence points, not yet decided" in section
        assert 'data-decided="false"' in section and "not a price to set" in section
    assert 'id="demand-curve"' in section and 'id="profit-curve"' in section
    assert 'class="true-optimum" data-price-ratio="0.96"' in section
    # after the scorecard, before the running estimates
    assert page.index("<h2>Scorecard</h2>") < page.index('<h2 id="ladder">')
    assert page.index('<h2 id="ladder">') < page.index("<h2>Running estimates</h2>")


def _demand(**over: Any) -> dict[str, Any]:
    """A demand message by hand: elasticity -2 [-2.5, -1.5], optimum 0.96 [0.93, 0.99]."""
    ratios = np.linspace(0.9, 1.05, 101)
    curve = [
        {"price_ratio": float(r), "units_ratio": float(r**-2.0), "revenue": 100.0 * r**-1.0,
         "profit": float(100.0 * r**-1.0 - 48.0 * r**-2.0)}
        for r in ratios
    ]  # fmt: skip
    # arm, listed ratio, units ratio and its interval, profit per product-period (+-5)
    table = (("p90", 0.9, 1.25, 1.18, 1.31, 50.0), ("p95", 0.95, 1.10, 1.04, 1.17, 53.0),
             ("list", 1.0, 1.0, 1.0, 1.0, 52.0), ("p105", 1.05, 0.90, 0.84, 0.97, 51.0))  # fmt: skip
    points = [
        {"arm": arm, "price_ratio": r, "units_ratio": u, "units_ratio_ci_low": lo,
         "units_ratio_ci_high": hi, "profit_per_cell": pr, "profit_per_cell_ci_low": pr - 5,
         "profit_per_cell_ci_high": pr + 5, "n_cells": 80}
        for arm, r, u, lo, hi, pr in table
    ]  # fmt: skip
    return {
        "kind": "demand", "as_of": "2026-01-10T00:00:00+00:00", "n_units": 40,
        "elasticity": -2.0, "elasticity_ci_low": -2.5, "elasticity_ci_high": -1.5,
        "curvature_pvalue": 0.4, "price_ratio_low": 0.9, "price_ratio_high": 1.05,
        "optimal_price_ratio": 0.96, "optimal_price_ratio_ci_low": 0.93,
        "optimal_price_ratio_ci_high": 0.99, "at_range_edge": False,
        "profit_change_at_optimum": 0.8, "profit_change_at_optimum_ci_low": 0.1,
        "profit_change_at_optimum_ci_high": 1.6, "relative_profit_change_at_optimum": 0.015,
        "interval_method": "product_poisson_bootstrap_percentile_999", "alpha": 0.05,
        "points": points, "curve": curve, "notes": [],
    } | over  # fmt: skip


def _circle(svg: ET.Element, arm: str) -> tuple[float, float]:
    g = next(g for g in svg.iter(f"{SVG}g") if g.get("data-arm") == arm)
    c = g.find(f"{SVG}circle")
    assert c is not None
    return float(c.get("cx", "nan")), float(c.get("cy", "nan"))


def _path(svg: ET.Element, cls: str) -> np.ndarray:
    p = next(p for p in svg.iter(f"{SVG}path") if p.get("class") == cls)
    return np.array(
        [[float(v) for v in xy.split(",")] for xy in re.findall(r"[\d.]+,[\d.]+", p.get("d", ""))]
    )


def test_the_demand_curve_puts_each_arm_where_its_figures_say() -> None:
    """Each arm a labelled point: further right at a higher price, higher up with more
    units, its bar spanning its interval; the control hollow; the fit inside its band."""
    svg = ET.fromstring(demand_svg(_demand()))
    labels = {g.get("data-arm"): g.findtext(f"{SVG}text") for g in svg.iter(f"{SVG}g")
              if g.get("class") == "point"}  # fmt: skip
    assert labels == {a: a for a in LADDER}
    xy = {a: _circle(svg, a) for a in LADDER}
    assert [a for a, _ in sorted(xy.items(), key=lambda kv: kv[1][0])] == [
        "p90",
        "p95",
        "list",
        "p105",
    ]
    assert [a for a, _ in sorted(xy.items(), key=lambda kv: kv[1][1])] == [
        "p90",
        "p95",
        "list",
        "p105",
    ]
    control = next(g for g in svg.iter(f"{SVG}g") if g.get("data-arm") == "list")
    assert control.find(f"{SVG}circle").get("fill") == "#fff"  # type: ignore[union-attr]
    assert control.find(f"{SVG}line") is None  # the control's ratio is 1 by definition
    p90 = next(g for g in svg.iter(f"{SVG}g") if g.get("data-arm") == "p90")
    bar = p90.find(f"{SVG}line")
    assert bar is not None and bar.get("class") == "interval"
    y_lo, y_hi = float(bar.get("y1", "nan")), float(bar.get("y2", "nan"))
    assert y_lo > xy["p90"][1] > y_hi  # the point inside its interval (y grows downwards)
    # the fit and its band: the band (upper edge forward, lower edge back) holds the fit
    fit, band = _path(svg, "fit"), _path(svg, "band")
    assert len(fit) == 101 and len(band) == 202
    upper, lower = band[:101], band[101:][::-1]
    assert np.allclose(upper[:, 0], fit[:, 0]) and np.allclose(lower[:, 0], fit[:, 0])
    assert (upper[:, 1] <= fit[:, 1] + 0.05).all() and (lower[:, 1] >= fit[:, 1] - 0.05).all()
    assert (lower[:, 1] - upper[:, 1])[[0, -1]].min() > 5  # a band away from the control's price


def test_the_profit_curve_shows_the_recommended_price_and_flags_an_edge() -> None:
    svg = ET.fromstring(profit_svg(_demand(), true_optimum=0.957) or "")
    rec = next(g for g in svg.iter(f"{SVG}g") if g.get("class") == "recommended")
    assert rec.get("data-price-ratio") == "0.96"
    assert rec.findtext(f"{SVG}text") == "curve peaks at x0.960 [0.930, 0.990]"
    line = rec.find(f"{SVG}line")
    rect = next(r for r in svg.iter(f"{SVG}rect") if r.get("class") == "recommended-interval")
    x, a = float(line.get("x1", "nan")), float(rect.get("x", "nan"))  # type: ignore[union-attr]
    assert a < x < a + float(rect.get("width", "nan"))
    # the recommendation lies between p95 (0.95) and list (1.00)
    assert _circle(svg, "p95")[0] < x < _circle(svg, "list")[0]
    truth = next(g for g in svg.iter(f"{SVG}g") if g.get("class") == "true-optimum")
    assert truth.findtext(f"{SVG}text") == "true optimum x0.957"
    assert not [t for t in svg.iter(f"{SVG}text") if t.get("class") == "edge-flag"]
    edge = _demand(optimal_price_ratio=0.9, optimal_price_ratio_ci_low=0.9,
                   optimal_price_ratio_ci_high=0.95, at_range_edge=True)  # fmt: skip
    flagged = ET.fromstring(profit_svg(edge) or "")
    assert [t.text for t in flagged.iter(f"{SVG}text") if t.get("class") == "edge-flag"] == [
        "at the edge of the tested range"
    ]
    section = curves_section(edge)
    assert "At the edge of the tested range: the best price may lie outside" in section
    assert (
        "the fitted profit curve peaks at <b>x0.900</b> of the control's [0.900, 0.950]" in section
    )


def test_without_unit_costs_there_is_no_profit_curve_and_no_recommendation() -> None:
    demand = _demand(optimal_price_ratio=None, optimal_price_ratio_ci_low=None,
                     optimal_price_ratio_ci_high=None, at_range_edge=None)  # fmt: skip
    demand["curve"] = [c | {"profit": None} for c in demand["curve"]]
    assert profit_svg(demand) is None
    section = curves_section(demand)
    assert "No recommended price" in section and "No profit curve" in section
    assert 'id="demand-curve"' in section


def test_the_band_is_the_elasticity_interval_through_the_curve() -> None:
    r = np.array([0.9, 0.95, 1.0, 1.05])
    low, high = units_ratio_band(r, -2.5, -1.5)
    assert np.allclose(low, [0.9**-1.5, 0.95**-1.5, 1.0, 1.05**-2.5])
    assert np.allclose(high, [0.9**-2.5, 0.95**-2.5, 1.0, 1.05**-1.5])
    for eps in np.linspace(-2.5, -1.5, 11):
        assert (low - 1e-12 <= units_ratio(r, eps)).all() and (
            units_ratio(r, eps) <= high + 1e-12
        ).all()


def test_the_heatmap_gives_each_arm_its_colour() -> None:
    df = _ladder(n=12, periods=6)
    img = np.asarray(assignment_heatmap(df, arms=ARMS).axes[0].images[0].get_array())
    for code, arm in enumerate(ARMS, start=2):
        assert (img == code).sum() == (df["arm"] == arm).sum()
    assert (img == 0).sum() == (df["arm"] == "list").sum()


def test_a_two_arm_page_has_no_k_arm_part() -> None:
    df = _ladder(n=12, periods=6)
    two = df.assign(arm=np.where(df["treated"] == 1, "p95", "list"))
    est = replay_estimates(two.drop(columns="arm"), experiment="two", design="random-days",
                           estimators=["fe"])  # fmt: skip
    page = build_report(two.drop(columns="arm"), est, title="two", design="random-days").html
    assert "<tr><td>units</td>" in page  # the two-arm scorecard
    for part in ('id="ladder"', "scorecard arms", "Which arm is best", "tr.named", "Arms:"):
        assert part not in page, part
