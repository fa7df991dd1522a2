"""``pricelab compare-designs --ladder``: every design's example experiment run as a price ladder,
each arm scored against the simulator's truth for that arm, with the fits the analysis worker
publishes per arm."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from analysis.results import NotIdentified
from lab.compare import CompareConfig, arm_rows, make_spec, run_comparison, summarise
from lab.config import MarketConfig
from lab.market import Market
from lab.price import ladder_market
from lab.simulate import run_spec
from lab.studies.ladder import analyse
from streams.cli import app

LADDER = (0.90, 0.95, 1.05)
ARMS = ("p90", "p95", "p105")


@pytest.mark.parametrize("design", ["random-days", "time-bound", "crossover"])
def test_each_arms_fit_is_what_the_worker_publishes(design: str) -> None:
    market = Market(ladder_market(MarketConfig(n_products=30), "a ladder"), seed=3)
    spec = make_spec(design, market, days=28, seed=4, ladder=LADDER)
    assert [(a.name, a.price_ratio) for a in spec.arm_list()] == [
        ("list", 1.0), ("p90", 0.9), ("p95", 0.95), ("p105", 1.05)
    ]  # fmt: skip
    sim = run_spec(spec, market)
    cfg = CompareConfig(designs=(design,), ladder=LADDER, metrics=("units", "profit"))
    mine = {(r["metric"], r["estimator"], r["arm"]): r for r in arm_rows(cfg, design, spec, sim, 0)}
    sink = analyse(sim)[0]  # the analysis worker's own look at the same cells
    published = {
        (r.metric, r.method, r.arm): r
        for r in sink.estimates
        if not isinstance(r, NotIdentified) and r.metric in ("units", "profit")
    }
    assert set(mine) == set(published) and len(mine) >= 6
    for key, r in mine.items():
        live = published[key]
        assert (r["effect"], r["se"]) == pytest.approx((live.effect, live.se), rel=1e-9)
        assert (r["sim_low"], r["sim_high"]) == pytest.approx(live.sim_ci, rel=1e-9)
        assert r["sim_method"] == live.sim_method
        assert r["truth"] == sim.metric_truth(key[0], arm=key[2])


def test_each_arm_is_scored_against_its_own_truth() -> None:
    # 40 runs of random days: each arm's estimate is centred on that arm's truth (a truth paired
    # with another arm's estimate would be off by the gap between the arms, 4 to 12 units)
    cfg = CompareConfig(
        market=MarketConfig(n_products=40), designs=("random-days",), runs=40, ladder=LADDER
    )
    table = summarise(run_comparison(cfg))
    fe = table[table["estimator"] == "fe"].set_index("arm")
    assert list(fe.index) == list(ARMS)
    assert fe.loc["p90", "truth"] > fe.loc["p95", "truth"] > 0 > fe.loc["p105", "truth"]
    for arm, r in fe.iterrows():
        assert abs(r["bias"]) <= 3.5 * r["bias_mcse"], arm
        # 40 runs: a coverage of 95% has an MC SE of 0.034
        assert r["coverage"] >= 0.85 and r["sim_coverage"] >= r["coverage"], arm
    (family,) = set(fe["family"])
    assert family >= 0.85
    assert set(fe["sim_method"]) == {"bonferroni"}
    assert set(table.loc[table["estimator"] == "dm", "sim_method"]) == {"dunnett-t"}


def _invoke(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(app, ["compare-designs", *args])
    return res.exit_code, res.stdout, res.stderr


def test_an_analyst_reads_a_ladders_table() -> None:
    code, out, err = _invoke(
        "--ladder", "0.9,0.95,1.05", "--designs", "random-days,optimal-switchback",
        "--runs", "2", "--products", "30",
    )  # fmt: skip
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["design", "estimator", "arm"]
    assert "sim_coverage" in lines[0] and "family" in lines[0]
    rows = [line.split()[:3] for line in lines[1:7]]
    assert rows == [["random-days", e, a] for e in ("fe", "dm") for a in ARMS]
    assert any(line.startswith("arm: that arm against the list price") for line in lines)
    assert "random-days: ht not compared per arm" in err
    assert "optimal-switchback: hajek, ht not compared per arm" in err
    assert "assuming" not in err  # a ladder names its prices


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--ladder", "0.9"], "--ladder: a ladder needs 2 to 7 price ratios"),
        (["--ladder", "0.9,0.9"], "must differ"),
        (["--ladder", "0.9,1"], "not 1 (the list price is the control)"),
        (["--ladder", "0.9,cheap"], "--ladder must be price ratios separated by commas"),
        (["--ladder", "0.9,1.05", "--price-change", "0.1"], "give the prices in --ladder only"),
        (["--ladder", "0.9,1.05", "--estimators", "dm@class"], "not on the class x day panel"),
    ],
)
def test_a_bad_ladder_is_one_sentence(args: list[str], says: str) -> None:
    code, out, err = _invoke(*args, "--designs", "random-days", "--runs", "2", "--products", "20")
    assert code == 2 and out == ""
    (line,) = err.strip().splitlines()
    assert line.startswith("error: ") and says in line and "Traceback" not in err


def test_a_configured_effect_modifier_is_refused_for_a_ladder(tmp_path) -> None:
    config = tmp_path / "market.yaml"
    config.write_text("effect_modifiers: {rating: 0.1}\n")
    code, _, err = _invoke(
        "--ladder", "0.9,1.05", "--market", str(config), "--designs", "random-days",
        "--runs", "2", "--products", "20",
    )  # fmt: skip
    assert code == 2 and "effect_modifiers cannot run with a price ladder" in err
