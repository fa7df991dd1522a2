"""``pricelab plan --arm-effects``: a ladder planned by the effect it gives up while it runs,
the adaptive allocation beside the fixed one on the same starts and seeds (issue #57,
docs/adaptive.md "The lab's commands").

The known truth: a history of independent N(10, 2^2) cells, and a three-arm random-days ladder
(allocations 0.34, 0.33, 0.33) whose stated effects make one arm the best. The fixed ladder's
expected regret is worked out here from the allocations and the effect gaps alone (each cell
takes arm a with its allocation, and gives up the best effect minus a's); the arms each
simulation drew are checked against the design's own draw made here; the regret of every
simulation against the effects and its cells per arm.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from controller.designs import design_matrices
from controller.spec import ExperimentSpec, load_spec
from lab.plan import PlanConfig, read_history
from lab.plan_adaptive import REGRET_JSON_KEYS, run_regret_plan
from streams.cli import app

N, T, DAYS, MU, SIGMA = 24, 40, 14, 10.0, 2.0
UNITS = tuple(f"u{i:02d}" for i in range(N))
ARMS = """arms:
  - {name: list, policy: list-price, price_ratio: 1.0, allocation: 0.34, control: true}
  - {name: p90, policy: price-90, price_ratio: 0.9, allocation: 0.33}
  - {name: p110, policy: price-110, price_ratio: 1.1, allocation: 0.33}
"""
HEAD = f"""id: plan-adaptive
products: [{", ".join(UNITS)}]
start: "2026-05-04T00:00:00+00:00"
end: "2026-05-18T00:00:00+00:00"
"""
FIXED = HEAD + ARMS
ADAPTIVE = FIXED + "adaptive: {}\n"
ALLOCATIONS = {"list": 0.34, "p90": 0.33, "p110": 0.33}


def _history_frame(seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    days = pd.date_range("2026-03-01", periods=T, freq="D").strftime("%Y-%m-%d")
    return pd.DataFrame(
        {
            "product": np.repeat(UNITS, T),
            "day": np.tile(days, N),
            "units": rng.normal(MU, SIGMA, N * T),
        }
    )


def _spec(text: str) -> ExperimentSpec:
    import yaml

    return load_spec(yaml.safe_load(text))


def _plan(
    tmp_path: Path, spec_text: str, *args: str, history: Path | None = None
) -> tuple[int, str, str]:
    spec = tmp_path / "ladder.yaml"
    spec.write_text(spec_text)
    if history is None:
        history = tmp_path / "history.csv"
        _history_frame().to_csv(history, index=False)
    res = CliRunner().invoke(
        app,
        ["plan", str(spec), "--history", str(history), "--unit", "product", "--time", "day",
         "--outcome", "units", "--jobs", "1", *args],
    )  # fmt: skip
    return res.exit_code, res.stdout, res.stderr


def _run(spec_text: str, effects: tuple[float, ...], sims: int, seed: int = 0) -> pd.DataFrame:
    hist = read_history(_history_frame(), "product", "day", "units")
    cfg = PlanConfig(sims=sims, seed=seed, arm_effects=effects, jobs=1)
    sims_table, _, _ = run_regret_plan([("ladder", _spec(spec_text))], hist, cfg)
    return sims_table


def _regret_from_cells(row: pd.Series, effects: dict[str, float]) -> float:
    """The regret a simulation's cells per arm imply (absolute effects, no carryover)."""
    best = max(effects.values())
    return float(sum(row[f"cells_{a}"] * (best - e) for a, e in effects.items()))


# --------------------------------------------------------------------------- the report
def test_the_report_has_both_modes_and_says_whose_decision_it_is(tmp_path: Path) -> None:
    code, out, err = _plan(tmp_path, ADAPTIVE, "--arm-effects", "-0.5,1.5", "--sims", "10")
    assert code == 0, err
    head, *rows = out.splitlines()
    for col in ("mode", "best", "regret", "regret_pct", "regret_ratio", "picks_best",
                "decided", "decided_best", "decided_period", "best_share"):  # fmt: skip
        assert col in head.split()
    fixed = next(r for r in rows if " fixed " in r)
    adaptive = next(r for r in rows if " adaptive " in r)
    assert "p110" in fixed and "p110" in adaptive  # the largest stated effect is the best
    assert "the sequences' decision, not the analysis worker's verdict" in out
    assert "p90 -0.5, p110 +1.5" in err  # the note: the effects stand for the prices

    code, out, err = _plan(
        tmp_path, ADAPTIVE, "--arm-effects", "-0.5,1.5", "--sims", "10", "--json"
    )
    assert code == 0, err
    docs = json.loads(out)
    assert [d["mode"] for d in docs] == ["fixed", "adaptive"]
    assert all(tuple(d) == REGRET_JSON_KEYS for d in docs)
    assert docs[0]["regret_ratio"] == 1.0 and docs[0]["sims"] == 10
    assert 0 < docs[1]["best_share"] <= 1 and docs[0]["best_share"] == pytest.approx(0.33)


def test_out_writes_every_simulation_and_the_summary(tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    code, _, err = _plan(
        tmp_path, ADAPTIVE, "--arm-effects", "0,1", "--sims", "10", "--out", str(out_dir)
    )
    assert code == 0, err
    sims = pd.read_csv(out_dir / "regret-sims.csv")
    summary = pd.read_csv(out_dir / "regret-summary.csv")
    assert len(sims) == 20 and sorted(sims["mode"].unique()) == ["adaptive", "fixed"]
    assert {"sim", "start", "seed", "regret", "total", "cells_list", "cells_p90",
            "cells_p110", "recommended", "decided_period"} <= set(sims.columns)  # fmt: skip
    # every cell of the history's window is one arm's
    counts = sims[["cells_list", "cells_p90", "cells_p110"]].sum(axis=1)
    assert (counts == N * DAYS).all()
    assert list(summary["mode"]) == ["fixed", "adaptive"]


def test_a_fixed_ladder_with_arm_effects_is_planned_fixed_only(tmp_path: Path) -> None:
    code, out, err = _plan(tmp_path, FIXED, "--arm-effects", "0,1", "--sims", "10", "--json")
    assert code == 0, err
    assert [d["mode"] for d in json.loads(out)] == ["fixed"]


# --------------------------------------------------------------------------- validation
def test_the_fixed_ladders_regret_is_the_allocations_times_the_effect_gaps() -> None:
    effects = {"list": 0.0, "p90": -1.0, "p110": 2.0}
    sims = _run(ADAPTIVE, (effects["p90"], effects["p110"]), sims=40, seed=11)
    fixed = sims[sims["mode"] == "fixed"]
    # worked out without the planner: each of the N x DAYS cells takes arm a with its
    # allocation and gives up the best effect minus a's
    best = max(effects.values())
    expected = N * DAYS * sum(ALLOCATIONS[a] * (best - e) for a, e in effects.items())
    regret = fixed["regret"].to_numpy(float)
    se = regret.std(ddof=1) / math.sqrt(len(regret))
    assert abs(regret.mean() - expected) < 4 * se, (regret.mean(), expected, se)
    assert se < 0.02 * expected  # the check has teeth
    # each simulation's arms are the design's own draw at its seed
    spec = _spec(ADAPTIVE)
    for row in fixed.head(5).itertuples():
        drawn = design_matrices(spec.model_copy(update={"seed": int(row.seed)}), list(UNITS))
        for a, name in enumerate(effects):
            assert getattr(row, f"cells_{name}") == int((drawn.arm == a).sum())


def test_with_carryover_each_arms_effect_lingers_a_period_after_it() -> None:
    # --carryover 1: a cell whose product held arm a the period before, and another arm now,
    # also gets half of a's effect (plan's linear decay, 1 - 1/2). Worked out here: each
    # cell's expected effect is sum_a p_a e_a, plus, after the first period, half of
    # sum_a p_a (1 - p_a) e_a (a the period before, not now); always the best arm gets e_best.
    effects = {"list": 0.0, "p90": -1.0, "p110": 2.0}
    hist = read_history(_history_frame(), "product", "day", "units")
    cfg = PlanConfig(sims=40, seed=8, arm_effects=(-1.0, 2.0), carryover=1, jobs=1)
    sims, _, _ = run_regret_plan([("ladder", _spec(FIXED))], hist, cfg)
    p, e = ALLOCATIONS, effects
    now = sum(p[a] * e[a] for a in e)
    linger = 0.5 * sum(p[a] * (1 - p[a]) * e[a] for a in e)
    expected = N * DAYS * (max(e.values()) - now) - N * (DAYS - 1) * linger
    regret = sims["regret"].to_numpy(float)
    se = regret.std(ddof=1) / math.sqrt(len(regret))
    assert abs(regret.mean() - expected) < 4 * se, (regret.mean(), expected, se)
    # without the linger the expectation is off by many SEs: the check sees it
    assert N * (DAYS - 1) * linger > 6 * se


def test_relative_effects_give_up_shares_of_the_history() -> None:
    # --relative: arm a's cells gain e_a times their own outcome, so a fixed ladder gives up,
    # in expectation, the allocations times the gaps, of the history's outcome over its cells
    effects = {"list": 0.0, "p90": -0.05, "p110": 0.1}
    hist = read_history(_history_frame(), "product", "day", "units")
    cfg = PlanConfig(sims=40, seed=3, arm_effects=(-0.05, 0.1), relative=True, jobs=1)
    sims, _, _ = run_regret_plan([("ladder", _spec(FIXED))], hist, cfg)
    share = (sims["regret"] / sims["total"]).to_numpy(float)
    expected = sum(ALLOCATIONS[a] * (0.1 - e) for a, e in effects.items())
    assert abs(share.mean() - expected) < 4 * share.std(ddof=1) / math.sqrt(len(share))
    assert sims["regret_pct"].to_numpy(float) == pytest.approx(100 * share)


def test_every_simulations_regret_is_its_cells_times_the_effect_gaps() -> None:
    effects = {"list": 0.0, "p90": -1.0, "p110": 2.0}
    sims = _run(ADAPTIVE, (effects["p90"], effects["p110"]), sims=10, seed=4)
    for _, row in sims.iterrows():
        assert row["regret"] == pytest.approx(_regret_from_cells(row, effects), abs=1e-9)


@pytest.mark.parametrize(
    "design",
    [
        "design: optimal-switchback\noptimal_switchback: {carryover_order: 1}\n"
        "adaptive: {floor: 0.2}\n",
        "design: cluster\ncluster: {mode: switchback}\nwashout: PT4H\nadaptive: {floor: 0.2}\n",
    ],
    ids=["optimal-switchback", "cluster"],
)
def test_the_other_designs_that_adapt_are_planned_both_ways(design: str) -> None:
    text = FIXED + design
    if "cluster" in design:  # classes of 3 products
        classes = {f"c{i}": list(UNITS[3 * i : 3 * i + 3]) for i in range(N // 3)}
        text = text.replace(f"products: [{', '.join(UNITS)}]", f"clusters: {classes}")
    effects = {"list": 0.0, "p90": -1.0, "p110": 2.0}
    sims = _run(text, (-1.0, 2.0), sims=10, seed=5)
    assert set(sims["mode"]) == {"fixed", "adaptive"}
    assert (sims["error"] == "").all()
    for _, row in sims.iterrows():  # a washout scales the outcome, never the regret's units
        assert row["regret"] == pytest.approx(_regret_from_cells(row, effects), abs=1e-9)


def test_an_aa_ladder_gives_up_nothing() -> None:
    effects = {"list": 0.0, "p90": 0.0, "p110": 0.0}
    sims = _run(ADAPTIVE, (0.0, 0.0), sims=10, seed=2)
    assert set(sims["mode"]) == {"fixed", "adaptive"}
    for _, row in sims.iterrows():
        assert _regret_from_cells(row, effects) == 0.0
        assert row["regret"] == 0.0
        assert row["picks_best"]  # every arm is a true best


def test_with_a_clearly_best_arm_the_adaptive_ladder_gives_up_less_on_the_same_starts() -> None:
    effects = (-1.0, 3.0)  # p110 is best by 3 (1.5 sd of a cell) against list, 4 against p90
    sims = _run(ADAPTIVE, effects, sims=30, seed=7)
    fixed = sims[sims["mode"] == "fixed"].set_index("sim")
    adaptive = sims[sims["mode"] == "adaptive"].set_index("sim").loc[fixed.index]
    assert (fixed["start"] == adaptive["start"]).all() and (fixed["seed"] == adaptive["seed"]).all()
    saved = (fixed["regret"] - adaptive["regret"]).to_numpy(float)
    assert saved.mean() > 4 * saved.std(ddof=1) / math.sqrt(len(saved))
    assert (saved > 0).mean() >= 0.9
    # the adaptive ladder moved its cells to the best arm, and still found it
    assert adaptive["cells_p110"].mean() > 1.2 * fixed["cells_p110"].mean()
    assert adaptive["picks_best"].mean() >= 0.9
    # a run that singled out the best arm first has decided
    assert not (sims["decided_best"] & ~sims["decided"]).any()


# --------------------------------------------------------------------------- refusals
def _one_sentence(code: int, out: str, err: str) -> str:
    assert code == 2
    assert out == ""
    (line,) = err.strip().splitlines()
    assert line.startswith("error: ")
    return line


def test_an_adaptive_ladder_without_arm_effects_says_what_to_give(tmp_path: Path) -> None:
    line = _one_sentence(*_plan(tmp_path, ADAPTIVE, history=tmp_path / "absent.csv"))
    assert "give --arm-effects with one effect per treatment arm (p90, p110)" in line


def test_arm_effects_on_a_spec_without_arms_is_refused(tmp_path: Path) -> None:
    two = HEAD + "control_policy: list-price\ntreatment_policy: price-90\n"
    line = _one_sentence(*_plan(tmp_path, two, "--arm-effects", "1"))
    assert "--arm-effects plans a price ladder" in line and "--effect" in line


def test_the_wrong_count_of_arm_effects_is_refused(tmp_path: Path) -> None:
    line = _one_sentence(*_plan(tmp_path, ADAPTIVE, "--arm-effects", "1,2,3"))
    assert "gives 3 effect(s) for 2 treatment arm(s) (p90, p110)" in line


def test_a_design_that_cannot_adapt_is_refused(tmp_path: Path) -> None:
    crossover = ADAPTIVE + "design: crossover\ncrossover: {phase_periods: 7}\n"
    line = _one_sentence(*_plan(tmp_path, crossover, "--arm-effects", "1,2"))
    assert "adaptive" in line and "crossover" in line


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("--arm-effects", "1,x"), "--arm-effects must be numbers"),
        (("--arm-effects", "1,2", "--effect", "1"), "not both"),
        (("--arm-effects", "-1,2", "--relative"), "above -1"),
    ],
)
def test_bad_arm_effects_are_one_sentence(tmp_path: Path, args: tuple[str, ...], said: str) -> None:
    line = _one_sentence(*_plan(tmp_path, ADAPTIVE, *args))
    assert said in line


def test_the_same_ladder_fixed_is_planned_for_power(tmp_path: Path) -> None:
    code, out, err = _plan(tmp_path, FIXED, "--sims", "10")
    assert code == 0, err
    assert "fe" in out and "p110" in out
