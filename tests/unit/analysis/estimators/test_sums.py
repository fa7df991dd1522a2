"""The estimators that are sums over products, fitted from parts of the panel (issue #42): the
partials of any split into chunks of products (and, where the estimator allows it, of periods)
merge into the estimate the one-piece fit publishes, to 1e-9, in any grouping."""

from __future__ import annotations

import math
import re
from functools import reduce

import numpy as np
import pytest

from analysis.errors import PanelError
from analysis.estimators.registry import make
from analysis.estimators.sums import ArmSums, PartsMismatch
from analysis.metrics import fit_price, price_from_parts
from analysis.panel import Panel
from controller.designs import randomisation_points as optimal_switchback_points
from core.ports import EstimatorPlan

N, T = 41, 12


def cells(
    seed: int = 0, n: int = N, t: int = T, points: list[int] | None = None, fixed: bool = False
) -> dict:
    """A random-days-like panel with products of very different levels, blackouts and a class
    per product, with ``fixed`` a few cells the design did not randomise (the switchback
    estimators refuse them); with ``points``, the arm is drawn at those periods only."""
    rng = np.random.default_rng(seed)
    level = rng.uniform(2, 60, size=(n, 1))
    price = rng.uniform(5, 20, size=(n, 1))
    if points is None:
        W = rng.random((n, t)) < 0.5
    else:
        block = np.cumsum(np.isin(np.arange(t), points)) - 1
        W = (rng.random((n, len(points))) < 0.5)[:, block]
    units = rng.poisson(level * (1 + 0.1 * W)).astype(float)
    revenue = units * price * (1 - 0.05 * W)
    blackout = rng.random((n, t)) < 0.1
    prob = np.full((n, t), 0.5)
    if fixed:
        prob[rng.random((n, t)) < 0.03] = 1.0  # not randomised: dm leaves them out
    return {
        "units": units,
        "revenue": revenue,
        "W": W,
        "blackout": blackout,
        "probability": prob,
        "groups": np.array([f"c{i % 7}" for i in range(n)]),
    }


def panel_of(c: dict, y: str = "units", rows=slice(None), cols=slice(None), part=False) -> Panel:
    return Panel(
        Y=c[y][rows][:, cols],
        W=c["W"][rows][:, cols],
        units=np.array([f"p{i:03d}" for i in range(c["W"].shape[0])])[rows],
        times=np.arange(c["W"].shape[1])[cols],
        blackout=c["blackout"][rows][:, cols],
        probability=c["probability"][rows][:, cols],
        groups=c["groups"][rows],
        part=part,
    )


def product_chunks(n: int, cuts: list[int]) -> list[slice]:
    edges = [0, *cuts, n]
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def assert_same(a, b) -> None:
    """Two results publish the same figures (to 1e-9, relative)."""
    assert a.method == b.method and a.se_method == b.se_method
    assert (a.n_units, a.n_periods, a.n_cells) == (b.n_units, b.n_periods, b.n_cells)
    for x, y in ((a.effect, b.effect), (a.se, b.se), (a.df or 0.0, b.df or 0.0)):
        assert x == pytest.approx(y, rel=1e-9, abs=1e-12) or (math.isnan(x) and math.isnan(y))
    for key in ("mean_treated", "mean_control", "df_ratio"):
        if key in b.details:
            assert a.details[key] == pytest.approx(b.details[key], rel=1e-9)
    if "mean_covariance" in b.details:
        assert np.allclose(a.details["mean_covariance"], b.details["mean_covariance"], rtol=1e-9)


PLANS = [
    EstimatorPlan("dm", {"cluster": "unit"}),
    EstimatorPlan("dm", {"cluster": "class"}),
    EstimatorPlan("dm", {"cluster": "unit", "correction": "cr1"}),
    EstimatorPlan("ht", {"p": 0}),
    EstimatorPlan("hajek", {"p": 0}),
]


@pytest.mark.parametrize("plan", PLANS, ids=lambda p: f"{p.name}-{sorted(p.params.items())}")
@pytest.mark.parametrize("cuts", [[1], [7, 8, 30], [13, 26], list(range(1, N))])
def test_chunks_of_products_merge_into_the_one_piece_estimate(plan, cuts) -> None:
    c = cells(fixed=plan.name == "dm")
    est = make(plan.name, **plan.params)
    whole = est.fit(panel_of(c)).result_
    parts = [est.partial(panel_of(c, rows=s, part=True)) for s in product_chunks(N, cuts)]
    merged = reduce(lambda a, b: a.merge_units(b), parts)
    assert_same(est.finish(merged), whole)


@pytest.mark.parametrize("plan", PLANS, ids=lambda p: f"{p.name}-{sorted(p.params.items())}")
def test_merges_group_in_any_order(plan) -> None:
    """Two workers' partials (any grouping of the chunks) merge into what one publishes."""
    c = cells(seed=4, fixed=plan.name == "dm")
    est = make(plan.name, **plan.params)
    a, b, d = (est.partial(panel_of(c, rows=s, part=True)) for s in product_chunks(N, [10, 25]))
    left = est.finish(a.merge_units(b).merge_units(d))
    right = est.finish(a.merge_units(b.merge_units(d)))
    assert_same(left, right)
    assert_same(left, est.fit(panel_of(c)).result_)


@pytest.mark.parametrize("plan", PLANS, ids=lambda p: f"{p.name}-{sorted(p.params.items())}")
def test_where_cells_count_on_their_own_periods_merge_too(plan) -> None:
    """dm, and ht/hajek at lag 0 drawn every period: the sums kept of the compacted periods
    plus the open periods' (single periods too) are the whole panel's."""
    c = cells(seed=2, fixed=plan.name == "dm")
    est = make(plan.name, **plan.params)
    assert est.period_additive()
    whole = est.fit(panel_of(c)).result_
    chunks = []
    for rows in product_chunks(N, [20]):
        by_period = [
            est.partial(panel_of(c, rows=rows, cols=cols, part=True))
            for cols in (slice(0, 9), slice(9, 10), slice(10, T))
        ]
        chunks.append(reduce(lambda a, b: a.merge_periods(b), by_period))
    assert_same(est.finish(chunks[0].merge_units(chunks[1])), whole)


def test_a_window_over_several_periods_refuses_a_split_by_periods() -> None:
    pts = list(optimal_switchback_points(T, 2))
    c = cells(points=pts)
    params = {"p": 2, "randomization_points": tuple(pts), "point_periods": True}
    for name in ("ht", "hajek"):
        est = make(name, **params)
        assert not est.period_additive()
        a = est.partial(panel_of(c, cols=slice(0, 6), part=True))
        b = est.partial(panel_of(c, cols=slice(6, T), part=True))
        with pytest.raises(PartsMismatch, match="windows tie periods"):
            a.merge_periods(b)


@pytest.mark.parametrize("name", ["ht", "hajek"])
def test_switchback_windows_over_chunks_of_products(name) -> None:
    """The optimal switchback's plan (lag 2, its points, periods by label)."""
    pts = list(optimal_switchback_points(T, 2))
    c = cells(seed=5, points=pts)
    c["blackout"][:, 4] = True  # a period no product can use: dropped by point_periods
    est = make(name, p=2, randomization_points=tuple(pts), point_periods=True)
    whole = est.fit(panel_of(c)).result_
    parts = [est.partial(panel_of(c, rows=s, part=True)) for s in product_chunks(N, [5, 33])]
    assert_same(est.finish(reduce(lambda a, b: a.merge_units(b), parts)), whole)


def test_chunks_that_keep_different_periods_are_not_merged() -> None:
    """A period with no usable cell among one chunk's products only: the chunk would drop it
    and the whole panel keep it, so their windows differ; the merge refuses, and a chunk told
    the whole panel's periods merges into the one-piece estimate."""
    pts = list(optimal_switchback_points(T, 2))
    c = cells(seed=6, points=pts)
    c["blackout"][:10, 5] = True
    est = make("hajek", p=2, randomization_points=tuple(pts), point_periods=True)
    a, b = (est.partial(panel_of(c, rows=s, part=True)) for s in product_chunks(N, [10]))
    with pytest.raises(PartsMismatch, match="kept different periods"):
        a.merge_units(b)
    kept = np.arange(T)
    a, b = (est.partial(panel_of(c, rows=s, part=True), kept) for s in product_chunks(N, [10]))
    assert_same(est.finish(a.merge_units(b)), est.fit(panel_of(c)).result_)


@pytest.mark.parametrize("name", ["dm", "hajek"])
def test_the_price_paid_from_merged_parts_is_the_one_piece_fit(name) -> None:
    c = cells(seed=3)
    plan = EstimatorPlan(name, {"p": 0} if name == "hajek" else {"cluster": "unit"})
    est = make(name, **plan.params)
    whole = fit_price(plan, panel_of(c), panel_of(c, "revenue"))
    pu, pr = [], []
    for s in product_chunks(N, [3, 17]):
        pu.append(est.partial(panel_of(c, rows=s, part=True)))
        pr.append(est.partial(panel_of(c, "revenue", rows=s, part=True)))
    merged = price_from_parts(
        plan,
        est,
        reduce(lambda a, b: a.merge_units(b), pu),
        reduce(lambda a, b: a.merge_units(b), pr),
    )
    assert_same(merged, whole)
    assert merged.metric == whole.metric == "price"
    assert merged.effect == pytest.approx(
        whole.details["mean_treated"] - whole.details["mean_control"]
    )


def test_the_difference_in_means_from_sums_is_the_cell_formula() -> None:
    """The sums' difference in means and CR1 variance against the textbook formulas written
    out over the cells (means of the arms; Liang-Zeger with G/(G-1) on the residuals)."""
    c = cells(seed=8, fixed=True)
    p = panel_of(c)
    use = p.randomised
    t, k = p.W & use, ~p.W & use
    m1, m0 = p.Y[t].mean(), p.Y[k].mean()
    e1 = np.where(t, p.Y - m1, 0.0).sum(axis=1) / t.sum()
    e0 = np.where(k, p.Y - m0, 0.0).sum(axis=1) / k.sum()
    present = use.any(axis=1)
    G = int(present.sum())
    var = G / (G - 1) * float(((e1 - e0)[present] ** 2).sum())
    got = make("dm", cluster="unit", correction="cr1").fit(p).result_
    assert got.effect == pytest.approx(m1 - m0, rel=1e-12)
    assert got.se == pytest.approx(math.sqrt(var), rel=1e-12)
    assert got.df == G - 1 and got.n_cells == int(use.sum())


def test_arm_sums_add_up_keys_in_any_order() -> None:
    a = ArmSums.of(np.array(["b", "a", "b"]), [1, 2, 3], [0, 1, 0], [5, 6, 7], [0, 1, 0])
    assert a.keys.tolist() == ["a", "b"] and a.n1.tolist() == [2, 4] and a.s1.tolist() == [6, 12]
    b = ArmSums.of(np.array(["c", "a"]), [1, 1], [1, 1], [1, 1], [1, 1])
    m = a.merge(b)
    assert m.keys.tolist() == ["a", "b", "c"] and m.n1.tolist() == [3, 4, 1]
    assert b.merge(a).n1.tolist() == m.n1.tolist()


def test_an_arm_without_cells_is_refused_after_the_merge() -> None:
    c = cells()
    c["W"][:] = False
    est = make("dm")
    part = est.partial(panel_of(c, rows=slice(0, 5), part=True))
    with pytest.raises(PanelError, match="both treated and control"):
        est.finish(part)


@pytest.mark.parametrize("name", ["ht", "hajek"])
def test_a_draw_every_period_gives_what_the_windows_sums_give(name) -> None:
    """ht at lag 0 drawn every period sums each cell on its own (``_partial_cells``); the same
    design given as explicit points (every period) takes the windows' general sums."""
    c = cells(seed=9)
    c["probability"][:] = np.random.default_rng(9).uniform(0.2, 0.8, size=(N, T))
    fast = make(name, p=0).fit(panel_of(c)).result_
    general = make(name, p=0, randomization_points=tuple(range(T))).fit(panel_of(c)).result_
    assert fast.effect == pytest.approx(general.effect, rel=1e-12)
    assert fast.se == pytest.approx(general.se, rel=1e-12)
    assert (fast.n_cells, fast.n_units, fast.n_periods) == (
        general.n_cells,
        general.n_units,
        general.n_periods,
    )


def _identical(a, b, where: str = "") -> None:
    """The same partial, bit for bit: every field, arrays by their bytes."""
    import dataclasses

    if dataclasses.is_dataclass(a):
        assert type(a) is type(b), where
        for f in dataclasses.fields(a):
            _identical(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape, where
        if a.dtype.kind in "fiub":
            assert a.tobytes() == b.tobytes(), where
        else:
            assert a.tolist() == b.tolist(), where
    elif isinstance(a, float):
        assert np.float64(a).tobytes() == np.float64(b).tobytes(), where
    else:
        assert a == b, where


SHARED = [
    *PLANS,
    EstimatorPlan("dm", {"cluster": "cell"}),
    EstimatorPlan("ht", {"p": 1}),
    EstimatorPlan("hajek", {"p": 1}),
]


@pytest.mark.parametrize("plan", SHARED, ids=lambda p: f"{p.name}-{sorted(p.params.items())}")
@pytest.mark.parametrize("rows", [slice(None), slice(3, 17)])
def test_the_metrics_partials_at_once_are_each_metrics_own(plan, rows) -> None:
    """``partials`` of one part's metrics (the chunked worker's units, revenue and profit panels,
    ``Panel.with_outcome``: their masks made once) is, bit for bit, each metric's ``partial``."""
    c = cells(seed=11, fixed=plan.name == "dm")
    est = make(plan.name, **plan.params)
    units = panel_of(c, rows=rows, part=True)
    panels = {
        "units": units,
        "revenue": units.with_outcome(c["revenue"][rows]),
        "profit": units.with_outcome(c["revenue"][rows] - 2.0 * c["units"][rows]),
    }
    got = est.partials(panels)
    assert list(got) == list(panels)
    for metric, panel in panels.items():
        _identical(got[metric], est.partial(panel), f"{plan.name}/{metric}")


@pytest.mark.parametrize("name", ["ht", "hajek"])
def test_the_metrics_partials_at_once_over_windows_and_points(name) -> None:
    pts = list(optimal_switchback_points(T, 2))
    c = cells(seed=5, points=pts)
    c["blackout"][:, 4] = True
    est = make(name, p=2, randomization_points=tuple(pts), point_periods=True)
    units = panel_of(c, part=True)
    panels = {"units": units, "revenue": units.with_outcome(c["revenue"])}
    got = est.partials(panels)
    for metric, panel in panels.items():
        _identical(got[metric], est.partial(panel), f"{name}/{metric}")


@pytest.mark.parametrize("name", ["dm", "ht", "hajek"])
def test_an_error_of_the_shared_masks_is_every_metrics_and_panels_apart_are_each_own(
    name,
) -> None:
    """A design probability of 1 the switchback estimators refuse: the same error for every
    metric, as each metric's own partial raises it; panels that do not share their cells (a
    different treatment) are each computed on their own."""
    c = cells(seed=3)
    c["probability"][2, 5] = 1.0
    units = panel_of(c, part=True)
    est = make(name)
    got = est.partials({"units": units, "revenue": units.with_outcome(c["revenue"])})
    if name == "dm":  # the difference in means leaves the cell out
        _identical(got["units"], est.partial(units))
    else:
        for metric in ("units", "revenue"):
            assert isinstance(got[metric], PanelError), metric
            with pytest.raises(PanelError, match=re.escape(str(got[metric]))):
                est.partial(units)
    fine = panel_of(cells(seed=3), part=True)
    apart = {"units": fine, "flipped": fine.with_treatment(~fine.W)}
    got = est.partials(apart)
    for metric, panel in apart.items():
        _identical(got[metric], est.partial(panel), metric)
