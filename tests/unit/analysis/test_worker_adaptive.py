"""The analysis worker on an adaptive price ladder (issue #57): it publishes AdaptiveArms' AIPW
estimates on the recorded probabilities (the estimator the lab validates, fitted on the same
cells gives the same figures), not the fixed-allocation estimators (with the reason, once per
look), and leaves the latest look for the controller's rule. The ladder is played by the lab's
loop (:func:`lab.adaptive.run_ladder`) on a seeded simulated market."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from functools import cache

import numpy as np
import pandas as pd
import pytest

from analysis.adaptive import AdaptiveArms, AdaptivePanel
from analysis.adaptive_live import ladder_cells
from analysis.worker import AnalysisWorker, ExperimentInfo
from controller.clock import ManualClock
from controller.designs import design_of
from controller.spec import ExperimentSpec, load_spec
from core.ports import AdaptiveLook
from lab.adaptive import LadderRun, ladder_market, ladder_spec, run_ladder

AS_OF = datetime(2026, 6, 1, tzinfo=UTC)
RATIOS = (1.0, 0.85, 1.15, 1.3)
PRODUCTS, DAYS = 40, 12


@cache
def _ladder() -> tuple[ExperimentSpec, LadderRun]:
    products = [f"P{i:03d}" for i in range(PRODUCTS)]
    spec = ladder_spec(
        RATIOS, PRODUCTS, DAYS, seed=7, adaptive={"metric": "profit", "warmup": 3},
        costs=dict.fromkeys(products, 1.0),
    )  # fmt: skip
    market = ladder_market(spec, 0.5, order=0, decay=0.5, seed=11, demand=13)
    return spec, run_ladder(spec, market, lag=0)


def _cells(run: LadderRun, names: list[str]) -> pd.DataFrame:
    """The long cell table a panel source gives for the ladder's cells."""
    n, t = run.panel.Y.shape
    i, s = np.meshgrid(np.arange(n), np.arange(t), indexing="ij")
    arm = run.panel.arm[i, s].ravel()
    return pd.DataFrame(
        {
            "product": pd.Categorical([f"P{j:03d}" for j in i.ravel()]),
            "period": s.ravel(),
            "arm": pd.Categorical([names[a] for a in arm], categories=names),
            "profit": run.panel.Y[i, s].ravel(),
            "treated": (arm != 0).astype(int),
            "probability": 1.0 - run.probabilities[s.ravel(), 0],
            "blackout": False,
        }
    )


def _info(spec: ExperimentSpec) -> ExperimentInfo:
    design = design_of(spec)
    periods = DAYS
    return ExperimentInfo(
        spec.id,
        spec.design,
        "running",
        spec.model_dump(mode="json") | {"n_periods": periods},
        estimators=design.estimators(spec),
        planned_periods=periods,
        arms=spec.n_arms,
    )


class Source:
    """A panel source with each period's recorded probabilities (``AllocationSource``)."""

    def __init__(self, df: pd.DataFrame, info: ExperimentInfo, allocations: dict[int, tuple]):
        self.df, self.info, self.recorded = df, info, allocations

    async def experiments(self):
        return [self.info]

    async def panel(self, exp_id, as_of):
        return self.df

    async def allocations(self, exp_id):
        return dict(self.recorded)


class NoAllocations(Source):
    allocations = None  # type: ignore[assignment]


class Sinks:
    def __init__(self) -> None:
        self.estimates: list = []
        self.verdicts: list = []
        self.adaptive: list = []
        self.demand: list = []
        self.looks: list[AdaptiveLook] = []

    async def publish(self, experiment, result, as_of, cs):
        self.estimates.append((result, cs))

    async def publish_verdict(self, experiment, verdict, as_of):
        self.verdicts.append(dict(verdict))

    async def publish_adaptive(self, experiment, look, as_of):
        self.adaptive.append(dict(look))

    async def publish_demand(self, experiment, demand, as_of):
        self.demand.append(demand)

    async def put_look(self, look):
        self.looks.append(look)

    async def trip(self, experiment, metric, detail):
        raise AssertionError("no guardrail here")


def _recorded(run: LadderRun) -> dict[int, tuple]:
    return {t: tuple(float(p) for p in row) for t, row in enumerate(run.probabilities)}


async def _look(allocations: dict[int, tuple] | None = None, source=Source) -> Sinks:
    spec, run = _ladder()
    names = [a.name for a in spec.arm_list()]
    info = _info(spec)
    sinks = Sinks()
    worker = AnalysisWorker(
        source(_cells(run, names), info, _recorded(run) if allocations is None else allocations),
        sinks,
        ManualClock(AS_OF),
        guardrails=sinks,
        verdicts=sinks,
        demand=sinks,
        adaptive=sinks,
        looks=sinks,
    )
    await worker.run_once()
    return sinks


def _reference(probabilities: np.ndarray) -> AdaptiveArms:
    """AdaptiveArms as the lab fits it, on the ladder's own matrices."""
    _, run = _ladder()
    panel = AdaptivePanel(run.panel.Y, run.panel.arm, probabilities)
    return AdaptiveArms(method="aipw", lag=0, horizon=DAYS).fit(panel)


def test_the_ladder_adapted() -> None:
    """The simulated ladder's probabilities moved away from the warmup's equal shares, so the
    recorded probabilities are not the spec's allocations."""
    _, run = _ladder()
    assert np.allclose(run.probabilities[:3], 0.25)
    assert np.abs(run.probabilities[3:] - 0.25).max() > 0.05


@pytest.mark.asyncio
async def test_publishes_aipw_estimates_equal_to_adaptive_arms() -> None:
    spec, run = _ladder()
    sinks = await _look()
    ref = _reference(run.probabilities)
    names = [a.name for a in spec.arm_list()]
    assert {r.method for r, _ in sinks.estimates} == {"aipw_adaptive"}
    assert sorted(str(r.arm) for r, _ in sinks.estimates) == sorted(names[1:])
    for result, cs in sinks.estimates:
        a = names.index(str(result.arm))
        assert result.metric == "profit"
        assert result.effect == pytest.approx(ref.effect_[a], rel=1e-12, abs=1e-9)
        assert cs == pytest.approx((ref.low_[a], ref.high_[a]), rel=1e-12)
        # the interval published is the sequence: no fixed-time interval under adaptation
        fields = result.to_dict()
        assert (fields["ci_low"], fields["ci_high"]) == pytest.approx(cs)
        assert math.isnan(fields["pvalue"])
        assert result.n_periods == DAYS and result.cs_split == len(names) - 1


@pytest.mark.asyncio
async def test_no_fixed_allocation_method_is_published_and_the_reason_is_given() -> None:
    spec, _ = _ladder()
    sinks = await _look()
    plans = [p.label for p in design_of(spec).estimators(spec)]
    assert plans  # the design's own estimators (fe, dm, ht): not valid here
    assert not {r.method for r, _ in sinks.estimates} & set(plans)
    assert sinks.demand == []  # no demand curve
    assert all(getattr(r, "mcb", None) is None for r, _ in sinks.estimates)  # no Hsu MCB
    (doc,) = sinks.adaptive  # one message per look
    for name in plans:
        assert name in doc["note"]
    assert "not published" in doc["note"]


@pytest.mark.asyncio
async def test_adaptive_message_carries_means_best_set_and_the_recorded_allocation() -> None:
    spec, run = _ladder()
    sinks = await _look()
    ref = _reference(run.probabilities)
    (doc,) = sinks.adaptive
    names = [a.name for a in spec.arm_list()]
    assert [a["arm"] for a in doc["arms"]] == names
    assert [a["mean"] for a in doc["arms"]] == pytest.approx(list(ref.mean_), rel=1e-12)
    assert doc["best_set"] == [n for n, b in zip(names, ref.looks_.best_set[-1], strict=True) if b]
    assert doc["recommended"] == names[int(np.argmax(ref.mean_))]
    assert [a["period"] for a in doc["allocation"]] == list(range(DAYS))
    got = np.array([a["probabilities"] for a in doc["allocation"]])
    assert np.array_equal(got, run.probabilities)
    assert doc["metric"] == "profit" and doc["n_periods"] == DAYS and doc["lag"] == 0


@pytest.mark.asyncio
async def test_put_look_carries_the_last_looks_means_covariance_and_periods() -> None:
    _, run = _ladder()
    # the period after the look's drawn (its flip ran): the look steers the one after it
    sinks = await _look(_recorded(run) | {DAYS: tuple(run.probabilities[-1])})
    ref = _reference(run.probabilities)
    (look,) = sinks.looks
    assert look.periods == DAYS and look.metric == "profit" and look.as_of == AS_OF
    assert look.means == pytest.approx(tuple(ref.looks_.mean[-1]), rel=1e-12)
    assert np.allclose(np.array(look.cov), ref.looks_.cov[-1], rtol=1e-12, atol=0)
    assert AdaptiveLook.from_dict(look.to_dict()) == look


@pytest.mark.asyncio
async def test_no_look_is_left_before_the_period_after_it_was_drawn() -> None:
    """The look of periods 0..P-1 would race the flip of P (both run just after P's boundary):
    it is left only once a period from P on has its record, so which look steers a period
    never depends on which process ran first."""
    _, run = _ladder()
    recorded = _recorded(run)
    assert (await _look(recorded)).looks == []
    (look,) = (await _look(recorded | {DAYS + 1: tuple(run.probabilities[-1])})).looks
    assert look.periods == DAYS


@pytest.mark.asyncio
async def test_the_recorded_probabilities_are_the_weights() -> None:
    """Other recorded probabilities (every cell's own arm still possible) give other
    estimates, those AdaptiveArms gives with them: the weights are the record's, never the
    spec's allocations."""
    _, run = _ladder()
    changed = run.probabilities.copy()
    changed[5:] = 0.5 * changed[5:] + 0.5 * np.array([0.1, 0.2, 0.3, 0.4])
    sinks = await _look({t: tuple(row) for t, row in enumerate(changed)})
    before = await _look()
    ref = _reference(changed)
    names = [f"r{i}" for i in range(len(RATIOS))]
    for (result, _), (old, _) in zip(sinks.estimates, before.estimates, strict=True):
        a = names.index(str(result.arm))
        assert result.effect == pytest.approx(ref.effect_[a], rel=1e-12, abs=1e-9)
        assert abs(result.effect - old.effect) > 1e-6
    uniform = _reference(np.full_like(run.probabilities, 0.25))
    for result, _ in before.estimates:
        a = names.index(str(result.arm))
        assert abs(result.effect - uniform.effect_[a]) > 1e-6


@pytest.mark.asyncio
async def test_the_verdict_rests_on_the_adaptive_sequences() -> None:
    spec, run = _ladder()
    sinks = await _look()
    ref = _reference(run.probabilities)
    (verdict,) = sinks.verdicts
    names = [a.name for a in spec.arm_list()]
    assert verdict["estimator"] == "aipw_adaptive" and verdict["metric"] == "profit"
    arms = {a["arm"]: a for a in verdict["arms"]}
    assert sorted(arms) == sorted(names[1:])
    for name, a in arms.items():
        i = names.index(name)
        assert (a["cs_low"], a["cs_high"]) == pytest.approx((ref.low_[i], ref.high_[i]))


@pytest.mark.asyncio
async def test_without_recorded_probabilities_nothing_is_published() -> None:
    sinks = await _look(source=NoAllocations)
    assert (sinks.estimates, sinks.adaptive, sinks.verdicts, sinks.looks) == ([], [], [], [])


@pytest.mark.asyncio
async def test_periods_without_a_record_are_not_estimated() -> None:
    """A period whose probabilities are not recorded (yet) ends the look: the estimate is
    AdaptiveArms' on the periods before it, and the look says so."""
    _, run = _ladder()
    recorded = {t: p for t, p in _recorded(run).items() if t < 9}
    sinks = await _look(recorded)
    (look,) = sinks.looks
    assert look.periods == 9
    panel = AdaptivePanel(run.panel.Y[:, :9], run.panel.arm[:, :9], run.probabilities[:9])
    ref = AdaptiveArms(method="aipw", lag=0, horizon=DAYS).fit(panel)
    assert look.means == pytest.approx(tuple(ref.looks_.mean[-1]), rel=1e-12)


def test_a_missing_cell_is_blacked_out_with_the_windows_through_it() -> None:
    names = ["a", "b"]
    rows = [
        {"product": p, "period": t, "arm": names[(t + i) % 2], "units": 1.0, "blackout": False}
        for i, p in enumerate(["x", "y"])
        for t in range(5)
        if not (p == "x" and t == 1)
    ]
    cells = ladder_cells(pd.DataFrame(rows), names, {t: (0.5, 0.5) for t in range(5)}, lag=1)
    assert cells.periods == 5
    assert cells.blackout.tolist() == [
        [False, True, True, False, False],
        [False, False, False, False, False],
    ]
    assert cells.arm[1].tolist() == [1, 0, 1, 0, 1]


@pytest.mark.asyncio
async def test_guardrails_are_read_on_the_adaptive_estimates() -> None:
    """Each arm's guardrail reading is the relative sequence of its adaptive estimate
    (Fieller's at the simultaneous sequence's multiplier), not a fixed-allocation fit."""
    spec, run = _ladder()
    names = [a.name for a in spec.arm_list()]
    info = _info(spec)
    info.params["guardrails"] = [{"metric": "profit", "max_drop_pct": 60.0}]
    sinks = Sinks()
    worker = AnalysisWorker(
        Source(_cells(run, names), info, _recorded(run)),
        sinks,
        ManualClock(AS_OF),
        guardrails=sinks,
        verdicts=sinks,
        adaptive=sinks,
    )
    await worker.run_once()
    (verdict,) = sinks.verdicts
    guards = {g["arm"]: g for g in verdict["guardrails"]}
    assert sorted(guards) == sorted(names[1:])
    for result, _ in sinks.estimates:
        rel = result.relative(0.05, (result.sequence[1] - result.effect) / result.se)
        g = guards[result.arm]
        assert g["relative_cs_low"] == pytest.approx(rel["relative_cs_low"])
        assert g["relative_cs_high"] == pytest.approx(rel["relative_cs_high"])
        assert g["status"] in ("ok", "open")


@pytest.mark.asyncio
async def test_a_wholly_blacked_out_period_without_a_record_is_passed_over() -> None:
    """A period every cell of which is blacked out (a pause) may have no record: the look goes
    on past it, the period and the windows through it in no estimate, as AdaptiveArms gives
    with that period in blackout."""
    spec, run = _ladder()
    names = [a.name for a in spec.arm_list()]
    df = _cells(run, names)
    df.loc[df["period"] == 6, "blackout"] = True
    recorded = {t: p for t, p in _recorded(run).items() if t != 6}
    recorded[DAYS] = recorded[DAYS - 1]  # the next period drawn: the look can steer a later one
    sinks = Sinks()
    worker = AnalysisWorker(
        Source(df, _info(spec), recorded), sinks, ManualClock(AS_OF), adaptive=sinks, looks=sinks
    )
    await worker.run_once()
    (look,) = sinks.looks
    assert look.periods == DAYS
    blackout = np.zeros(run.panel.Y.shape, bool)
    blackout[:, 6] = True
    y = np.where(blackout, np.nan, run.panel.Y)
    probs = run.probabilities.copy()
    probs[6] = 0.25  # any valid row: no cell of period 6 (nor window through it) is estimated
    ref = AdaptiveArms(method="aipw", lag=0, horizon=DAYS).fit(
        AdaptivePanel(y, run.panel.arm, probs, blackout)
    )
    assert look.means == pytest.approx(tuple(ref.looks_.mean[-1]), rel=1e-12)
    (doc,) = sinks.adaptive
    assert [a["period"] for a in doc["allocation"]] == [t for t in range(DAYS + 1) if t != 6]


@pytest.mark.asyncio
async def test_an_optimal_switchbacks_carryover_and_blocks_are_the_designs() -> None:
    """On an optimal switchback of carryover order 1, the look is AdaptiveArms' at lag 1 whose
    periods redraw only at the design's randomisation points (the lag and the points its
    estimators use)."""
    base, _ = _ladder()
    d = base.model_dump(mode="json") | {
        "design": "optimal-switchback",
        "optimal_switchback": {"carryover_order": 1},
        # a window spans two blocks' draws: the floor that keeps a held cell a period
        "adaptive": base.model_dump(mode="json")["adaptive"] | {"floor": 0.12},
    }
    spec = load_spec({k: v for k, v in d.items() if v is not None})
    market = ladder_market(spec, 0.5, order=1, decay=0.5, seed=11, demand=13)
    run = run_ladder(spec, market, lag=1)
    names = [a.name for a in spec.arm_list()]
    info = _info(spec)
    (points,) = {tuple(p.params["randomization_points"]) for p in info.estimators}
    sinks = Sinks()
    recorded = _recorded(run) | {DAYS: tuple(run.probabilities[-1])}  # the next period drawn
    worker = AnalysisWorker(
        Source(_cells(run, names), info, recorded), sinks, ManualClock(AS_OF), looks=sinks
    )
    await worker.run_once()
    redraw = np.isin(np.arange(DAYS), points)
    assert not redraw.all()  # some periods keep their block's draw
    panel = AdaptivePanel(run.panel.Y, run.panel.arm, run.probabilities, redraw=redraw)
    ref = AdaptiveArms(method="aipw", lag=1, horizon=DAYS).fit(panel)
    for result, _ in sinks.estimates:
        assert result.effect == pytest.approx(ref.effect_[names.index(str(result.arm))], rel=1e-12)
    (look,) = sinks.looks
    assert look.means == pytest.approx(tuple(ref.looks_.mean[-1]), rel=1e-12)
    lag0 = AdaptiveArms(method="aipw", lag=0, horizon=DAYS).fit(panel)
    assert look.means != pytest.approx(tuple(lag0.looks_.mean[-1]), rel=1e-9)
