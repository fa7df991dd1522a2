"""k arms on a panel (analysis/arms.py and ``pricelab analyze --arm COL --control NAME``): each
arm against the control, and intervals that hold for all the comparisons at once."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from scipy import stats
from typer.testing import CliRunner

from analysis.arms import dm_correlation, holm_adjust, max_abs_quantile, read_arms
from analysis.cli import compare_arms, register

ARMS = ("control", "down", "up")


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.command()
    def version() -> None:  # a second command so "analyze" stays a subcommand
        pass

    return app


def panel(seed: int, effects: dict[str, float], n: int = 40, days: int = 10) -> pd.DataFrame:
    """Random days with three arms: each product-day draws its arm with equal shares; products
    have their own levels and an AR(1) day-to-day noise, the arms shift the outcome by
    ``effects``."""
    rng = np.random.default_rng(seed)
    level = rng.lognormal(2.0, 0.5, n)
    noise = np.zeros((n, days))
    e = rng.normal(0, 1.5, (n, days))
    noise[:, 0] = e[:, 0]
    for t in range(1, days):
        noise[:, t] = 0.5 * noise[:, t - 1] + e[:, t]
    arm = rng.choice(ARMS, size=(n, days))
    shift = np.vectorize(effects.get)(arm)
    return pd.DataFrame(
        {
            "product": np.repeat([f"P{i:03d}" for i in range(n)], days),
            "day": np.tile(np.arange(days), n),
            "arm": arm.ravel(),
            "units": (level[:, None] + noise + shift).ravel(),
        }
    )


def test_the_critical_value_is_scipys_dunnett_on_equal_variance_samples() -> None:
    # scipy.stats.dunnett on independent normal samples of equal size: its interval's half
    # width over the pooled SE of a difference is Dunnett's critical value, which ours gives
    # from the correlation of such comparisons (1/2 with equal groups) and df N - k
    rng = np.random.default_rng(3)
    n, k = 30, 4
    samples = [rng.normal(0, 1, n) for _ in range(k - 1)]
    control = rng.normal(0, 1, n)
    ci = stats.dunnett(*samples, control=control).confidence_interval(0.95)
    pooled = np.sqrt(np.mean([np.var(s, ddof=1) for s in [*samples, control]]))
    theirs = (ci.high - ci.low) / 2 / (pooled * np.sqrt(2 / n))
    corr = np.full((k - 1, k - 1), 0.5)
    np.fill_diagonal(corr, 1.0)
    ours = max_abs_quantile(corr, float(k * n - k), 0.05)
    assert theirs == pytest.approx(np.full(k - 1, ours), abs=0.01)
    # published values (Dunnett's tables, two-sided 5%): 2 comparisons, infinite df: 2.21;
    # 3 comparisons, 40 df: 2.44
    two = np.array([[1.0, 0.5], [0.5, 1.0]])
    assert max_abs_quantile(two, None, 0.05) == pytest.approx(2.21, abs=0.005)
    assert max_abs_quantile(corr, 40.0, 0.05) == pytest.approx(2.44, abs=0.005)
    # one comparison: its own t quantile
    assert max_abs_quantile(np.ones((1, 1)), 20.0, 0.05) == pytest.approx(stats.t(20).ppf(0.975))


def test_holm_against_hand_figures() -> None:
    # sorted 0.01, 0.03, 0.04: x3 = 0.03, x2 = 0.06, x1 = 0.04 -> running max 0.06
    assert holm_adjust([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    out = holm_adjust([0.5, math.nan, 0.9])  # NaN does not count: m = 2
    assert out[0] == pytest.approx(1.0) and math.isnan(out[1]) and out[2] == pytest.approx(1.0)


def test_the_comparisons_share_the_control_so_their_correlation_is_about_a_half() -> None:
    # equal arms, cells independent across products: Cov(a - c, b - c) = Var(c), so the
    # correlation is Var(c) / (Var(a) + Var(c)) = 1/2
    df = panel(0, dict.fromkeys(ARMS, 0.0), n=400, days=20)
    corr = dm_correlation(df, read_arms(df, "arm", "control", "product"), "units", None)
    assert corr.shape == (2, 2)
    assert corr[0, 1] == pytest.approx(0.5, abs=0.06)


# a study over seeded panels: the slow suite (README "Testing"; CI runs it)
@pytest.mark.slow
def test_simultaneous_intervals_cover_every_arm_at_once() -> None:
    # 400 seeded experiments; the live offline path (compare_arms, as analyze --arm runs it)
    truth = {"control": 0.0, "down": 0.8, "up": -0.4}
    runs = 400
    own = np.zeros((runs, 2), dtype=bool)
    sim = np.zeros(runs, dtype=bool)
    bonf = np.zeros(runs, dtype=bool)
    for seed in range(runs):
        df = panel(seed, truth)
        c = compare_arms(df, "arm", "control", "dm", None, None, 0.05, "product", "day",
                         "units", None, [])  # fmt: skip
        assert c.simultaneous.method == "dunnett-t"
        b = compare_arms(df, "arm", "control", "fe", None, None, 0.05, "product", "day",
                         "units", None, [])  # fmt: skip
        assert b.simultaneous.method == "bonferroni"
        targets = [truth[a] for a in c.arms.others]
        for j, (r, t) in enumerate(zip(c.results, targets, strict=True)):
            lo, hi = r.conf_int(0.05)
            own[seed, j] = lo <= t <= hi
            slo, shi = c.simultaneous.intervals[j]
            assert slo <= lo and hi <= shi  # wider than its own, by one shared critical value
        sim[seed] = all(
            lo <= t <= hi for (lo, hi), t in zip(c.simultaneous.intervals, targets, strict=True)
        )
        bonf[seed] = all(
            lo <= t <= hi for (lo, hi), t in zip(b.simultaneous.intervals, targets, strict=True)
        )
    mcse = math.sqrt(0.95 * 0.05 / runs)
    # each comparison's own interval: nominal
    assert np.all(np.abs(own.mean(axis=0) - 0.95) < 3 * mcse), own.mean(axis=0)
    # both at once: the unadjusted pair misses more often than 5% (about 9.5% with
    # correlation 1/2), the simultaneous intervals do not
    assert own.all(axis=1).mean() < 0.95
    assert sim.mean() > 0.95 - 3 * mcse, sim.mean()
    assert bonf.mean() > 0.95 - 3 * mcse, bonf.mean()


COLS = ["--unit", "product", "--time", "day", "--outcome", "units"]


def test_analyze_arm_json_has_one_object_per_arm(app: typer.Typer, tmp_path: Path) -> None:
    path = tmp_path / "k3.csv"
    panel(1, {"control": 0.0, "down": 1.0, "up": -1.0}).to_csv(path, index=False)
    args = ["analyze", str(path), *COLS, "--arm", "arm", "--control", "control", "--method"]
    res = CliRunner().invoke(app, [*args, "dm", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["control"] == "control" and doc["simultaneous"] == "dunnett-t"
    assert [a["arm"] for a in doc["arms"]] == ["down", "up"]
    for a in doc["arms"]:
        for key in ("effect", "se", "ci_low", "ci_high", "control_mean", "relative_effect",
                    "relative_ci_low", "relative_ci_high", "sim_ci_low", "sim_ci_high",
                    "pvalue_holm"):  # fmt: skip
            assert a[key] is not None, key
        assert a["sim_ci_low"] < a["ci_low"] < a["effect"] < a["ci_high"] < a["sim_ci_high"]
    text = CliRunner().invoke(app, [*args, "fe"])
    assert text.exit_code == 0, text.output
    assert "(bonferroni)" in text.output.splitlines()[-1]


def test_analyze_arm_says_which_arm_is_best_with_hsus_mcb(app: typer.Typer, tmp_path: Path) -> None:
    # "down" +3 (a large effect against noise of about 1.5 per cell), "up" 0: MCB rules out
    # the control and "up" as the best; with fe (no joint distribution) there is no MCB
    path = tmp_path / "k3.csv"
    panel(2, {"control": 0.0, "down": 3.0, "up": 0.0}).to_csv(path, index=False)
    args = ["analyze", str(path), *COLS, "--arm", "arm", "--control", "control", "--method"]
    res = CliRunner().invoke(app, [*args, "dm", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["best_method"] == "hsu-mcb" and doc["best_set"] == ["down"]
    best = {b["arm"]: b for b in doc["best"]}
    assert [b["arm"] for b in doc["best"]] == ["control", "down", "up"]
    assert best["down"]["mcb_low"] == 0.0 and best["down"]["mcb_high"] > 0
    for name in ("control", "up"):
        assert best[name]["mcb_high"] == 0.0 and best[name]["mcb_low"] < 0
        assert best[name]["in_best_set"] is False
    text = CliRunner().invoke(app, [*args, "dm"])
    assert "cannot be ruled out: down" in text.output
    fe = json.loads(CliRunner().invoke(app, [*args, "fe", "--json"]).output)
    assert fe["best"] is None and fe["best_method"] is None


def test_arm_on_two_arms_is_the_treated_analysis(app: typer.Typer, tmp_path: Path) -> None:
    df = panel(2, {"control": 0.0, "down": 0.5, "up": 0.0})
    df = df.replace({"arm": {"up": "control"}})  # two arms: "up" shifted nothing
    df = df.assign(treated=(df["arm"] == "down").astype(int))
    path = tmp_path / "k2.csv"
    df.to_csv(path, index=False)
    for method in ("dm", "fe"):
        base = ["analyze", str(path), *COLS, "--method", method, "--json", "--relative"]
        two = json.loads(CliRunner().invoke(app, [*base, "--treated", "treated"]).output)
        by_arm = ["--arm", "arm", "--control", "control"]
        res = CliRunner().invoke(app, [*base[:-1], *by_arm])
        (one,) = json.loads(res.output)["arms"]
        for key, value in two.items():
            if isinstance(value, float):
                assert one[key] == pytest.approx(value, rel=1e-12), key
            else:
                assert one[key] == value, key
        assert (one["sim_ci_low"], one["sim_ci_high"]) == (one["ci_low"], one["ci_high"])


@pytest.mark.parametrize(
    ("extra", "sentence"),
    [
        (["--arm", "arm", "--control", "list"], "--control 'list' is not an arm of column 'arm'"),
        (["--arm", "arm"], "--arm needs --control NAME"),
        (["--arm", "arm", "--control", "control", "--treated", "t"], "not both or neither"),
        ([], "give --treated COL (two arms) or --arm COL"),
        (["--arm", "shade", "--control", "control"], "Column(s) ['shade'] not found"),
        (["--arm", "arm", "--control", "control", "--by", "arm"], "--arm does not take --by"),
    ],
)
def test_bad_arm_options_are_one_sentence(
    app: typer.Typer, tmp_path: Path, extra: list[str], sentence: str
) -> None:
    path = tmp_path / "k3.csv"
    panel(1, dict.fromkeys(ARMS, 0.0)).to_csv(path, index=False)
    res = CliRunner().invoke(app, ["analyze", str(path), *COLS, "--method", "dm", *extra])
    assert res.exit_code == 2
    assert sentence in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_methods_that_need_design_probabilities_and_empty_arms_are_refused(
    app: typer.Typer, tmp_path: Path
) -> None:
    df = panel(1, dict.fromkeys(ARMS, 0.0))
    df["off"] = (df["arm"] == "up").astype(int)  # every cell of one arm blacked out
    path = tmp_path / "k3.csv"
    df.to_csv(path, index=False)
    args = ["analyze", str(path), *COLS, "--arm", "arm", "--control", "control", "--method"]
    ht = CliRunner().invoke(app, [*args, "ht"])
    assert ht.exit_code == 2 and "--method ht needs each cell's design probability" in ht.output
    empty = CliRunner().invoke(app, [*args, "dm", "--blackout", "off"])
    assert empty.exit_code == 2
    assert "arm 'up' has no usable cells" in empty.output


def time_bound(seed: int) -> pd.DataFrame:
    """Three arms drawn per product (a time-bound design): days 0-9 every product runs the
    control's policy (not randomised: probability 0), from day 10 each product its arm
    (probability 2/3 of not being control); a common trend of 0.5 a day, product levels."""
    rng = np.random.default_rng(seed)
    n, days = 60, 20
    arm_of = rng.permutation(np.repeat(ARMS, n // 3))
    post = np.arange(days) >= 10
    arm = np.where(post[None, :], arm_of[:, None], "control")
    effect = np.vectorize({"control": 0.0, "down": 1.0, "up": 2.0}.get)(arm)
    y = rng.lognormal(2, 0.4, n)[:, None] + 0.5 * np.arange(days) + effect
    return pd.DataFrame(
        {
            "product": np.repeat([f"P{i:03d}" for i in range(n)], days),
            "day": np.tile(np.arange(days), n),
            "arm": arm.ravel(),
            "p": np.tile(np.where(post, 2 / 3, 0.0), n),
            "units": (y + rng.normal(0, 1, (n, days))).ravel(),
        }
    )


@pytest.mark.parametrize("method", ["dm", "did", "sdid", "cuped"])
def test_per_product_arms_are_the_two_arm_experiment_of_their_products(method: str) -> None:
    # a product the design put in a third arm is not part of the pair (left out whole, not
    # blacked out after its start), and --probability keeps the comparison to the cells the
    # design randomised: each arm's row is the two-arm fit on its products and the control's
    from analysis.estimators.registry import make
    from analysis.panel import Panel

    df = time_bound(5)
    got = compare_arms(df, "arm", "control", method, None, None, 0.05, "product", "day",
                       "units", None, [], "p")  # fmt: skip
    for name, result in zip(got.arms.others, got.results, strict=True):
        products = df.loc[df["arm"] == name, "product"].unique()
        controls = set(df["product"]) - set(df.loc[df["arm"] != "control", "product"])
        two = df[df["product"].isin([*products, *controls])]
        two = two.assign(treated=(two["arm"] == name).astype(int))
        panel = Panel.from_long(two, unit="product", time="day", outcome="units",
                                treated="treated", probability="p")  # fmt: skip
        want = make(method).fit(panel).result
        assert result.effect == pytest.approx(want.effect, rel=1e-12)
        assert result.se == pytest.approx(want.se, rel=1e-12)
        assert result.df == want.df
    if method != "dm":  # the pre-period's control cells are not mistaken for the control arm
        assert [r.effect for r in got.results] == pytest.approx([1.0, 2.0], abs=0.5)


def test_a_blackout_column_is_read_one_way_on_both_paths(app: typer.Typer, tmp_path: Path) -> None:
    df = panel(1, dict.fromkeys(ARMS, 0.0))
    df["treated"] = (df["arm"] == "down").astype(int)
    df["off"] = 0.0
    df.loc[3, "off"] = np.nan  # an empty cell is neither 0 nor 1: said, not guessed
    path = tmp_path / "k3.csv"
    df.to_csv(path, index=False)
    for extra in (["--treated", "treated"], ["--arm", "arm", "--control", "control"]):
        res = CliRunner().invoke(
            app, ["analyze", str(path), *COLS, "--method", "dm", "--blackout", "off", *extra]
        )
        assert res.exit_code == 2, res.output
        assert "Blackout column 'off' must be 0/1 (or boolean) in every row" in res.output


def test_a_cell_with_no_arm_is_blacked_out_and_names_no_third_arm() -> None:
    df = time_bound(5)
    controls = set(df["product"]) - set(df.loc[df["arm"] != "control", "product"])
    blank = df["product"].isin(sorted(controls)[:3]) & (df["day"] == 0)
    gap = df.assign(arm=df["arm"].where(~blank))  # an analyst's file with empty pre-period cells
    got = compare_arms(gap, "arm", "control", "did", None, None, 0.05, "product", "day",
                       "units", None, [])  # fmt: skip
    # the three control products stay in every pair, their empty cells blacked out
    whole = compare_arms(gap.assign(off=blank.astype(int), arm=df["arm"]), "arm", "control",
                         "did", None, None, 0.05, "product", "day", "units", "off", [])  # fmt: skip
    for r, w in zip(got.results, whole.results, strict=True):
        assert r.effect == pytest.approx(w.effect, rel=1e-12)
        assert r.n_units == w.n_units


def test_a_missing_column_is_named_against_the_analysts_table(
    app: typer.Typer, tmp_path: Path
) -> None:
    path = tmp_path / "k3.csv"
    panel(1, dict.fromkeys(ARMS, 0.0)).to_csv(path, index=False)
    args = ["analyze", str(path), "--unit", "product", "--time", "day", "--outcome", "unitz"]
    res = CliRunner().invoke(app, [*args, "--arm", "arm", "--control", "control", "--method", "dm"])
    assert res.exit_code == 2
    assert res.output.strip() == (
        "error: Column(s) ['unitz'] not found; the table has ['product', 'day', 'arm', 'units']."
    )
