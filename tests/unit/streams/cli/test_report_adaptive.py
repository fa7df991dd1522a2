"""``pricelab report`` offline on an adaptive ladder's panel (issue #57): the worker is replayed
with the probabilities the panel recorded (its ``probability_<arm>`` columns), so the page has
the ``aipw_adaptive`` estimates and the allocation over time; without them, one sentence.

The expected estimates are :class:`analysis.adaptive.AdaptiveArms` fitted in the test on
matrices built from the panel's own columns."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from analysis.adaptive import AdaptiveArms, AdaptivePanel
from analysis.report import replay_estimates
from streams.cli import app

PRODUCTS = [f"P{i:02d}" for i in range(16)]
DAYS = 10
NAMES = ["list", "p85", "p120"]


@pytest.fixture(scope="module")
def ladder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("report-adaptive")
    costs = ", ".join(f"{p}: 60" for p in PRODUCTS)
    spec = d / "ad.yaml"
    spec.write_text(f"""
id: rep-adaptive
products: [{", ".join(PRODUCTS)}]
start: "2026-05-04T00:00:00+00:00"
end: "2026-05-{4 + DAYS:02d}T00:00:00+00:00"
seed: 21
unit_costs: {{{costs}}}
arms:
  - {{name: list, policy: list-price, price_ratio: 1.0, allocation: 0.34, control: true}}
  - {{name: p85, policy: price-85, price_ratio: 0.85, allocation: 0.33}}
  - {{name: p120, policy: price-120, price_ratio: 1.20, allocation: 0.33}}
adaptive: {{rule: thompson, warmup: 3}}
""")
    out = d / "ad.csv"
    res = CliRunner().invoke(
        app, ["simulate", "--spec", str(spec), "--out", str(out), "--seed", "4"]
    )
    assert res.exit_code == 0, res.output
    return spec, out


def _expected(panel: pd.DataFrame, metric: str) -> AdaptiveArms:
    panel = panel.sort_values(["product", "period"])
    n, t = panel["product"].nunique(), panel["period"].nunique()
    y = panel[metric].to_numpy(float).reshape(n, t)
    arm = panel["arm"].map({a: i for i, a in enumerate(NAMES)}).to_numpy().reshape(n, t)
    probs = panel.groupby("period")[[f"probability_{a}" for a in NAMES]].first().to_numpy(float)
    cells = AdaptivePanel(y, arm.astype(np.int64), probs)
    return AdaptiveArms(method="aipw", lag=0, control=0, alpha=0.05, horizon=DAYS).fit(cells)


def test_the_replay_publishes_aipw_on_the_recorded_probabilities(
    ladder: tuple[Path, Path],
) -> None:
    from controller.spec import load_spec_file

    spec_path, panel_path = ladder
    spec = load_spec_file(spec_path)
    panel = pd.read_csv(panel_path)
    est = replay_estimates(
        panel, experiment=spec.id, design=spec.design, estimators=["dm"],
        params=spec.model_dump(mode="json"),
    )  # fmt: skip
    kinds = est["kind"].fillna("estimate") if "kind" in est.columns else None
    assert kinds is not None
    estimates = est[kinds == "estimate"]
    assert set(estimates["estimator"]) == {"aipw_adaptive"}  # no fixed-allocation method
    final = estimates[estimates["n_periods"] == DAYS]
    for metric in ("units", "revenue", "profit"):
        fit = _expected(panel, metric)
        for a, name in enumerate(NAMES[1:], start=1):
            (row,) = final[(final["metric"] == metric) & (final["arm"] == name)].to_dict("records")
            assert row["effect"] == pytest.approx(fit.looks_.effect[-1, a], rel=1e-9)
            assert (row["cs_low"], row["cs_high"]) == pytest.approx(
                (fit.looks_.low[-1, a], fit.looks_.high[-1, a]), rel=1e-9
            )
    looks = est[kinds == "adaptive"]
    last = looks[looks["n_periods"] == DAYS].iloc[-1]
    recorded = panel.groupby("period")[[f"probability_{a}" for a in NAMES]].first().to_numpy()
    np.testing.assert_allclose([p["probabilities"] for p in last["allocation"]], recorded)


def test_the_offline_page_shows_the_estimates_and_the_allocation_over_time(
    ladder: tuple[Path, Path], tmp_path: Path
) -> None:
    spec_path, panel_path = ladder
    out = tmp_path / "r.html"
    res = CliRunner().invoke(app, ["report", "rep-adaptive", "--panel", str(panel_path),
                                   "--spec", str(spec_path), "--out", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    page = out.read_text()
    assert "Adaptive allocation" in page and "The allocation over time" in page
    assert "aipw_adaptive" in page
    recorded = pd.read_csv(panel_path).groupby("period")[[f"probability_{a}" for a in NAMES]]
    for period, probs in recorded.first().iterrows():
        row = re.search(rf"<tr data-period='{period}'>(.*?)</tr>", page)
        assert row is not None
        shown = re.findall(r"<td>([0-9.]+)%</td>", row.group(1))
        assert shown == [f"{100 * p:.1f}" for p in probs]
    # the sample ratio: every arm's product-periods against the recorded probabilities' count
    # (random days: 16 draws a period), the Health section's test, not the spec's allocations
    assert "data-check='sample-ratio-recorded' data-flag='ok'" in page
    cells = pd.read_csv(panel_path)
    for a in NAMES:
        expected = cells[f"probability_{a}"].sum()  # sum over periods of 16 x p_t(a)
        drawn = int((cells["arm"] == a).sum())
        assert f"<tr><td>{a}</td><td>{drawn}</td><td>{expected:.1f}</td>" in page
    assert "against the spec's allocations" not in page


def test_an_adaptive_panel_without_its_recorded_probabilities_is_one_sentence(
    ladder: tuple[Path, Path], tmp_path: Path
) -> None:
    spec_path, panel_path = ladder
    bare = tmp_path / "bare.csv"
    pd.read_csv(panel_path).drop(columns=[f"probability_{a}" for a in NAMES]).to_csv(
        bare, index=False
    )
    res = CliRunner().invoke(app, ["report", "rep-adaptive", "--panel", str(bare),
                                   "--spec", str(spec_path), "--out", str(tmp_path / "r.html")])  # fmt: skip
    assert res.exit_code == 2
    assert len(res.stderr.strip().splitlines()) == 1 and "probability_list" in res.stderr
    assert not (tmp_path / "r.html").exists()


def test_a_partial_panel_is_replayed_on_the_specs_horizon_as_live(
    ladder: tuple[Path, Path],
) -> None:
    """An export of a running ladder has fewer periods than the spec plans. The live worker's
    sequences use the spec's planned periods as their horizon; the replay took the panel's
    periods instead, so the offline page's intervals differed from the ones published."""
    from controller.periods import n_periods
    from controller.spec import load_spec_file

    spec_path, panel_path = ladder
    spec = load_spec_file(spec_path)
    assert n_periods(spec) == DAYS
    panel = pd.read_csv(panel_path)
    part = panel[panel["period"] < 7]
    est = replay_estimates(
        part, experiment=spec.id, design=spec.design, estimators=["dm"],
        params=spec.model_dump(mode="json") | {"n_periods": n_periods(spec)},
    )  # fmt: skip
    final = est[(est["estimator"] == "aipw_adaptive") & (est["n_periods"] == 7)]
    part = part.sort_values(["product", "period"])
    y = part["profit"].to_numpy(float).reshape(len(PRODUCTS), 7)
    arm = part["arm"].map({a: i for i, a in enumerate(NAMES)}).to_numpy().reshape(-1, 7)
    probs = part.groupby("period")[[f"probability_{a}" for a in NAMES]].first().to_numpy(float)
    cells = AdaptivePanel(y, arm.astype(np.int64), probs)
    live, short = (
        AdaptiveArms(method="aipw", lag=0, control=0, alpha=0.05, horizon=h).fit(cells)
        for h in (DAYS, 7)
    )
    (row,) = final[(final["metric"] == "profit") & (final["arm"] == "p85")].to_dict("records")
    assert (row["cs_low"], row["cs_high"]) == pytest.approx(
        (live.looks_.low[-1, 1], live.looks_.high[-1, 1]), rel=1e-9
    )
    assert row["cs_low"] != pytest.approx(short.looks_.low[-1, 1], rel=1e-6)
