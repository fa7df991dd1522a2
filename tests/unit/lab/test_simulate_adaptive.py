"""``pricelab simulate --spec`` with an adaptive ladder runs the adaptive loop (issue #57).

The written panel is checked against an independent replay of the live rule: each period's
probabilities are recomputed from the panel's own cells with ``analysis.adaptive.AdaptiveArms``
(the look of periods 0..t-2, the live path's delay) and ``controller.adaptive``'s rule, and
each cell's arm with the controller's draw (``controller.adaptive_draw.period_arms``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from analysis.adaptive import AdaptiveArms, AdaptivePanel
from analysis.errors import PanelError
from controller.adaptive import adaptive_step, next_probabilities
from controller.adaptive_draw import period_arms
from controller.designs.optimal_switchback import points
from controller.spec import ExperimentSpec, load_spec_file
from streams.cli import app

PRODUCTS = [f"P{i:02d}" for i in range(16)]
DAYS = 10


def _spec_text(extra: str = "", adaptive: str = "{rule: thompson, warmup: 3}") -> str:
    costs = ", ".join(f"{p}: 60" for p in PRODUCTS)
    return f"""
id: sim-adaptive
products: [{", ".join(PRODUCTS)}]
start: "2026-05-04T00:00:00+00:00"
end: "2026-05-{4 + DAYS:02d}T00:00:00+00:00"
seed: 21
unit_costs: {{{costs}}}
arms:
  - {{name: list, policy: list-price, price_ratio: 1.0, allocation: 0.34, control: true}}
  - {{name: p85, policy: price-85, price_ratio: 0.85, allocation: 0.33}}
  - {{name: p120, policy: price-120, price_ratio: 1.20, allocation: 0.33}}
adaptive: {adaptive}
{extra}
"""


def _simulate(
    tmp_path: Path, text: str, name: str = "x"
) -> tuple[ExperimentSpec, pd.DataFrame, str]:
    spec_path = tmp_path / f"{name}.yaml"
    spec_path.write_text(text)
    out = tmp_path / f"{name}.csv"
    res = CliRunner().invoke(
        app, ["simulate", "--spec", str(spec_path), "--out", str(out), "--seed", "4"]
    )
    assert res.exit_code == 0, res.output
    return load_spec_file(spec_path), pd.read_csv(out), res.stdout


def _grids(spec: ExperimentSpec, panel: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The panel's profit (N x T), arm indices (N x T) and each period's recorded probabilities
    (T x k, from the probability_<arm> columns, checked to be one row per period)."""
    names = [a.name for a in spec.arm_list()]
    panel = panel.sort_values(["product", "period"])
    n, t = panel["product"].nunique(), panel["period"].nunique()
    y = panel["profit"].to_numpy(float).reshape(n, t)
    arm = panel["arm"].map({a: i for i, a in enumerate(names)}).to_numpy().reshape(n, t)
    cols = [f"probability_{a}" for a in names]
    per_period = panel.groupby("period")[cols]
    assert (per_period.nunique() == 1).all().all()  # one row of probabilities per period
    return y, arm.astype(np.int64), per_period.first().to_numpy(float)


def _replay(
    spec: ExperimentSpec, y: np.ndarray, arm: np.ndarray, probs: np.ndarray, lag: int,
    updates: list[int], redraw: np.ndarray | None = None,
) -> np.ndarray:  # fmt: skip
    """Each period's probabilities by the live rule on looks of periods 0..t-2 of the cells."""
    settings = spec.adaptive
    assert settings is not None
    t_all = probs.shape[0]
    out = np.zeros_like(probs)
    held = np.array(spec.allocations())
    for t in range(t_all):
        if t in updates and t - 1 >= 1:
            seen = t - 1
            try:
                est = AdaptiveArms(method="aipw", lag=lag, horizon=t_all).fit(
                    AdaptivePanel(y[:, :seen], arm[:, :seen], probs[:seen],
                                  redraw=None if redraw is None else redraw[:seen])
                )  # fmt: skip
            except PanelError:
                est = None
            if est is not None:
                held = next_probabilities(
                    settings, est.looks_.mean[-1], cov=est.looks_.cov[-1],
                    step=adaptive_step(settings, t), seed=spec.seed,
                )  # fmt: skip
        out[t] = held
    return out


def test_the_written_panel_is_the_adaptive_loop_replayed_by_the_live_rule(tmp_path: Path) -> None:
    spec, panel, said = _simulate(tmp_path, _spec_text())
    names = [a.name for a in spec.arm_list()]
    y, arm, probs = _grids(spec, panel)
    # probability is the cell's own arm's recorded probability
    own = panel[[f"probability_{a}" for a in names]].to_numpy(float)[
        np.arange(len(panel)), panel["arm"].map(names.index).to_numpy()
    ]
    np.testing.assert_allclose(panel["probability"].to_numpy(float), own, rtol=0, atol=1e-12)
    # warmup (periods 0-2) and period 3 (no look of 3 periods before it, live) at the
    # allocations; after it, not the allocations
    np.testing.assert_allclose(probs[:4], np.tile(spec.allocations(), (4, 1)), atol=1e-12)
    assert not np.allclose(probs[4:], np.array(spec.allocations()), atol=0.01)
    expected = _replay(spec, y, arm, probs, lag=0, updates=list(range(3, DAYS)))
    np.testing.assert_allclose(probs, expected, rtol=0, atol=1e-9)
    for t in range(DAYS):  # the controller's draw with the recorded probabilities
        drawn = period_arms(spec, sorted(PRODUCTS), t, probs[t])
        assert drawn.tolist() == arm[:, t].tolist()
    assert "adaptive (thompson on profit, warmup 3, every 1" in said
    assert "periods 0..t-2, as live" in said
    assert "the fixed ladder's" in said and "ratio" in said


def test_the_same_seed_writes_the_same_panel(tmp_path: Path) -> None:
    _, first, said = _simulate(tmp_path, _spec_text(), "a")
    _, again, said_again = _simulate(tmp_path, _spec_text(), "b")
    pd.testing.assert_frame_equal(first, again)
    assert said.replace("b.csv", "a.csv") == said_again.replace("b.csv", "a.csv")


def test_an_optimal_switchback_adapts_at_its_randomisation_points(tmp_path: Path) -> None:
    # a floor the spec check takes for 16 products and a two-draw window (16 x 0.25^2 = 1)
    text = _spec_text(
        "design: optimal-switchback\noptimal_switchback: {carryover_order: 1}",
        adaptive="{rule: thompson, warmup: 3, floor: 0.22}",
    )
    spec, panel, _ = _simulate(tmp_path, text)
    y, arm, probs = _grids(spec, panel)
    pts = points(spec)
    changed = {t for t in range(1, DAYS) if not np.allclose(probs[t], probs[t - 1])}
    assert changed and changed <= set(pts)
    redraw = np.isin(np.arange(DAYS), pts)
    expected = _replay(spec, y, arm, probs, lag=1, updates=[p for p in pts if p >= 3],
                       redraw=redraw)  # fmt: skip
    np.testing.assert_allclose(probs, expected, rtol=0, atol=1e-9)


def test_a_cluster_switchback_and_a_washout_adapt_too(tmp_path: Path) -> None:
    classes = {f"c{i}": PRODUCTS[i * 4 : (i + 1) * 4] for i in range(4)}
    # a floor the spec check takes for 4 classes (4 x 0.25 = 1 held class a period)
    text = _spec_text(adaptive="{rule: thompson, warmup: 3, floor: 0.22}").replace(f"products: [{', '.join(PRODUCTS)}]", "clusters: " + str(
        {c: list(ps) for c, ps in classes.items()}).replace("'", "")
    ) + "design: cluster\ncluster: {mode: switchback}\nwashout: PT4H\n"  # fmt: skip
    spec, panel, _ = _simulate(tmp_path, text)
    y, arm, probs = _grids(spec, panel)
    expected = _replay(spec, y, arm, probs, lag=0, updates=list(range(3, DAYS)))
    np.testing.assert_allclose(probs, expected, rtol=0, atol=1e-9)
    assert not np.allclose(probs[4:], np.array(spec.allocations()), atol=0.01)
    # a class-period holds one arm
    panel["class"] = panel["product"].map({p: c for c, ps in classes.items() for p in ps})
    assert (panel.groupby(["class", "period"])["arm"].nunique() == 1).all()


@pytest.mark.parametrize("rule", ["top_two"])
def test_the_rule_named_is_the_one_run(tmp_path: Path, rule: str) -> None:
    spec, panel, said = _simulate(tmp_path, _spec_text(adaptive=f"{{rule: {rule}, warmup: 3}}"))
    y, arm, probs = _grids(spec, panel)
    np.testing.assert_allclose(
        probs, _replay(spec, y, arm, probs, lag=0, updates=list(range(3, DAYS))), atol=1e-9
    )
    assert f"adaptive ({rule} on profit" in said


def test_the_regrets_said_are_the_panels_expected_profit(tmp_path: Path) -> None:
    """The two regrets on the line differ by the expected profit of the adaptive panel less
    the fixed ladder's: the fixed one written by simulate from the same spec without its
    adaptive block (the same seed's draw at the allocations)."""
    import re

    _, adaptive, said = _simulate(tmp_path, _spec_text(), "adaptive")
    fixed_text = _spec_text().replace("adaptive: {rule: thompson, warmup: 3}", "")
    _, fixed, fixed_said = _simulate(tmp_path, fixed_text, "fixed")
    assert "adaptive (" not in fixed_said
    assert np.allclose(fixed["probability"], 0.66)  # a fixed ladder's: P(not control)

    def profit(p: pd.DataFrame) -> float:
        return float(((p["price"] - 60.0) * p["expected_units"]).sum())

    found = re.search(r"\) ([\d,.]+), the fixed ladder's ([\d,.]+) on the same", said)
    assert found is not None, said
    regret, fixed_regret = (float(x.replace(",", "")) for x in found.groups())
    assert fixed_regret - regret == pytest.approx(profit(adaptive) - profit(fixed), abs=0.02)
    assert regret > 0 and fixed_regret > 0


def test_two_arms_adapt_at_the_markets_treatment_price(tmp_path: Path) -> None:
    text = (
        _spec_text()
        .replace("  - {name: p120, policy: price-120, price_ratio: 1.20, allocation: 0.33}\n", "")
        .replace("allocation: 0.34", "allocation: 0.5")
        .replace("allocation: 0.33", "allocation: 0.5")
    )
    spec, panel, said = _simulate(tmp_path, text)
    assert spec.n_arms == 2
    y, arm, probs = _grids(spec, panel)
    expected = _replay(spec, y, arm, probs, lag=0, updates=list(range(3, DAYS)))
    np.testing.assert_allclose(probs, expected, rtol=0, atol=1e-9)
    assert not np.allclose(probs[4:], 0.5, atol=0.01)
    assert "allocation by the end list" in said
