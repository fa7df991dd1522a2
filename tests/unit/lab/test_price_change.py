"""The price the simulator models: a spec's ``price_ratio`` or ``--price-change``, never a
silent 5% cut (issue #39).

The expected signs come from the simulator's documented demand model, not from its code: the
own-price elasticity is about -2 (docs/simulator.md), so a 10% rise lowers the units sold by
about 1 - 1.10**-2 = 17% and a 5% cut raises them by about 0.95**-2 - 1 = 11%.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from controller.errors import SpecError
from controller.spec import load_spec
from lab.config import MarketConfig
from lab.errors import LabError
from lab.price import modelled_price
from lab.simulate import market_for_spec, run_spec
from streams.cli import app

PRODUCTS = [f"p{i:02d}" for i in range(40)]
SPEC = {
    "id": "price",
    "design": "random-days",
    "products": PRODUCTS,
    "treatment_policy": "raise-10pct",
    "control_policy": "list",
    "start": "2026-03-02T00:00:00+00:00",
    "end": "2026-03-30T00:00:00+00:00",
    "seed": 4,
}
SPEC_YAML = (
    "id: price\ndesign: random-days\nproducts: [" + ", ".join(PRODUCTS[:6]) + "]\n"
    "treatment_policy: raise-10pct\ncontrol_policy: list\n"
    "start: 2026-03-02T00:00:00+00:00\nend: 2026-03-16T00:00:00+00:00\nseed: 4\n"
)


def _relative_truth(ratio: float | None) -> float:
    spec = load_spec(SPEC | ({} if ratio is None else {"price_ratio": ratio}))
    sim = run_spec(spec, market_for_spec(spec, MarketConfig(), seed=3))
    return sim.metric_truth("units", relative=True)


def test_the_true_effect_follows_the_price_the_spec_names() -> None:
    rise, cut = _relative_truth(1.10), _relative_truth(0.95)
    assert rise < 0 < cut  # a rise sells fewer units, a cut more
    assert -0.25 < rise < -0.10 and 0.06 < cut < 0.16  # near 1.1**-2 - 1 and 0.95**-2 - 1
    assert _relative_truth(None) == pytest.approx(cut)  # no ratio: the default 5% cut


@pytest.mark.parametrize("bad", [0, -0.5, math.inf, math.nan, True, "1.1", "ten percent"])
def test_a_price_ratio_must_be_a_finite_positive_number(bad: object) -> None:
    with pytest.raises(SpecError) as err:
        load_spec(SPEC | {"price_ratio": bad})
    assert str(err.value).startswith("price_ratio: must be a finite number above 0")


def test_the_places_that_name_a_price_change_must_agree() -> None:
    spec = load_spec(SPEC | {"price_ratio": 1.1})
    agreed = modelled_price(MarketConfig(), option=0.1, spec=spec)
    assert agreed.change == pytest.approx(0.1) and agreed.assumption is None
    with pytest.raises(LabError, match="--price-change -0.05 .* disagrees with the spec's"):
        modelled_price(MarketConfig(), option=-0.05, spec=spec)
    with pytest.raises(LabError, match="disagrees with the market config's price_change 0"):
        modelled_price(MarketConfig(price_change=0.0), spec=spec)
    from_config = modelled_price(MarketConfig(price_change=0.0))
    assert from_config.change == 0.0 and from_config.assumption is None
    default = modelled_price(MarketConfig(), spec=load_spec(SPEC))
    assert default.change == -0.05
    assert default.assumption is not None and "5% below control's" in default.assumption


def _simulate(tmp_path: Path, spec_text: str, *extra: str) -> tuple[int, str, str]:
    spec = tmp_path / "spec.yaml"
    spec.write_text(spec_text)
    args = ["simulate", "--spec", str(spec), "--out", str(tmp_path / "p.csv"), *extra]
    res = CliRunner().invoke(app, args)
    return res.exit_code, res.stdout, res.stderr


def _true_effect(stdout: str) -> float:
    return float(stdout.split("true effect ")[1].split()[0])


def test_simulate_models_the_spec_s_price_or_the_option_and_says_when_it_assumes(
    tmp_path: Path,
) -> None:
    code, out, err = _simulate(tmp_path, SPEC_YAML)
    assert code == 0, err
    assert err.splitlines()[0].startswith("note: assuming the treatment's price is 5% below")
    assumed = _true_effect(out)
    assert assumed > 0

    code, out, err = _simulate(tmp_path, SPEC_YAML + "price_ratio: 1.10\n")
    assert code == 0 and err == "", err
    assert _true_effect(out) < 0 and "10% above control's" in out

    code, out, err = _simulate(tmp_path, SPEC_YAML, "--price-change", "0.10")
    assert code == 0 and err == "", err
    assert _true_effect(out) < 0

    code, out, err = _simulate(tmp_path, SPEC_YAML + "price_ratio: 0.95\n")
    assert code == 0 and err == "" and _true_effect(out) == pytest.approx(assumed)


@pytest.mark.parametrize(
    "extra, args, says",
    [
        ("price_ratio: 0.95\n", ["--price-change", "0.1"], "disagrees with the spec's price_ratio"),
        ("", ["--price-change", "-1"], "--price-change must be a relative change above -1"),
        ("price_ratio: 3\n", [], "beyond what the simulator models"),
        ("price_ratio: -1\n", [], "price_ratio: must be a finite number above 0"),
    ],
)
def test_a_price_the_simulator_cannot_model_is_one_sentence_and_exit_2(
    tmp_path: Path, extra: str, args: list[str], says: str
) -> None:
    code, out, err = _simulate(tmp_path, SPEC_YAML + extra, *args)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and says in err, err


def test_compare_designs_models_the_option(tmp_path: Path) -> None:
    args = ["compare-designs", "--products", "12", "--runs", "2", "--days", "7"]
    args += ["--designs", "random-days", "--estimators", "dm"]
    assumed = CliRunner().invoke(app, args)
    assert assumed.exit_code == 0, assumed.output
    assert assumed.stderr.startswith("note: assuming the treatment's price is 5% below")
    rise = CliRunner().invoke(app, [*args, "--price-change", "0.1"])
    assert rise.exit_code == 0 and rise.stderr == "", rise.output

    def truth(stdout: str) -> float:
        row = next(line for line in stdout.splitlines() if line.split()[:1] == ["random-days"])
        return float(row.split()[4])  # design estimator runs failed truth ...

    assert truth(rise.stdout) < 0 < truth(assumed.stdout)


def test_plan_says_it_does_not_model_the_spec_s_price(tmp_path: Path) -> None:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    history = pd.DataFrame(
        [(p, d, rng.normal(10, 2)) for p in PRODUCTS[:6] for d in range(40)],
        columns=["sku", "day", "units"],
    )
    history.to_csv(tmp_path / "h.csv", index=False)
    (tmp_path / "spec.yaml").write_text(SPEC_YAML + "price_ratio: 1.10\n")
    args = ["plan", str(tmp_path / "spec.yaml"), "--history", str(tmp_path / "h.csv")]
    args += ["--unit", "sku", "--time", "day", "--outcome", "units", "--sims", "10"]
    res = CliRunner().invoke(app, [*args, "--jobs", "1"])
    assert res.exit_code == 0, res.output
    first = res.stderr.splitlines()[0]
    assert first.startswith("note: spec: plan does not model prices, so price_ratio 1.1")
