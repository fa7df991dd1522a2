"""The live coverage study's three-arm scoring (streams.live.coverage_arms) on hand-made
estimate messages and truths written down here: an arm's final interval, its simultaneous
interval and its sequences at every look; the family of both arms; the recommended price; and
the ladders it builds (the designs whose estimators are fitted per arm, valid three-arm
specs)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import pytest

from analysis.arms import PAIR_METHODS
from controller import design_registry
from controller.designs import get_design
from lab.price import ladder_ratios
from lab.studies import live_ladder
from streams.live import coverage_arms as ca
from streams.live import coverage_arms_tables as tables
from streams.live.driver import LiveRun

#: one arm's absolute estimates at looks 3, 4 and 5 (5 periods: the final look)
LOOKS = {
    3: {"effect": 2.0, "ci_low": 0.5, "ci_high": 3.5, "cs_low": -1.0, "cs_high": 5.0},
    4: {"effect": 2.6, "ci_low": 1.9, "ci_high": 3.3, "cs_low": 1.8, "cs_high": 3.4},
    5: {"effect": 1.9, "se": 0.5, "ci_low": 0.9, "ci_high": 2.9, "cs_low": 0.2,
        "cs_high": 3.6, "sim_ci_low": 0.7, "sim_ci_high": 3.1, "sim_method": "dunnett-t",
        "cs_split": 2,
        "relative_effect": 0.10, "relative_ci_low": 0.02, "relative_ci_high": 0.18,
        "relative_cs_low": -0.05, "relative_cs_high": 0.25},
}  # fmt: skip
#: the arm's truth at each look: look 4's sequence [1.8, 3.4] excludes 1.5
TRUTHS = {3: 1.0, 4: 1.5, 5: 1.2}


def test_an_arms_final_interval_and_its_sequences_against_the_truths() -> None:
    row = ca.score_arm(LOOKS, TRUTHS, 5, relative=False)
    assert row["truth"] == 1.2 and row["effect"] == 1.9 and row["se"] == 0.5
    assert row["covered"] is True  # 0.9 <= 1.2 <= 2.9
    assert (row["sim_low"], row["sim_high"], row["sim_method"]) == (0.7, 3.1, "dunnett-t")
    assert row["sim_covered"] is True
    assert (row["looks"], row["cs_looks"], row["cs_looks_missed"]) == (3, 3, 1)
    assert row["cs_ever_missed"] is True  # look 4: 1.5 < 1.8
    assert row["cs_split"] == 2 and row["unbounded"] is False
    # the same final interval against a truth outside it (and outside the sequence)
    missed = ca.score_arm(LOOKS, {**TRUTHS, 5: 3.0}, 5, relative=False)
    assert missed["covered"] is False and missed["sim_covered"] is True  # 2.9 < 3.0 <= 3.1
    assert missed["cs_looks_missed"] == 1  # 3.0 is inside [0.2, 3.6]
    outside = ca.score_arm(LOOKS, {**TRUTHS, 5: 3.2}, 5, relative=False)
    assert outside["sim_covered"] is False


def test_the_relative_form_reads_its_own_fields_and_has_no_simultaneous_interval() -> None:
    truths = {3: 0.08, 4: 0.08, 5: 0.08}
    row = ca.score_arm(LOOKS, truths, 5, relative=True)
    assert row["effect"] == 0.10 and row["covered"] is True  # 0.02 <= 0.08 <= 0.18
    assert math.isnan(row["se"]) and row["sim_covered"] is None and row["sim_method"] is None
    # only the final look has a relative sequence: one look scored, not missed
    assert (row["cs_looks"], row["cs_looks_missed"], row["cs_ever_missed"]) == (1, 0, False)
    far = ca.score_arm(LOOKS, {**truths, 5: 0.30}, 5, relative=True)
    assert far["covered"] is False and far["cs_ever_missed"] is True


def test_what_is_not_scored_is_said() -> None:
    # Fieller's set unbounded at the final look: said, not scored
    unbounded = {5: LOOKS[5] | {"relative_ci_low": None, "relative_ci_high": None}}
    row = ca.score_arm(unbounded, {5: 0.1}, 5, relative=True)
    assert row["unbounded"] is True and row["covered"] is None
    # no sequence at any look: not scored (not a miss)
    bare = {5: {"effect": 1.0, "se": 0.4, "ci_low": 0.2, "ci_high": 1.8}}
    row = ca.score_arm(bare, {5: 1.0}, 5, relative=False)
    assert row["cs_ever_missed"] is None and row["cs_looks"] == 0
    assert row["sim_covered"] is None  # no simultaneous interval published
    # nothing published at the final look: no final interval, and not "unbounded"
    row = ca.score_arm({3: LOOKS[3]}, {3: 1.0, 5: 1.2}, 5, relative=False)
    assert row["covered"] is None and row["unbounded"] is False and math.isnan(row["effect"])


def _arm(exp: str, arm: str, sim: Any, own: Any, cs: Any, **kw: Any) -> dict[str, Any]:
    return {"experiment": exp, "design": "random-days", "metric": "units", "form": "absolute",
            "estimator": "dm", "arm": arm, "restarted": False, "primary": True,
            "sim_covered": sim, "covered": own, "cs_ever_missed": cs} | kw  # fmt: skip


def test_the_family_is_both_arms_at_once() -> None:
    rows = pd.DataFrame(
        [
            _arm("e1", "p95", True, True, False), _arm("e1", "p90", True, False, False),
            _arm("e2", "p95", True, True, False), _arm("e2", "p90", False, False, True),
            _arm("e3", "p95", None, True, None), _arm("e3", "p90", True, True, None),
            _arm("e4", "p95", True, True, True, restarted=True),  # one arm only published
        ]
    )  # fmt: skip
    fam = tables.family_rows(rows).set_index("experiment")
    assert fam.loc["e1", "sim_all_covered"] is True and fam.loc["e1", "own_all_covered"] is False
    assert fam.loc["e1", "cs_joint_ever_missed"] is False
    assert (
        fam.loc["e2", "sim_all_covered"] is False and fam.loc["e2", "cs_joint_ever_missed"] is True
    )
    # an arm without a simultaneous interval: the family is not scored; no sequences: neither
    assert (
        fam.loc["e3", "sim_all_covered"] is None and fam.loc["e3", "cs_joint_ever_missed"] is None
    )
    assert fam.loc["e4", "sim_all_covered"] is None and fam.loc["e4", "restarted"]
    (summary,) = tables.summarise_families(tables.family_rows(rows))
    # scored: e1 (covered) and e2 (missed); either arm's sequence: e1 no, e2 yes
    assert (summary["family"], summary["family_scored"]) == (0.5, 2)
    assert (summary["cs_joint_ever_missed"], summary["cs_joint_scored"]) == (0.5, 2)
    # own intervals, both at once: e1 and e2 no, e3 yes (its simultaneous one aside)
    assert summary["own_family"] == pytest.approx(1 / 3) and summary["experiments"] == 4


def test_a_share_counts_only_what_was_scored() -> None:
    p, mcse, n = tables.share([True, None, False, True, None, True])
    assert (p, n) == (0.75, 4)
    assert mcse == pytest.approx(math.sqrt(0.75 * 0.25 / 4))


def test_the_recommended_price_against_the_true_optimum() -> None:
    doc = {"optimal_price_ratio": 0.95, "optimal_price_ratio_ci_low": 0.92,
           "optimal_price_ratio_ci_high": 0.99, "at_range_edge": False, "elasticity": -2.1}  # fmt: skip
    row = ca.score_demand(doc, 0.96)
    assert row["published"] and row["covered"] is True and row["optimal_price_ratio"] == 0.95
    assert ca.score_demand(doc, 0.91)["covered"] is False
    assert ca.score_demand(None, 0.96) == {"truth": 0.96, "published": False}
    # a curve without unit costs gives no recommendation: published, not scored
    plain = {"optimal_price_ratio": None, "elasticity": -2.0}
    assert ca.score_demand(plain, 0.96)["covered"] is None
    demand = pd.DataFrame(
        [{"design": "random-days", "experiment": f"e{i}"} | ca.score_demand(doc, t)
         for i, t in enumerate((0.96, 0.93, 0.91, 0.97))]
        + [{"design": "time-bound", "experiment": "e9"} | ca.score_demand(None, 0.95)]
    )  # fmt: skip
    by = {r["design"]: r for r in tables.summarise_demand(demand)}
    rd = by["random-days"]
    assert (rd["coverage"], rd["scored"]) == (0.75, 4)  # 0.91 lies below 0.92
    assert rd["bias"] == pytest.approx(0.95 - (0.96 + 0.93 + 0.91 + 0.97) / 4)
    assert by["time-bound"]["published"] == 0 and "coverage" not in by["time-bound"]


def test_the_ladders_are_the_designs_fitted_per_arm_on_valid_three_arm_specs() -> None:
    fitted = []
    for design in design_registry.names():
        market = live_ladder.ladder_market(24, 5, "t-")
        spec = live_ladder.ladder_spec(design, market, 14, 5)
        plans = get_design(design).estimators(spec)
        if any(p.name in PAIR_METHODS for p in plans):
            fitted.append(design)
        assert spec.n_arms == 3 and list(ladder_ratios(spec)) == [1.0, 0.95, 0.90]
        assert spec.costs_of(market.product_ids) is not None  # profit is estimated
    assert sorted(fitted) == sorted(ca.ARM_DESIGNS)
    # three phases of a third of the days, in the study's and the quick run's lengths
    assert live_ladder.crossover_phases(14) == {"phase_periods": 4, "blackout_periods": 1}
    for days in (9, 14):
        spec = live_ladder.ladder_spec("crossover", live_ladder.ladder_market(24, 5, "t-"), days, 5)
        assert spec.crossover is not None and spec.crossover.phase_periods == days // 3


def test_a_numerically_zero_se_is_told_from_the_arms_others() -> None:
    looks = {2: {"se": 8e-9}, 3: {"se": 3.0}, 4: {"se": 1.8}, 5: {"effect": 1.0}}
    assert ca.zero_se(looks) == {2: True, 3: False, 4: False}  # 8e-9 <= 1e-6 x 3.0
    row = ca.score_arm(
        {k: {"effect": 1.0, "ci_low": 0.0, "ci_high": 2.0} | e for k, e in looks.items()},
        {2: 1.0, 3: 1.0, 4: 1.0, 5: 1.0},
        5,
        relative=False,
    )
    assert (row["zero_se_looks"], row["first_look"]) == (1, 2)
    assert ca.zero_se({3: {"se": 0.0}, 4: {"se": 1e-3}}) == {3: True, 4: False}


def test_what_an_arm_rests_on_is_counted_from_its_analysed_cells() -> None:
    market = live_ladder.ladder_market(6, 5, "r-")
    spec = live_ladder.ladder_spec("cluster", market, 14, 5, {"a": ("r-000", "r-001", "r-002"),
                                                    "b": ("r-003", "r-004", "r-005")})  # fmt: skip
    run = LiveRun(spec, market)
    run.arm_index[:] = spec.control_index
    p95 = [a.name for a in spec.arm_list()].index("p95")
    # class a in p95 in periods 0 and 2, class b in period 1; period 2 not analysed for r-002
    run.arm_index[0:3, 0] = run.arm_index[0:3, 2] = run.arm_index[3:6, 1] = p95
    run.analysed[:, :4] = True
    run.analysed[2, 2] = False
    assert ca.reach(run, "p95", 1) == {"products": 3, "class_periods": 1}
    assert ca.reach(run, "p95", 3) == {"products": 6, "class_periods": 3}
    assert ca.reach(run, "p90", 3) == {"products": 0, "class_periods": 0}
    other = LiveRun(live_ladder.ladder_spec("random-days", market, 14, 5), market)
    assert ca.reach(other, "p95", 3)["class_periods"] is None


def test_the_looks_are_pooled_by_look_and_by_class_periods() -> None:
    def look(k: int, cp: int, ci: Any, cs: Any, zero: bool = False) -> dict[str, Any]:
        return {"experiment": "e", "design": "cluster", "metric": "units", "estimator": "fe",
                "arm": "p95", "look": k, "se": 1.0, "zero_se": zero, "ci_covered": ci,
                "cs_covered": cs, "arm_products": 6, "arm_class_periods": cp}  # fmt: skip

    looks = pd.DataFrame(
        [look(2, 2, False, False, zero=True), look(2, 3, True, None), look(2, 3, True, True),
         look(3, 14, True, True), look(3, 12, False, True)]
    )  # fmt: skip
    by = {r["look"]: r for r in tables.by_look(looks)}
    assert by[2]["estimates"] == 3 and by[2]["ci_coverage"] == pytest.approx(2 / 3)
    assert (by[2]["cs_missed"], by[2]["cs_scored"], by[2]["cs_absent"]) == (0.5, 2, 1)
    assert by[2]["zero_se"] == 1 and by[2]["arm_class_periods"] == pytest.approx(8 / 3)
    cp = {r["class_periods"]: r for r in tables.by_class_periods(looks)}
    assert set(cp) == {2, 3, tables.MANY_CLASS_PERIODS}  # 14 pooled with 12
    assert cp[12]["estimates"] == 2 and cp[12]["ci_coverage"] == 0.5 and cp[12]["at_least"]
    assert cp[2]["cs_missed"] == 1.0 and cp[2]["zero_se"] == 1
    assert tables.by_class_periods(looks.assign(design="random-days")) == []
