"""k-arm experiments in the tools that simulate and plan them: the offline simulator and
``simulate --live`` run a price ladder (tests/unit/lab/test_market_ladder.py,
tests/integration/test_simulate_live_ladder.py) and refuse arms without prices in one sentence
(exit 2), and the planner plans one comparison per arm (tests/unit/lab/test_plan_arms.py).
The live path runs them (slice S2), with their guardrails checked on each arm, except on the
optimal switchback, whose guardrails it refuses: nothing would check them there."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from controller.errors import SpecError
from controller.panel_source import experiment_info
from controller.spec import Guardrail, load_spec_file
from streams.cli import app

LADDER = """
id: ladder
products: [a, b, c, d, e, f]
arms:
  - {name: list, policy: list-price, price_ratio: 1.0, allocation: 0.4, control: true}
  - {name: p95, policy: price-95, price_ratio: 0.95, allocation: 0.3}
  - {name: p105, policy: price-105, price_ratio: 1.05, allocation: 0.3}
start: 2026-05-04
end: 2026-06-01
seed: 3
"""


@pytest.fixture
def ladder(tmp_path: Path) -> Path:
    path = tmp_path / "ladder.yaml"
    path.write_text(LADDER)
    return path


def refused(args: list[str]) -> str:
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1
    return res.output


def test_simulate_runs_three_arms_as_a_price_ladder(ladder: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app, ["simulate", "--spec", str(ladder), "--out", str(tmp_path / "p.csv")]
    )
    assert res.exit_code == 0, res.output
    assert set(pd.read_csv(tmp_path / "p.csv")["arm"]) == {"list", "p95", "p105"}


def test_simulate_live_refuses_three_arms_without_prices_before_any_stack(
    ladder: Path, tmp_path: Path
) -> None:
    # simulate --live plays a price ladder (tests/integration/test_simulate_live_ladder.py);
    # arms the market cannot price are refused, naming the field, before any stack is asked
    plain = tmp_path / "plain.yaml"
    plain.write_text(LADDER.replace(", price_ratio: 1.05", ""))
    out = refused(["simulate", "--live", "--spec", str(plain)])
    assert "arms: give price_ratio on every arm or on none; 'p105' has none" in out


def test_plan_plans_three_arms(ladder: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    days = pd.date_range("2026-01-01", periods=60, freq="D").strftime("%Y-%m-%d")
    products = list("abcdef")
    history = tmp_path / "h.csv"
    pd.DataFrame(
        {
            "product": np.repeat(products, len(days)),
            "date": np.tile(days, len(products)),
            "units": rng.poisson(10, len(products) * len(days)),
        }
    ).to_csv(history, index=False)
    args = ["plan", str(ladder), "--history", str(history), "--unit", "product"]
    res = CliRunner().invoke(
        app, [*args, "--time", "date", "--outcome", "units", "--sims", "20", "--jobs", "1"]
    )
    assert res.exit_code == 0, res.output
    rows = [line.split() for line in res.stdout.splitlines()[1:5]]
    assert [(r[3], r[4]) for r in rows] == [
        ("fe", "p95"),
        ("fe", "p105"),
        ("dm", "p95"),
        ("dm", "p105"),
    ]


def test_the_analysis_is_told_of_three_arms_without_a_sampler(ladder: Path) -> None:
    # the worker fits each arm's pair (analysis/worker.py, _arm_estimates); no sampler reads
    # it as treatment against control
    info = experiment_info(load_spec_file(ladder), "running")
    assert info.arms == 3 and info.sampler is None and info.spillover is None


def test_the_live_path_takes_guardrails_on_three_arms_except_on_the_optimal_switchback(
    ladder: Path,
) -> None:
    spec = load_spec_file(ladder)
    spec.check_live()  # three arms run live
    guarded = spec.model_copy(update={"guardrails": (Guardrail(max_drop_pct=5),)})
    guarded.check_live()  # each arm's guardrails are checked against the control
    switchback = guarded.model_copy(update={"design": "optimal-switchback"})
    with pytest.raises(
        SpecError,
        match="^guardrails: are not checked on 3-arm experiments of the optimal-switchback design",
    ):
        switchback.check_live()


def test_a_two_arm_list_is_simulated_like_the_shorthand(tmp_path: Path) -> None:
    two = LADDER.replace(
        "  - {name: p105, policy: price-105, price_ratio: 1.05, allocation: 0.3}\n", ""
    ).replace("allocation: 0.4, control", "allocation: 0.7, control")
    (tmp_path / "two.yaml").write_text(two)
    res = CliRunner().invoke(
        app, ["simulate", "--spec", str(tmp_path / "two.yaml"), "--out", str(tmp_path / "p.csv")]
    )
    assert res.exit_code == 0, res.output
    assert "treatment price 5% below control's" in res.output
    # listed as [treatment, control], the shorthand's order, it draws the shorthand's cells
    first = two.replace(
        "  - {name: list, policy: list-price, price_ratio: 1.0, allocation: 0.7, control: true}\n",
        "",
    ).replace(
        "allocation: 0.3}\n",
        "allocation: 0.3}\n"
        "  - {name: list, policy: list-price, price_ratio: 1.0, allocation: 0.7, control: true}\n",
    )
    short = (
        "\n".join(line for line in LADDER.splitlines() if not line.startswith(("arms:", "  - ")))
        + "\ntreatment_policy: price-95\ncontrol_policy: list-price\nallocation: 0.3\n"
    )
    short += "price_ratio: 0.95\n"
    panels = {}
    for name, text in (("first", first), ("short", short)):
        (tmp_path / f"{name}.yaml").write_text(text)
        out = tmp_path / f"{name}.csv"
        res = CliRunner().invoke(
            app, ["simulate", "--spec", str(tmp_path / f"{name}.yaml"), "--out", str(out)]
        )
        assert res.exit_code == 0, res.output
        panels[name] = pd.read_csv(out)
    assert panels["first"]["treated"].sum() > 0
    assert panels["first"]["treated"].tolist() == panels["short"]["treated"].tolist()
    # the same market and outcomes; the list's panel names its arms and their listed prices
    first, short = panels["first"], panels["short"]
    assert (first["arm"] == short["arm"].map({"treatment": "p95", "control": "list"})).all()
    assert (first["price_ratio"] == first["arm"].map({"p95": 0.95, "list": 1.0})).all()
    pd.testing.assert_frame_equal(
        first.drop(columns=["arm", "price_ratio"]), short.drop(columns="arm")
    )
