"""The assignments heatmap: products x periods in bins, each cell its share of each arm and of
each blackout kind (expected values counted by hand), and the schedule it is made of, which
is the controller's own (design_matrices, assign)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from controller.blackout import load_freeze
from controller.designs import assign, design_matrices
from controller.spec import ExperimentSpec
from streams.client.heatmap import (
    REASONS,
    aggregate,
    bins,
    heatmap_document,
    product_history,
    schedule_matrices,
)

W, P, F = 1, 2, 3  # washout, phase-blackout, freeze: 1 + their place in REASONS
#: 4 products x 3 periods; arm 0 treatment, 1 control
ARM = np.array([[0, 1, 0], [1, 1, 0], [0, 0, 0], [1, 0, 1]], dtype=np.int8)
BLACK = np.array([[W, 0, 0], [W, 0, F], [0, 0, 0], [0, P, 0]], dtype=np.int8)


def test_the_codes_follow_the_reasons() -> None:
    assert REASONS[W - 1] == "washout" and REASONS[P - 1] == "phase-blackout"
    assert REASONS[F - 1] == "freeze"


def test_bins_are_contiguous_and_differ_by_at_most_one() -> None:
    assert bins(5, 2).tolist() == [0, 0, 0, 1, 1]
    assert bins(3, 10).tolist() == [0, 1, 2]  # fewer places than bins: one each
    sizes = np.bincount(bins(1_000_003, 200))
    assert len(sizes) == 200 and set(sizes.tolist()) == {5000, 5001} and sizes.sum() == 1_000_003


def test_two_products_a_row_and_one_period_a_column() -> None:
    h = aggregate(ARM, BLACK, n_arms=2, max_rows=2, max_cols=3)
    assert h.rows == [(0, 1), (2, 3)] and h.cols == [(0, 0), (1, 1), (2, 2)]
    assert h.cells.tolist() == [[2, 2, 2], [2, 2, 2]]
    # arm 0's share: row 0 has {0,1}, {1,1}, {0,0}; row 1 {0,1}, {0,0}, {0,1}
    assert h.arms[0].tolist() == [[0.5, 0.0, 1.0], [0.5, 1.0, 0.5]]
    assert h.arms[1].tolist() == [[0.5, 1.0, 0.0], [0.5, 0.0, 0.5]]
    assert h.blackouts[W - 1].tolist() == [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    assert h.blackouts[P - 1].tolist() == [[0.0, 0.0, 0.0], [0.0, 0.5, 0.0]]
    assert h.blackouts[F - 1].tolist() == [[0.0, 0.0, 0.5], [0.0, 0.0, 0.0]]
    assert h.blackouts[3].tolist() == [[0.0] * 3] * 2


def test_periods_binned_two_and_one() -> None:
    h = aggregate(ARM, BLACK, n_arms=2, max_rows=1, max_cols=2)
    assert h.rows == [(0, 3)] and h.cols == [(0, 1), (2, 2)]
    assert h.cells.tolist() == [[8, 4]]
    # periods 0-1 of all four products: arms 0,1,1,1,0,0,1,0 -> four of eight on arm 0
    assert h.arms[0].tolist() == [[0.5, 0.75]]
    # washouts 2 of 8, phase-blackout 1 of 8; the freeze 1 of 4 in period 2
    assert h.blackouts[W - 1].tolist() == [[0.25, 0.0]]
    assert h.blackouts[P - 1].tolist() == [[0.125, 0.0]]
    assert h.blackouts[F - 1].tolist() == [[0.0, 0.25]]


def test_a_cell_a_product_period_when_it_fits() -> None:
    h = aggregate(ARM, BLACK, n_arms=2)
    assert h.cells.tolist() == [[1] * 3] * 4
    assert h.arms[0].tolist() == (ARM == 0).astype(float).tolist()
    assert h.blackouts[F - 1].tolist() == (BLACK == F).astype(float).tolist()


def test_shapes_must_agree() -> None:
    with pytest.raises(ValueError, match="one shape"):
        aggregate(ARM, BLACK[:, :2], n_arms=2)


START = datetime(2026, 3, 2, tzinfo=UTC)


def _spec() -> ExperimentSpec:
    return ExperimentSpec(
        id="hm",
        design="random-days",
        products=tuple(f"p{i}" for i in range(30)),
        start=START,
        end=START + timedelta(days=6),
        washout=timedelta(hours=2),
        treatment_policy="t",
        control_policy="c",
        seed=11,
    )


def test_the_schedule_is_the_controllers_draws() -> None:
    spec = _spec()
    arm, black = schedule_matrices(spec)
    m = design_matrices(spec)
    assert (arm == m.arm).all()
    assert ((black == W) == m.washout).all()  # random days: washouts are its only blackouts
    assert (black == W)[:, 0].all()  # every product enters with a washout


def test_a_freeze_is_laid_over_the_schedule() -> None:
    spec = _spec()
    day = load_freeze(
        {"id": "f1", "start": (START + timedelta(days=2)).isoformat(),
         "end": (START + timedelta(days=3)).isoformat(), "experiments": ["hm"], "reason": "x"}
    )  # fmt: skip
    other = load_freeze(
        {"id": "f2", "start": START.isoformat(), "end": (START + timedelta(days=6)).isoformat(),
         "experiments": ["not-hm"], "reason": "y"}
    )  # fmt: skip
    arm, black = schedule_matrices(spec, [day, other])
    plain_arm, plain_black = schedule_matrices(spec)
    assert (black[:, 2] == F).all()  # period 2 frozen for every product
    assert (arm == plain_arm).all()  # the design's arm, the freeze its blackout
    assert (black[:, [0, 1]] == plain_black[:, [0, 1]]).all()
    doc = heatmap_document(spec, aggregate(arm, black, 2), period=3)
    assert doc["arms"] == ["treatment", "control"] and doc["control"] == "control"
    assert doc["blackout_share"][F - 1][0][2] == 1.0
    assert doc["rows"][0] == {"first": "p0", "last": "p0", "n": 1} and doc["periods"] == 6


def test_a_products_history_is_what_the_schedule_says() -> None:
    spec = _spec()
    rows = product_history(spec, "p7", [], None)
    assert [r["period"] for r in rows] == list(range(6))
    for r in rows:
        a = assign(spec, "p7", r["period"])
        assert r["arm"] == ("treatment" if a.index == 0 else "control")
        assert r["policy"] == a.policy and r["blackout_reason"] == a.blackout_reason
