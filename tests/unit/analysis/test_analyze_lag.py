"""``pricelab analyze --lag N`` on an adaptive ladder's panel (issue #57; docs/adaptive.md).

The panel is an adaptive optimal switchback of carryover order 1 played by ``pricelab
simulate --spec``. ``--lag 1`` without the spec reads the periods that drew afresh off the
panel; ``--spec`` takes the lag and the randomisation points from the design. The expected
estimates are :class:`analysis.adaptive.AdaptiveArms` fitted here on matrices built from the
panel's columns, with the design's own randomisation points (``points(spec)``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from analysis.adaptive import AdaptiveArms, AdaptivePanel
from analysis.adaptive_offline import KEPT_BY_CHANCE, fresh_draws
from analysis.errors import AnalysisError
from controller.designs.optimal_switchback import points
from controller.spec import load_spec_file
from streams.cli import app

PRODUCTS = [f"P{i:02d}" for i in range(16)]
DAYS = 10
NAMES = ["list", "p85", "p120"]
COMPARED = ("effect", "cs_low", "cs_high", "mean_treated", "mean_control", "n_cells")


def _spec_text() -> str:
    costs = ", ".join(f"{p}: 60" for p in PRODUCTS)
    # a floor the spec check takes for 16 products and a two-draw window (16 x 0.25^2 = 1)
    return f"""
id: analyze-lag
products: [{", ".join(PRODUCTS)}]
start: "2026-05-04T00:00:00+00:00"
end: "2026-05-{4 + DAYS:02d}T00:00:00+00:00"
seed: 21
unit_costs: {{{costs}}}
arms:
  - {{name: list, policy: list-price, price_ratio: 1.0, allocation: 0.34, control: true}}
  - {{name: p85, policy: price-85, price_ratio: 0.85, allocation: 0.33}}
  - {{name: p120, policy: price-120, price_ratio: 1.20, allocation: 0.33}}
adaptive: {{rule: thompson, warmup: 3, floor: 0.22}}
design: optimal-switchback
optimal_switchback: {{carryover_order: 1}}
"""


@pytest.fixture(scope="module")
def ladder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A simulated adaptive optimal switchback's spec and panel (``pricelab simulate --spec``)."""
    d = tmp_path_factory.mktemp("lag")
    spec, out = d / "osb.yaml", d / "osb.csv"
    spec.write_text(_spec_text())
    res = CliRunner().invoke(
        app, ["simulate", "--spec", str(spec), "--out", str(out), "--seed", "4"]
    )
    assert res.exit_code == 0, res.output
    return spec, out


def _analyze(panel: Path, *args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(
        app, ["analyze", str(panel), "--unit", "product", "--time", "period", *args]
    )
    return res.exit_code, res.stdout, res.stderr


def _json(panel: Path, *args: str) -> tuple[dict[tuple[str, str], dict[str, Any]], list[Any]]:
    code, out, err = _analyze(panel, *args, "--json")
    assert code == 0, err
    docs = [json.loads(line) for line in out.splitlines()]
    rows = {(d["metric"], d["arm"]): d for d in docs if d.get("kind") != "adaptive"}
    return rows, [d for d in docs if d.get("kind") == "adaptive"]


def _expected(spec_path: Path, panel: pd.DataFrame, metric: str, lag: int) -> AdaptiveArms:
    """AdaptiveArms on the panel's cells (N x T matrices from its columns), the redraws at the
    design's randomisation points."""
    spec = load_spec_file(spec_path)
    panel = panel.sort_values(["product", "period"])
    n, t = panel["product"].nunique(), panel["period"].nunique()
    y = panel[metric].to_numpy(float).reshape(n, t)
    arm = panel["arm"].map({a: i for i, a in enumerate(NAMES)}).to_numpy().reshape(n, t)
    probs = panel.groupby("period")[[f"probability_{a}" for a in NAMES]].first().to_numpy(float)
    blackout = panel["blackout"].to_numpy(bool).reshape(n, t)
    redraw = np.isin(np.arange(t), points(spec))
    cells = AdaptivePanel(np.where(blackout, np.nan, y), arm.astype(np.int64), probs, blackout,
                          redraw)  # fmt: skip
    return AdaptiveArms(method="aipw", lag=lag, control=0, alpha=0.05, horizon=DAYS).fit(cells)


def test_lag_without_the_spec_gives_the_specs_estimates(ladder: tuple[Path, Path]) -> None:
    spec, panel = ladder
    by_lag, lag_looks = _json(panel, "--lag", "1", "--arm", "arm", "--control", "list")
    by_spec, spec_looks = _json(panel, "--spec", str(spec))
    assert set(by_lag) == set(by_spec) == {(m, a) for m in ("units", "revenue", "profit")
                                           for a in NAMES[1:]}  # fmt: skip
    frame = pd.read_csv(panel)
    for (metric, name), row in by_lag.items():
        for field in COMPARED:
            assert row[field] == pytest.approx(by_spec[(metric, name)][field], rel=1e-12)
        fit = _expected(spec, frame, metric, lag=1)
        a = NAMES.index(name)
        assert row["effect"] == pytest.approx(fit.looks_.effect[-1, a], rel=1e-9)
        assert row["cs_low"] == pytest.approx(fit.looks_.low[-1, a], rel=1e-9)
        assert row["cs_high"] == pytest.approx(fit.looks_.high[-1, a], rel=1e-9)
        assert (row["lag"], row["lag_source"]) == (1, "--lag")
        assert (by_spec[(metric, name)]["lag"], by_spec[(metric, name)]["lag_source"]) == (
            1, "the spec's design")  # fmt: skip
    assert [d["lag"] for d in lag_looks] == [d["lag"] for d in spec_looks] == [1, 1, 1]
    for mine, theirs in zip(lag_looks, spec_looks, strict=True):
        assert mine["best_set"] == theirs["best_set"]
        assert mine["arms"] == theirs["arms"]


def test_lag_zero_on_a_carryover_panel_differs(ladder: tuple[Path, Path]) -> None:
    spec, panel = ladder
    by_zero, looks = _json(panel, "--lag", "0", "--arm", "arm", "--control", "list")
    by_spec, _ = _json(panel, "--spec", str(spec))
    assert [d["lag"] for d in looks] == [0, 0, 0]
    frame = pd.read_csv(panel)
    for (metric, name), row in by_zero.items():
        assert row["lag"] == 0
        # every arm holds its window in more cells without one: a different estimate
        assert row["n_cells"] > by_spec[(metric, name)]["n_cells"]
        assert row["effect"] != pytest.approx(by_spec[(metric, name)]["effect"], rel=1e-3)
        fit = _expected(spec, frame, metric, lag=0)
        assert row["effect"] == pytest.approx(fit.looks_.effect[-1, NAMES.index(name)], rel=1e-9)


def test_the_printed_output_says_which_lag_and_which_periods_kept_their_draw(
    ladder: tuple[Path, Path],
) -> None:
    spec, panel = ladder
    kept = [t for t in range(DAYS) if t not in points(load_spec_file(spec))]
    assert kept  # the design's first and last blocks are two periods long
    code, out, err = _analyze(panel, "--lag", "1", "--arm", "arm", "--control", "list")
    assert code == 0, err
    said = ", ".join(map(str, kept))
    assert f"carryover lag 1 (--lag; period{'s' * (len(kept) > 1)} {said} kept the draw" in out
    assert "carryover lag 1 (--lag)" in err  # the note says no spec was given
    code, out, _ = _analyze(panel, "--spec", str(spec))
    assert code == 0 and "carryover lag 1 (the spec's design)" in out
    code, out, err = _analyze(panel, "--arm", "arm", "--control", "list")
    assert code == 0 and "carryover lag 0 (none given)" in out and "--lag m" in err


def test_the_fresh_draws_read_off_the_panel_are_the_designs_points(
    ladder: tuple[Path, Path],
) -> None:
    spec, panel = ladder
    frame = pd.read_csv(panel)
    cells = frame[["product", "period", "arm", "blackout"]].copy()
    cells["blackout"] = cells["blackout"].astype(bool)
    cols = [f"probability_{a}" for a in NAMES]
    recorded = {int(t): tuple(r) for t, r in frame.groupby("period")[cols].first().iterrows()}
    assert fresh_draws(cells, recorded) == tuple(points(load_spec_file(spec)))
    # a product that changed its arm makes its period a fresh draw; one in blackout does not
    one = cells.copy()
    hit = (one["product"] == "P00") & (one["period"] == 1)
    one.loc[hit, "arm"] = next(a for a in NAMES if a != one.loc[hit, "arm"].item())
    assert 1 in fresh_draws(one, recorded)
    one.loc[hit, "blackout"] = True
    assert 1 not in fresh_draws(one, recorded)


def test_a_fresh_draw_that_kept_every_arm_by_likely_chance_is_refused() -> None:
    # random days on 4 products at 50/50: period 1 drew afresh and, as it does once in 16
    # draws, gave each product its arm of period 0 again; the probabilities did not move
    arms = {"A": ["list", "list", "p85"], "B": ["p85", "p85", "list"],
            "C": ["list", "list", "list"], "D": ["p85", "p85", "p85"]}  # fmt: skip
    cells = pd.DataFrame(
        [(p, t, a, False) for p, row in arms.items() for t, a in enumerate(row)],
        columns=["product", "period", "arm", "blackout"],
    )
    recorded = {t: (0.5, 0.5) for t in range(3)}
    assert fresh_draws(cells, recorded) == (0, 2)  # without the arms' names: read as kept
    assert KEPT_BY_CHANCE < 0.5**4
    with pytest.raises(AnalysisError, match=r"period 1 looks like it kept period 0's draw.*16"):
        fresh_draws(cells, recorded, ["list", "p85"])


def _refused(code: int, out: str, err: str) -> str:
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in out + err
    return lines[0]


def test_a_lag_the_spec_disagrees_with_is_refused(ladder: tuple[Path, Path]) -> None:
    spec, panel = ladder
    line = _refused(*_analyze(panel, "--spec", str(spec), "--lag", "0"))
    assert "--lag 0" in line and "(1)" in line
    same, _ = _json(panel, "--spec", str(spec), "--lag", "1")  # the spec's own: accepted
    assert {r["lag"] for r in same.values()} == {1}


def test_a_negative_lag_is_refused(ladder: tuple[Path, Path]) -> None:
    _, panel = ladder
    line = _refused(*_analyze(panel, "--lag", "-1", "--arm", "arm", "--control", "list"))
    assert "--lag must be 0 or more" in line


def test_a_lag_on_a_fixed_allocation_panel_is_refused(
    ladder: tuple[Path, Path], tmp_path: Path
) -> None:
    _, panel = ladder
    fixed = pd.read_csv(panel)
    for a, share in zip(NAMES, (0.34, 0.33, 0.33), strict=True):
        fixed[f"probability_{a}"] = share  # the same every period: a fixed allocation
    path = tmp_path / "fixed.csv"
    fixed.to_csv(path, index=False)
    args = ("--outcome", "units", "--arm", "arm", "--control", "list", "--method", "dm")
    code, _, err = _analyze(path, *args)
    assert code == 0, err  # the fixed method runs on it
    line = _refused(*_analyze(path, *args, "--lag", "1"))
    assert "not an adaptive ladder's" in line
