"""``pricelab analyze`` on an adaptive ladder's panel (issue #57; docs/adaptive.md).

The expected estimates are :class:`analysis.adaptive.AdaptiveArms` fitted here, on matrices
built in the test from the panel's own columns (not through the CLI's code); the bias check
builds a panel whose allocation moves toward one arm while the level rises."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from analysis.adaptive import AdaptiveArms, AdaptivePanel
from analysis.adaptive_offline import recorded_probabilities, with_recorded
from analysis.errors import AnalysisError
from analysis.estimators import registry
from analysis.panel import Panel
from streams.cli import app

PRODUCTS = [f"P{i:02d}" for i in range(20)]
DAYS = 14
NAMES = ["list", "p85", "p115", "p130"]


def _spec_text(adaptive: bool = True) -> str:
    costs = ", ".join(f"{p}: 60" for p in PRODUCTS)
    block = "adaptive: {rule: thompson, warmup: 3}" if adaptive else ""
    return f"""
id: analyze-adaptive
products: [{", ".join(PRODUCTS)}]
start: "2026-05-04T00:00:00+00:00"
end: "2026-05-{4 + DAYS:02d}T00:00:00+00:00"
seed: 21
unit_costs: {{{costs}}}
arms:
  - {{name: list, policy: list-price, price_ratio: 1.0, allocation: 0.25, control: true}}
  - {{name: p85, policy: price-85, price_ratio: 0.85, allocation: 0.25}}
  - {{name: p115, policy: price-115, price_ratio: 1.15, allocation: 0.25}}
  - {{name: p130, policy: price-130, price_ratio: 1.30, allocation: 0.25}}
{block}
"""


@pytest.fixture(scope="module")
def ladder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A simulated adaptive ladder's spec and panel (``pricelab simulate --spec``)."""
    d = tmp_path_factory.mktemp("adaptive")
    spec, out = d / "ad.yaml", d / "ad.csv"
    spec.write_text(_spec_text())
    res = CliRunner().invoke(
        app, ["simulate", "--spec", str(spec), "--out", str(out), "--seed", "4"]
    )
    assert res.exit_code == 0, res.output
    return spec, out


def _analyze(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(app, ["analyze", *args])
    return res.exit_code, res.stdout, res.stderr


def _expected(panel: pd.DataFrame, metric: str, horizon: int) -> AdaptiveArms:
    """AdaptiveArms on the panel's cells: N x T matrices from its columns."""
    panel = panel.sort_values(["product", "period"])
    n, t = panel["product"].nunique(), panel["period"].nunique()
    y = panel[metric].to_numpy(float).reshape(n, t)
    arm = panel["arm"].map({a: i for i, a in enumerate(NAMES)}).to_numpy().reshape(n, t)
    probs = panel.groupby("period")[[f"probability_{a}" for a in NAMES]].first().to_numpy(float)
    blackout = panel["blackout"].to_numpy(bool).reshape(n, t)
    cells = AdaptivePanel(np.where(blackout, np.nan, y), arm.astype(np.int64), probs, blackout)
    return AdaptiveArms(method="aipw", lag=0, control=0, alpha=0.05, horizon=horizon).fit(cells)


@pytest.mark.parametrize("with_spec", [False, True])
def test_default_is_the_workers_aipw_on_the_recorded_probabilities(
    ladder: tuple[Path, Path], with_spec: bool
) -> None:
    spec, panel_path = ladder
    extra = ["--spec", str(spec)] if with_spec else ["--arm", "arm", "--control", "list"]
    code, out, err = _analyze(str(panel_path), "--unit", "product", "--time", "period", *extra,
                              "--json")  # fmt: skip
    assert code == 0, err
    docs = [json.loads(line) for line in out.splitlines()]
    rows = [d for d in docs if d.get("kind") != "adaptive"]
    looks = {d["metric"]: d for d in docs if d.get("kind") == "adaptive"}
    panel = pd.read_csv(panel_path)
    assert {r["metric"] for r in rows} == {"units", "revenue", "profit"} == set(looks)
    for metric in ("units", "revenue", "profit"):
        fit = _expected(panel, metric, DAYS)
        for a, name in enumerate(NAMES[1:], start=1):
            (row,) = [r for r in rows if r["metric"] == metric and r["arm"] == name]
            assert row["method"] == "aipw_adaptive"
            assert row["effect"] == pytest.approx(fit.looks_.effect[-1, a], rel=1e-9)
            assert row["cs_low"] == pytest.approx(fit.looks_.low[-1, a], rel=1e-9)
            assert row["cs_high"] == pytest.approx(fit.looks_.high[-1, a], rel=1e-9)
        look = looks[metric]
        best = [n for n, b in zip(NAMES, fit.looks_.best_set[-1], strict=True) if b]
        assert look["best_set"] == best
        assert look["recommended"] == NAMES[int(fit.looks_.mean[-1].argmax())]
        recorded = panel.groupby("period")[[f"probability_{a}" for a in NAMES]].first()
        np.testing.assert_allclose(
            [row["probabilities"] for row in look["allocation"]], recorded.to_numpy(), rtol=1e-12
        )
    assert ("no --spec" in err) is not with_spec


def test_text_output_names_the_best_arm_on_the_specs_metric(ladder: tuple[Path, Path]) -> None:
    spec, panel_path = ladder
    code, out, err = _analyze(str(panel_path), "--unit", "product", "--time", "period",
                              "--spec", str(spec))  # fmt: skip
    assert code == 0, err
    fit = _expected(pd.read_csv(panel_path), "profit", DAYS)  # the spec's metric: profit
    assert f"looks best on profit: {NAMES[int(fit.looks_.mean[-1].argmax())]}" in out
    assert "anytime-valid" in out and "are biased and are not published" in out


@pytest.mark.parametrize("method", ["fe", "dm", "hajek", "demand"])
def test_a_fixed_allocation_method_is_refused_in_one_sentence(
    ladder: tuple[Path, Path], method: str
) -> None:
    spec, panel_path = ladder
    args = ["--arm", "arm", "--control", "list", "--outcome", "units"]
    if method == "demand":
        args = ["--arm", "arm", "--control", "list", "--units", "units", "--revenue", "revenue"]
    if method == "hajek":  # two arms, with the design's probability
        args = ["--treated", "treated", "--probability", "probability", "--outcome", "units"]
    for extra in ([], ["--spec", str(spec)]):
        code, out, err = _analyze(str(panel_path), "--unit", "product", "--time", "period",
                                  *args, "--method", method, *extra)  # fmt: skip
        assert code == 2 and out == ""
        assert len(err.strip().splitlines()) == 1
        assert f"--method {method} assumes" in err and "allocation moved with the data" in err


def test_options_the_workers_estimate_does_not_take_are_refused(ladder: tuple[Path, Path]) -> None:
    _, panel_path = ladder
    code, out, err = _analyze(str(panel_path), "--unit", "product", "--time", "period",
                              "--arm", "arm", "--control", "list", "--by", "category",
                              "--relative")  # fmt: skip
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "takes no --by, --relative" in err


def test_an_adaptive_spec_without_recorded_probabilities_is_refused(
    ladder: tuple[Path, Path], tmp_path: Path
) -> None:
    spec, panel_path = ladder
    panel = pd.read_csv(panel_path)
    bare = tmp_path / "bare.csv"
    panel.drop(columns=[f"probability_{a}" for a in NAMES]).to_csv(bare, index=False)
    code, out, err = _analyze(str(bare), "--unit", "product", "--time", "period",
                              "--spec", str(spec))  # fmt: skip
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "no probability_<arm> columns" in err
    # one arm's column missing: named
    part = tmp_path / "part.csv"
    panel.drop(columns=["probability_p130"]).to_csv(part, index=False)
    code, _, err = _analyze(str(part), "--unit", "product", "--time", "period",
                            "--spec", str(spec))  # fmt: skip
    assert code == 2 and "probability_p130" in err and len(err.strip().splitlines()) == 1


def test_probabilities_that_never_move_are_a_fixed_allocation(
    ladder: tuple[Path, Path], tmp_path: Path
) -> None:
    _, panel_path = ladder
    panel = pd.read_csv(panel_path).assign(**{f"probability_{a}": 0.25 for a in NAMES})
    fixed = tmp_path / "fixed.csv"
    panel.to_csv(fixed, index=False)
    base = [str(fixed), "--unit", "product", "--time", "period", "--arm", "arm",
            "--control", "list", "--outcome", "units"]  # fmt: skip
    code, out, err = _analyze(*base, "--method", "dm", "--json")
    assert code == 0, err
    assert {a["arm"] for a in json.loads(out)["arms"]} == set(NAMES[1:])
    code, _, err = _analyze(*base)  # no default on a fixed allocation
    assert code == 2 and "--method is required" in err


def _drifting_ladder(seed: int, n: int = 40, t: int = 16) -> pd.DataFrame:
    """A two-arm ladder whose allocation moves to ``p90`` (0.1 of each period's cells, then 0.9
    from period 8) while every product's level rises by 2 a period; the true effect of p90 is
    +1 in every cell."""
    rng = np.random.default_rng(seed)
    p = np.where(np.arange(t) < t // 2, 0.1, 0.9)
    arm = rng.random((n, t)) < p[None, :]
    level = 20 + 2.0 * np.arange(t)[None, :] + rng.normal(0, 2, (n, 1))
    y = level + 1.0 * arm + rng.normal(0, 1, (n, t))
    prod, per = np.meshgrid(np.arange(n), np.arange(t), indexing="ij")
    return pd.DataFrame(
        {
            "product": [f"P{i:02d}" for i in prod.ravel()],
            "period": per.ravel(),
            "arm": np.where(arm.ravel(), "p90", "list"),
            "treated": arm.ravel().astype(int),
            "probability_list": (1 - p)[per.ravel()],
            "probability_p90": p[per.ravel()],
            "units": y.ravel(),
        }
    )


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_under_a_moving_allocation_dm_is_off_and_aipw_covers(seed: int, tmp_path: Path) -> None:
    df = _drifting_ladder(seed)
    dm = (
        registry.make("dm")
        .fit(Panel.from_long(df, unit="product", time="period", outcome="units", treated="treated"))
        .result
    )
    low, high = dm.conf_int(0.05)
    assert not low <= 1.0 <= high and dm.effect > 5  # the rising level, not the effect
    path = tmp_path / "drift.csv"
    df.to_csv(path, index=False)
    code, out, err = _analyze(str(path), "--unit", "product", "--time", "period", "--arm", "arm",
                              "--control", "list", "--json")  # fmt: skip
    assert code == 0, err
    (row,) = [json.loads(line) for line in out.splitlines() if '"kind"' not in line]
    assert row["cs_low"] <= 1.0 <= row["cs_high"]


def test_the_recorded_columns_round_trip_and_a_period_without_a_record_is_left_out() -> None:
    cells = pd.DataFrame({"product": ["a", "b"] * 3, "period": [0, 0, 1, 1, 2, 2]})
    recorded = {0: (0.5, 0.5), 2: (0.2, 0.8)}
    table = with_recorded(cells, ["list", "p90"], recorded)
    assert list(table.columns) == ["product", "period", "probability_list", "probability_p90"]
    assert table["probability_p90"].isna().tolist() == [False, False, True, True, False, False]
    assert recorded_probabilities(table, "period", ["list", "p90"]) == recorded


def test_the_python_api_refuses_a_fixed_method_on_a_moving_allocation() -> None:
    import pricelab

    df = _drifting_ladder(1)
    with pytest.raises(AnalysisError, match="allocation moved with the data"):
        pricelab.analyze(df, "units", method="dm")
    fixed = df.assign(probability_list=0.5, probability_p90=0.5)
    assert pricelab.analyze(fixed, "units", method="dm").effect > 5  # not refused
