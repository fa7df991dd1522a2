"""``pricelab analyze --method demand`` from an analyst's seat: a long panel of a price ladder
in, the demand and profit curves and the recommended price out; one sentence for each thing
it cannot read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from analysis.cli import register
from analysis.demand import ArmTotals, fit_demand

RATIOS = {"list": 1.0, "p90": 0.9, "p95": 0.95, "p105": 1.05}


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.command()
    def version() -> None:  # a second command so "analyze" stays a subcommand
        """unused"""

    return app


def long_panel(seed: int, products: int = 80, days: int = 30) -> pd.DataFrame:
    """A random-days ladder as a long panel: elasticity -2, unit cost 48% of list price."""
    rng = np.random.default_rng(seed)
    names = list(RATIOS)
    base = rng.uniform(5.0, 50.0, products)
    mu = np.exp(rng.uniform(0.0, np.log(20.0), products))
    arm = rng.integers(0, len(names), (products, days))
    r = np.array([RATIOS[a] for a in names])[arm]
    units = rng.poisson(mu[:, None] * r**-2.0)
    price = np.round(base[:, None] * r, 2)
    return pd.DataFrame(
        {
            "product": np.repeat([f"P{i:03d}" for i in range(products)], days),
            "day": np.tile(np.arange(days), products),
            "arm": np.array(names)[arm].ravel(),
            "price_ratio": r.ravel(),
            "units": units.ravel(),
            "revenue": (units * price).ravel(),
            "unit_cost": np.repeat(np.round(0.48 * base, 2), days),
        }
    )


def totals(df: pd.DataFrame) -> ArmTotals:
    """The panel summed per product and arm by hand, the control first."""
    order = list(RATIOS)
    products = sorted(df["product"].unique())
    shape = (len(products), len(order))
    n, u, rev, cost = (np.zeros(shape) for _ in range(4))
    row = {p: i for i, p in enumerate(products)}
    for rec in df.itertuples():
        i, j = row[rec.product], order.index(rec.arm)
        n[i, j] += 1
        u[i, j] += rec.units
        rev[i, j] += rec.revenue
        cost[i, j] += rec.units * rec.unit_cost
    return ArmTotals(tuple(order), np.array(list(RATIOS.values())), n, u, rev, cost)


def run(app: typer.Typer, path: Path, *extra: str) -> tuple[int, str]:
    args = ["analyze", str(path), "--unit", "product", "--time", "day", "--method", "demand"]
    res = CliRunner().invoke(app, [*args, *extra])
    return res.exit_code, res.output


DEMAND = ("--arm", "arm", "--control", "list", "--units", "units", "--revenue", "revenue")


def test_json_has_the_curves_and_the_recommendation(app: typer.Typer, tmp_path: Path) -> None:
    df = long_panel(1)
    path = tmp_path / "ladder.csv"
    df.to_csv(path, index=False)
    code, out = run(app, path, *DEMAND, "--cost", "unit_cost", "--json")
    assert code == 0, out
    doc = json.loads(out)
    want = fit_demand(totals(df)).to_dict()
    for key in ("elasticity", "elasticity_ci_low", "elasticity_ci_high", "optimal_price_ratio",
                "optimal_price_ratio_ci_low", "optimal_price_ratio_ci_high", "at_range_edge",
                "curvature_pvalue", "profit_change_at_optimum"):  # fmt: skip
        assert doc[key] == pytest.approx(want[key], rel=1e-9), key
    assert doc["control"] == "list" and doc["arm_column"] == "arm"
    assert [p["arm"] for p in doc["points"]] == ["p90", "p95", "list", "p105"]  # by price
    assert len(doc["curve"]) == 101
    assert -2.6 < doc["elasticity"] < -1.4
    assert 0.9 <= doc["optimal_price_ratio"] <= 1.05


def test_the_table_says_the_price_and_flags_an_edge(app: typer.Typer, tmp_path: Path) -> None:
    df = long_panel(2)
    df["unit_cost"] *= 0.7 / 0.48  # costs 70% of list: profit rises through the ladder's top
    path = tmp_path / "ladder.csv"
    df.to_csv(path, index=False)
    code, out = run(app, path, *DEMAND, "--cost", "unit_cost")
    assert code == 0, out
    assert "the fitted profit curve peaks at price ratio 1.05" in out and "at the edge" in out
    assert "the best price may lie outside what was tested" in out
    # an offline fit decides nothing: the price is labelled as evidence, not a decision
    assert "where the evidence points, not yet decided" in out
    assert "not a price to set" in out and "test above x1.050 next" in out


def test_blacked_out_and_unrandomised_cells_are_left_out(app: typer.Typer, tmp_path: Path) -> None:
    df = long_panel(3)
    dark = df.assign(off=0, p=0.75)
    dark.loc[dark["day"] < 3, "off"] = 1
    dark.loc[dark["day"] < 3, "units"] *= 50  # a washout's sales: must not count
    dark.loc[dark["day"] == 29, "p"] = 0.0  # not randomised
    dark.to_csv(tmp_path / "dark.csv", index=False)
    kept = df[(df["day"] >= 3) & (df["day"] < 29)]
    kept.to_csv(tmp_path / "kept.csv", index=False)
    extra = (*DEMAND, "--cost", "unit_cost", "--json")
    a = json.loads(run(app, tmp_path / "dark.csv", *extra, "--blackout", "off",
                       "--probability", "p")[1])  # fmt: skip
    b = json.loads(run(app, tmp_path / "kept.csv", *extra)[1])
    assert a["elasticity"] == pytest.approx(b["elasticity"], rel=1e-12)
    assert a["optimal_price_ratio"] == pytest.approx(b["optimal_price_ratio"], rel=1e-12)


@pytest.mark.parametrize(
    ("change", "extra", "sentence"),
    [
        ("drop_ratio", (), "Column(s) ['price_ratio'] not found"),
        ("two_ratios", (), "arm 'p90' has 2 values of 'price_ratio'"),
        ("none", ("--outcome", "units"), "--method demand takes --units COL and --revenue COL"),
        ("none", ("--by", "arm"), "--method demand does not take --by"),
        ("none", ("--price-ratio", "nope"), "Column(s) ['nope'] not found"),
        ("blank_units", (), "column 'units' has 1 missing, infinite or non-numeric value(s)"),
        ("inf_cost", ("--cost", "unit_cost"), "column 'unit_cost' has 1 missing, infinite"),
        ("negative_cost", ("--cost", "unit_cost"), "column 'unit_cost' has 12 negative value(s)"),
        ("profit_above", ("--profit", "profit"), "column 'profit' is above revenue in"),
        # two rows of one cell are summed (a return netted), but a cell has one arm
        ("duplicate", (), "product 'P000' has rows with different 'arm' at period 0"),
        ("control_sold_nothing", (), "arm 'list' sold nothing in its usable cells"),
        ("arm_sold_nothing", (), "arm 'p90' sold nothing in its usable cells"),
        ("control_dark", ("--blackout", "off"), "arm 'list' has no usable cells"),
    ],
)
def test_what_it_cannot_read_is_one_sentence(
    app: typer.Typer, tmp_path: Path, change: str, extra: tuple[str, ...], sentence: str
) -> None:
    df = long_panel(4, products=20, days=12)
    if change == "drop_ratio":
        df = df.drop(columns="price_ratio")
    elif change == "two_ratios":
        df.loc[df.index[df["arm"] == "p90"][0], "price_ratio"] = 0.91
    elif change == "blank_units":
        df["units"] = df["units"].astype(float)
        df.loc[5, "units"] = np.nan
    elif change == "inf_cost":
        df.loc[5, "unit_cost"] = np.inf
    elif change == "negative_cost":
        df.loc[df["product"] == "P001", "unit_cost"] *= -1
    elif change == "profit_above":
        df["profit"] = df["revenue"] - df["units"] * df["unit_cost"]
        df.loc[df["units"] > 0, "profit"] += 1e6
    elif change == "duplicate":
        other = df.iloc[:1].assign(arm="list" if df["arm"].iloc[0] != "list" else "p90")
        df = pd.concat([other, df])
    elif change in ("control_sold_nothing", "arm_sold_nothing"):
        name = "list" if change == "control_sold_nothing" else "p90"
        df.loc[df["arm"] == name, ["units", "revenue"]] = 0
    elif change == "control_dark":
        df["off"] = (df["arm"] == "list").astype(int)
    path = tmp_path / "p.csv"
    df.to_csv(path, index=False)
    code, out = run(app, path, *DEMAND, *extra)
    assert code == 2, out
    assert sentence in out and "Traceback" not in out
    # one sentence, after the reader's notes on what it read (a blank units cell is one)
    assert len([line for line in out.strip().splitlines() if not line.startswith("note: ")]) == 1


def test_demand_without_arms_or_with_two_arm_options_is_one_sentence(
    app: typer.Typer, tmp_path: Path
) -> None:
    path = tmp_path / "p.csv"
    long_panel(5, products=10, days=8).assign(treated=0).to_csv(path, index=False)
    code, out = run(app, path, "--treated", "treated", "--units", "units", "--revenue", "revenue")
    assert code == 2 and "give --arm COL with --control NAME" in out
    args = ["analyze", str(path), "--unit", "product", "--time", "day", "--method", "dm",
            "--outcome", "units", "--treated", "treated", "--cost", "unit_cost"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and "--cost, --profit and --price-ratio go with" in res.output
