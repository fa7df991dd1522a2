"""``pricelab plan`` for an experiment of k > 2 arms: the family-wise false-positive rate of
an A/A ladder (the known truth, the history and the fresh experiments of test_plan_arms.py;
a file of its own, so that the suite's processes run its 400 A/A experiments beside that
file's 400 planned and 800 analysed ones).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from lab.plan import PlanConfig, read_history, run_plan
from tests.unit.lab.test_plan_arms import SIMS, _history, _realised, _spec

#: a study over 400 A/A ladders: the slow suite (README "Testing"), which CI runs by name
pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]


def test_an_aa_ladders_family_wise_false_positive_rate_is_at_most_alpha() -> None:
    # fresh A/A experiments (independent: a binomial share) analysed as analyze --arm does: the
    # simultaneous intervals hold the rate of any arm rejecting near alpha, where each arm's
    # own 95% interval would not; and the planner's type1_family, averaged over independent
    # histories (its simulations on one history share it, so their spread is not binomial),
    # is that rate
    realised = _realised("dm", SIMS, seed=12, effect=0.0)
    family, own = realised["family"], realised["own_family"]
    sd = math.sqrt(0.05 * 0.95 / SIMS)  # 0.0109
    assert family <= 0.05 + 2.5 * sd, family
    assert own > 0.10, own  # each arm's own 5% test: about 0.15 to 0.2 here
    planned = []
    for h in range(4):
        history = read_history(_history(100 + h), "sku", "day", "units")
        _, table, _ = run_plan([("ladder", _spec())], history, PlanConfig(sims=100, seed=h))
        planned.append(float(table.loc[table["estimator"] == "dm", "type1_family"].iloc[0]))
    mean, se = float(np.mean(planned)), float(np.std(planned, ddof=1) / math.sqrt(len(planned)))
    assert abs(mean - family) <= 3 * math.sqrt(se**2 + sd**2), (planned, family)
