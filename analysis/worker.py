"""The periodic analysis worker's logic: panel in, running estimates out.

The worker receives its ports (``core.ports``): a ``PanelSource`` (Redis, in controller/), an
``EstimateSink`` and a ``GuardrailSink`` (Kafka, in streams/), and a ``SequenceTuningStore``
(Redis). It imports no client and no controller module. ``run_once()`` is the unit of work;
the worker loop only schedules it.

What to estimate is the design's decision: every experiment arrives with its design's
default estimators (``ExperimentInfo.estimators``, with the level they cluster at), fitted by
:func:`fit_plan` - the same function ``compare-designs`` and the studies fit with, so the
figures they validate are the ones published here. Every estimate carries its standard error,
its reference distribution (``df``), a 95% interval and an anytime-valid confidence sequence
(analysts inspect running estimates repeatedly); the sequence's mixture is fixed at the first
look and kept in the ``SequenceTuningStore``, so a restarted or second worker continues the
same sequence.

An experiment of more products than ``chunking.above`` is read in chunks of products
(``analysis.chunked``, issue #42): the estimators that are sums over products (``dm``, ``ht``,
``hajek``, and the price paid by ``dm`` and ``hajek``) are published from the merged partial
statistics of every product, exactly what one piece gives; every other estimator, the
elasticity, segments and checks run as below on the long rows of a seeded sample of
``chunking.sample`` products (their ``n_units`` says so), and spillover is not identified.

A stopped or ended experiment is looked at until its final look is out (``core.final_look``):
once every period it ran is compacted (``ExperimentInfo.sealed``), the worker that publishes
its look stores that look's clock time in the tuning store after every message is
acknowledged, and lets go of what it kept; the panel source lists it no more. So what a
worker holds and how long its cycle takes do not grow with every experiment ever run.

An adaptive price ladder (a spec with ``adaptive:``, issue #57) gets none of the estimators
below, which assume the spec's fixed allocation: each look publishes AIPW on the probabilities
the controller recorded (``AllocationSource``) per metric and arm with simultaneous
anytime-valid sequences, its look (``kind: adaptive``, with why the other methods are not
published), the verdict and guardrails from the same sequences, and leaves the latest look for
the controller's rule (``AdaptiveLookSink``): ``analysis.adaptive_live``.

An experiment of more than two arms gets one estimate per (metric, estimator, non-control arm),
each arm fitted against the control on the pair's cells with the k - 1 comparisons'
simultaneous interval (``analysis.arms``, the code ``pricelab analyze --arm`` runs), and no
sequence, verdict or guardrail check yet (issue #41).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from typing import Any, Protocol, TypeVar

import networkx as nx
import numpy as np
import pandas as pd

from analysis.adaptive import cs_multiplier
from analysis.adaptive_live import ESTIMATOR as ADAPTIVE_ESTIMATOR
from analysis.adaptive_live import METRICS as ADAPTIVE_METRICS
from analysis.adaptive_live import (
    AdaptiveEstimate,
    AdaptiveFit,
    adaptive_metric,
    carryover,
    fit_ladder,
    is_adaptive,
    ladder_cells,
    not_valid_note,
)
from analysis.arms import (
    BLACKOUT,
    JOINT_METHODS,
    PAIR_METHODS,
    TREATED,
    Arms,
    compare_pairs,
    dm_correlation,
    not_on_pairs,
    pair_frame,
    read_arms,
)
from analysis.chunked import ChunkedLooks, Chunking, Population, sample_positions
from analysis.confseq import ConfidenceSequence
from analysis.demand import DemandResult, fit_ladder_cells
from analysis.elasticity import ElasticityResult, within_product_elasticity
from analysis.errors import AnalysisError, NotEstimable, PanelError
from analysis.estimators import registry
from analysis.evidence import demand_reading
from analysis.inference import bh_adjust
from analysis.metrics import PRICE_ESTIMATORS, fit_price, metrics_of, negative_margins
from analysis.panel import Panel
from analysis.results import EstimateResult, NotIdentified, published_fields
from analysis.sharded import ShardedLooks
from analysis.verdict import (
    DECISION_METRICS,
    GuardrailReading,
    Verdict,
    decide,
    decide_arms,
    decision_metric,
    decode_arm,
    decode_decision,
    encode_arm_decision,
    encode_decision,
    period_days,
)
from core import status
from core.errors import kept
from core.final_look import FINAL_LOOK, final_look
from core.ports import (
    AdaptiveLookSink,
    AdaptiveSink,
    AllocationSource,
    ChunkedPanelSource,
    ClockLike,
    DemandSink,
    EstimateSink,
    EstimatorPlan,
    ExperimentInfo,
    GuardrailSink,
    HoldsExperiments,
    PanelSource,
    PartialStore,
    SequenceTuningStore,
    ShardOwnership,
    VerdictSink,
)
from core.series import arm_label, segment_label, series

log = logging.getLogger("pricelab.analysis")
T = TypeVar("T")

#: estimators of an experiment whose source names none
DEFAULT_PLANS: tuple[EstimatorPlan, ...] = (EstimatorPlan("dm"),)

__all__ = [
    "DEFAULT_PLANS",
    "AnalysisWorker",
    "ExperimentInfo",
    "InMemorySequenceTuning",
    "WorkerObserver",
    "fit_plan",
    "panel_from_cells",
    "sequence_target",
]


class WorkerObserver(Protocol):
    """Hooks for metrics."""

    def estimated(self, experiment: str, estimator: str, seconds: float, ok: bool) -> None: ...

    def published(self, experiment: str, estimator: str, as_of: datetime) -> None: ...

    def guardrail_tripped(self, experiment: str, metric: str) -> None: ...

    def cycle_done(self, as_of: datetime, seconds: float, published: int) -> None:
        """A whole ``run_once`` finished: every experiment was looked at ``as_of`` and
        ``published`` estimates went out."""
        ...

    def reporting(self, experiments: frozenset[str]) -> None:
        """The experiments whose estimates this worker publishes as of this cycle (every one
        it looked at; with sharding on, the ones it merges): what it told of any other is no
        longer its to report (another worker of the group publishes it, or it is gone)."""
        ...

    def holding(self, looked: int, held: int) -> None:
        """A cycle's size: the experiments it looked at as the worker that publishes them,
        and those the worker keeps something of between cycles (``AnalysisWorker.held``);
        neither grows with the stopped and ended experiments whose final look is out."""
        ...


class _Superseded(Exception):
    """This worker lost the merge of an experiment's look to another worker of its group
    during the look (:meth:`AnalysisWorker._still_merging`); ``told``: the verdicts and demand
    curves it had published of that look."""

    def __init__(self, experiment: str, told: int = 0) -> None:
        super().__init__(experiment)
        self.told = told


class _NullObserver:
    def estimated(self, experiment: str, estimator: str, seconds: float, ok: bool) -> None:
        return None

    def published(self, experiment: str, estimator: str, as_of: datetime) -> None:
        return None

    def guardrail_tripped(self, experiment: str, metric: str) -> None:
        return None

    def cycle_done(self, as_of: datetime, seconds: float, published: int) -> None:
        return None

    def reporting(self, experiments: frozenset[str]) -> None:
        return None

    def holding(self, looked: int, held: int) -> None:
        return None


class InMemorySequenceTuning:
    """A :class:`core.ports.SequenceTuningStore` in process memory (offline replays, tests):
    the first target given for a key is kept."""

    def __init__(self) -> None:
        self.targets: dict[tuple[str, str], float] = {}

    async def fix(self, experiment: str, key: str, target_se: float) -> float:
        return self.targets.setdefault((experiment, key), target_se)

    async def recall(self, experiment: str, key: str) -> float | None:
        return self.targets.get((experiment, key))


def load_solvers() -> None:
    """Load the compiled solvers now (the synthetic family's Frank-Wolfe loop, ~0.5 s and
    ~110 MB of RSS), so that neither falls on a look: a worker calls it when it starts."""
    from analysis.estimators.fw_kernel import warm

    warm()


def panel_from_cells(
    df: pd.DataFrame, outcome: str = "units", *, unit: str = "product", time: str = "period"
) -> Panel:
    """A long cell table (the PanelSource's, or the simulator's) as a validated Panel: the
    outcome (units or revenue), the arm in force, blackout, the design probability, and each
    unit's class when the table has a ``class`` column."""
    return Panel.from_long(
        df,
        unit=unit,
        time=time,
        outcome=outcome,
        treated="treated",
        blackout="blackout",
        probability="probability",
        group="class" if "class" in df.columns else None,
    )


def fit_plan(
    plan: EstimatorPlan, panel: Panel, seed: int = 0, metric: str | None = None
) -> EstimateResult:
    """Fit one planned estimator; the result is published under the plan's label (and the
    metric it measures, when given)."""
    result = registry.make(plan.name, seed=seed, **dict(plan.params)).fit(panel).result
    if result.method != plan.label:
        result = replace(result, method=plan.label)
    return result if metric is None else replace(result, metric=metric)


def sequence_target(se: float, periods_seen: int, periods_planned: int) -> float:
    """The SE expected at the planned horizon from a look's SE: se x sqrt(seen / planned)."""
    return se * math.sqrt(periods_seen / max(periods_planned, periods_seen))


def _plans(info: ExperimentInfo) -> Sequence[EstimatorPlan]:
    return info.estimators or DEFAULT_PLANS


def _plan_of(item: EstimatorPlan | str) -> EstimatorPlan:
    return EstimatorPlan(item) if isinstance(item, str) else item


def _control_baseline(df: pd.DataFrame) -> dict[str, float]:
    """Each metric's mean over the analysed control cells (what a relative MDE is a share
    of, for an estimate without a control mean of its own)."""
    control = df[(df["treated"] == 0) & ~df["blackout"].astype(bool)]
    return {
        m: float(control[m].mean())
        for m in ("units", "revenue", "profit")
        if m in control.columns and len(control)
    }


def _planned(info: ExperimentInfo, result: EstimateResult) -> int:
    """The experiment's planned length in periods (the spec's, else the look's)."""
    return info.planned_periods or int(info.params.get("n_periods") or result.n_periods)


@dataclass
class AnalysisWorker:
    source: PanelSource
    sink: EstimateSink
    clock: ClockLike
    observer: WorkerObserver = field(default_factory=_NullObserver)
    guardrails: GuardrailSink | None = None
    verdicts: VerdictSink | None = None
    #: where a price ladder's demand curve goes (kind: demand); None publishes none
    demand: DemandSink | None = None
    tuning: SequenceTuningStore = field(default_factory=InMemorySequenceTuning)
    #: above how many products an experiment is read in chunks (analysis.chunked)
    chunking: Chunking = field(default_factory=Chunking)
    estimators_for: Callable[[ExperimentInfo], Sequence[EstimatorPlan | str]] = _plans
    alpha: float = 0.05
    seed: int = 0
    min_periods: int = 2
    #: one experiment's analysis spread over the workers of a group (analysis.sharded): the
    #: shards this worker owns and where the chunks' parts of a look go; None: it analyses
    #: every experiment alone
    shards: ShardOwnership | None = None
    partials: PartialStore | None = None
    #: seconds the worker that merges a look waits for the others' parts before it computes
    #: the missing ones itself
    shard_wait: float = 60.0
    #: an adaptive ladder's look (kind: adaptive: its arms' means, best set and recorded
    #: probabilities per period); None publishes none
    adaptive: AdaptiveSink | None = None
    #: where an adaptive ladder's latest look goes for the controller's rule (issue #57);
    #: None: nowhere (the ladder's probabilities then stay at its allocations)
    looks: AdaptiveLookSink | None = None
    #: why an adaptive ladder was last not estimated, said once until it changes
    _adaptive_not_yet: dict[str, str] = field(default_factory=dict, repr=False)
    _margins_told: set[str] = field(default_factory=set, repr=False)
    _looks: ChunkedLooks = field(init=False, repr=False)
    _sharded: ShardedLooks | None = field(init=False, repr=False, default=None)
    _arms_told: set[str] = field(default_factory=set, repr=False)
    #: why an experiment's arms were last not estimable, said once until it changes
    _arms_not_yet: dict[str, str] = field(default_factory=dict, repr=False)
    #: experiment -> the number of the failure its look last raised (run_once's order)
    _failed: dict[str, int] = field(default_factory=dict, repr=False)
    _failures: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        self._looks = ChunkedLooks(self.chunking, self.seed)
        if self.shards is not None and self.partials is not None:
            self._sharded = ShardedLooks(
                self.chunking, self.shards, self.partials, self.seed, wait=self.shard_wait
            )

    async def _confidence_sequence(
        self, info: ExperimentInfo, result: EstimateResult, key: str, split: int = 1
    ) -> tuple[float, float] | None:
        """Anytime-valid interval (Howard et al. 2021 normal mixture; analysis/confseq.py).

        The mixture is tuned once per experiment and sequence, at the first look, to the SE
        expected at the planned horizon, and kept in the tuning store: the guarantee needs it
        fixed, and a restarted or second worker must continue the same sequence.
        """
        cs = await self._sequence(info, result, key, split)
        if cs is None:
            return None
        # at the estimate's own reference: its t where the SE rests on few clusters
        r = float(cs.radius(result.se, result.df))
        return (result.effect - r, result.effect + r)

    async def _sequence(
        self, info: ExperimentInfo, result: EstimateResult, key: str, split: int = 1
    ) -> ConfidenceSequence | None:
        """The sequence ``key`` of the experiment, its mixture fixed at its first look; with
        ``split`` comparisons (a k-arm experiment's k - 1 arms), at alpha / split each, so
        that they hold together (Bonferroni: valid whatever their dependence)."""
        if not (math.isfinite(result.se) and result.se > 0):
            return None
        target = await self.tuning.fix(info.id, key, self._proposed_target(info, result))
        return ConfidenceSequence(target_se=target, alpha=self.alpha / split, intersect=False)

    @staticmethod
    def _proposed_target(info: ExperimentInfo, result: EstimateResult) -> float:
        return sequence_target(result.se, result.n_periods, _planned(info, result))

    async def run_once(
        self, tick: int | None = None
    ) -> list[tuple[str, EstimateResult | ElasticityResult | NotIdentified]]:
        """Estimate every experiment with data once; publish each estimate. Returns them.
        ``tick``: the round of looks this cycle belongs to, when the workers of a group
        share experiments (:func:`streams.worker.shards.aligned_ticks`)."""
        await self.clock.sync()
        as_of = self.clock.now()
        t_cycle = time.perf_counter()
        published: list[tuple[str, EstimateResult | ElasticityResult | NotIdentified]] = []
        verdicts = 0  # and the other messages of their own kind (demand curves)
        infos = await self.source.experiments()
        # what is kept of an experiment no longer listed (its final look is out) is let go
        self._forget({i.id for i in infos})
        looked = 0
        # an experiment whose estimates the broker refuses at every cycle (a record against
        # its contract) raises out of every cycle: the one whose look failed latest goes last,
        # so the others' looks and guardrail checks go on
        for info in sorted(infos, key=lambda i: self._failed.get(i.id, 0)):
            sharded = self._sharded
            generation = None if sharded is None else sharded.ownership.generation()
            try:
                verdicts += await self._look_at(info, as_of, tick, published)
            except _Superseded as lost:
                verdicts += lost.told
                log.info(
                    "experiment %s: this worker no longer merges it (the group rebalanced "
                    "during its look): the worker that does publishes its next round's look",
                    info.id,
                )
            except Exception:
                self._failures += 1
                self._failed[info.id] = self._failures
                raise
            else:
                self._failed.pop(info.id, None)
                # this worker's look as the one that publishes it, the group unchanged
                # throughout (with sharding on, the others' looks only compute parts)
                mine = sharded is None or (
                    sharded.merges(info.id) and sharded.ownership.generation() == generation
                )
                looked += mine
                if mine and final_look(info.status, info.sealed):
                    await self._close(info, as_of)
        sharded = self._sharded
        if sharded is None or sharded.ownership.owned() is not None:
            # not while out of the group (joining, rebalancing, broker away): what it told
            # stays, and ages, until it knows which experiments are its own
            self.observer.reporting(
                frozenset(i.id for i in infos if sharded is None or sharded.merges(i.id))
            )
        self.observer.holding(looked, len(self.held()))
        # the messages of the cycle, verdicts included (a driver waits for all of them)
        self.observer.cycle_done(as_of, time.perf_counter() - t_cycle, len(published) + verdicts)
        return published

    async def _close(self, info: ExperimentInfo, as_of: datetime) -> None:
        """The final look at a stopped or ended experiment whose data is sealed is out (every
        message acknowledged): say so in the tuning store, where the panel source reads it
        (``core.final_look``: no worker lists it again, a restarted one included), and let
        go of what this worker kept of it."""
        await self.tuning.fix(info.id, FINAL_LOOK, as_of.timestamp() * 1000.0)
        log.info(
            "experiment %s: its final look (as of %s) is out: it is not analysed again",
            info.id, as_of.isoformat(),
        )  # fmt: skip
        self._forget_one(info.id)

    def _forget(self, listed: set[str]) -> None:
        """Let go of every experiment not in ``listed``."""
        for gone in self.held(own=True) - listed:
            self._forget_one(gone)

    def _forget_one(self, experiment: str) -> None:
        self._looks.drop(experiment)
        for held in (self._arms_not_yet, self._adaptive_not_yet, self._failed):
            held.pop(experiment, None)
        for told in (self._arms_told, self._margins_told):
            told.discard(experiment)

    def held(self, own: bool = False) -> frozenset[str]:
        """The experiments of which this worker keeps something between cycles: the chunked
        looks' sums and rows, what it said once, its failures' order, and (unless ``own``)
        what its panel source keeps (the compacted periods it read)."""
        mine = (
            set(self._looks.held())
            | set(self._arms_not_yet)
            | set(self._adaptive_not_yet)
            | set(self._failed)
            | self._arms_told
            | self._margins_told
        )
        if not own and isinstance(self.source, HoldsExperiments):
            mine |= self.source.held()
        return frozenset(mine)

    async def _look_at(
        self,
        info: ExperimentInfo,
        as_of: datetime,
        tick: int | None,
        published: list[tuple[str, EstimateResult | ElasticityResult | NotIdentified]],
    ) -> int:
        """One experiment's look at ``as_of``: its estimates published (and appended to
        ``published``); returns how many verdicts and demand curves it published."""
        verdicts = 0
        if is_adaptive(info.params):
            # read whole, chunked or not: AIPW's windows and outcome model span every period
            if self._sharded is not None and not self._sharded.merges(info.id):
                return verdicts  # another worker of the group analyses it
            return await self._adaptive_look(info, as_of, published)
        population: Population | None = None
        if self._chunked(info):
            try:
                look = await self._population(info, as_of, tick)
            except AnalysisError as exc:
                log.warning("experiment %s: panel not usable yet: %s", info.id, exc)
                return verdicts
            if look is None:
                if info.arms > 2:
                    self._tell_arms(info)
                return verdicts
            population, df = look
        else:
            if self._sharded is not None and not self._sharded.merges(info.id):
                return verdicts  # another worker of the group analyses it
            # read even when nothing is estimated from it: reading compacts its closed
            # periods
            df = await self.source.panel(info.id, as_of)
            if df.empty or df["period"].nunique() < self.min_periods:
                if info.arms > 2:
                    self._tell_arms(info)
                return verdicts
        if info.arms > 2:
            self._tell_arms(info)
            # read in chunks, the arms are fitted on the uniform sample alone: ``df`` also
            # holds every segment's products, which would weigh them more
            if population is not None:
                sampled = self._sample(info, df, population)
                if sampled is None:
                    return verdicts
                df = sampled
            split = info.arms - 1
            # the verdict's estimator: the design's first that is fitted per arm
            plans = [_plan_of(p) for p in self.estimators_for(info)] or list(DEFAULT_PLANS)
            first = next((p.label for p in plans if p.name in PAIR_METHODS), None)
            decision: dict[str, tuple[EstimateResult, tuple[float, float] | None]] = {}
            for result in await self._arm_estimates(info, df):
                series = _series(arm_label(result.method, str(result.arm)), result.metric)
                cs = None
                if isinstance(result, EstimateResult):
                    result = replace(result, cs_split=split)
                    cs = await self._confidence_sequence(info, result, series, split)
                    metric = decision_metric(info.params)
                    if result.method == first and result.metric == metric:
                        decision[str(result.arm)] = (result, cs)
                self._still_merging(info, verdicts)
                await self.sink.publish(info.id, result, as_of, cs)
                self.observer.published(info.id, series, as_of)
                published.append((info.id, result))
            trips = info.status == status.RUNNING and self.guardrails is not None
            guards: dict[str, list[tuple[GuardrailReading, EstimateResult | None]]] = {}
            if trips or self.verdicts is not None:
                guards = await self._arm_guardrail_readings(info, df)
            if trips:
                await self._check_guardrails(info, [r for rs in guards.values() for r in rs])
            named = None
            if self.verdicts is not None and first is not None:
                baseline = _control_baseline(df) if population is None else population.baseline
                named = await self._arm_verdict(
                    info,
                    decision,
                    baseline,
                    int(df["period"].nunique()),
                    {arm: [r for r, _ in rs] for arm, rs in guards.items()},
                )
                if named is not None:
                    self._still_merging(info, verdicts)
                    await self.verdicts.publish_verdict(info.id, named.to_dict(), as_of)
                    self.observer.published(info.id, "verdict", as_of)
                    verdicts += 1
            curve = self._demand(info, df) if self.demand is not None else None
            if curve is not None and self.demand is not None:
                self._still_merging(info, verdicts)
                doc = curve.to_dict()
                # the recommended price is evidence for this look's verdict, and says so
                told = None if named is None else named.to_dict()
                doc["reading"] = demand_reading(doc, told).to_dict()
                await self.demand.publish_demand(info.id, doc, as_of)
                self.observer.published(info.id, "demand", as_of)
                verdicts += 1
            return verdicts
        sample = self._sample(info, df, population)
        try:
            panels = metric_panels(sample) if sample is not None else None
        except AnalysisError as exc:
            log.warning("experiment %s: panel not usable yet: %s", info.id, exc)
            if population is None:
                return verdicts
            panels = None
        self._warn_margins(info, df)
        # the verdict rests on one sequence: the design's first estimator's (a look where
        # it cannot be fitted has no verdict, rather than one from another sequence)
        first = _plan_of(next(iter(self.estimators_for(info)), DEFAULT_PLANS[0])).label
        primaries: dict[str, tuple[EstimateResult, tuple[float, float] | None]] = {}
        metrics = metrics_of(df.columns) if population is None else population.metrics
        for metric in metrics:
            for result, cs in await self._estimates(info, metric, panels, population):
                self._still_merging(info, verdicts)
                await self.sink.publish(info.id, result, as_of, cs)
                self.observer.published(info.id, _series(result.method, metric), as_of)
                published.append((info.id, result))
                if result.method == first:
                    primaries[metric] = (result, cs)
            for result, cs in await self._segments(info, df, metric):
                self._still_merging(info, verdicts)
                await self.sink.publish(info.id, result, as_of, cs)
                # its own series: a segment must not keep the whole experiment's age fresh
                series = _series(segment_label(result.method, str(result.segment)), metric)
                self.observer.published(info.id, series, as_of)
                published.append((info.id, result))
        elasticity = self._elasticity(info, panels) if panels is not None else None
        if elasticity is not None:
            self._still_merging(info, verdicts)
            await self.sink.publish(info.id, elasticity, as_of, None)
            self.observer.published(info.id, _series(elasticity.method, "elasticity"), as_of)
            published.append((info.id, elasticity))
        spills: Sequence[EstimateResult | NotIdentified] = ()
        if population is not None:
            spills = _spillover_too_large(info, population, self.chunking.above)
        elif panels is not None:
            spills = self.spillover_estimates(info, panels["units"])
        for spill in spills:
            if isinstance(spill, EstimateResult) and not math.isfinite(spill.effect):
                continue
            self._still_merging(info, verdicts)
            await self.sink.publish(info.id, spill, as_of, None)
            self.observer.published(info.id, spill.method, as_of)
            published.append((info.id, spill))
        trips = info.status == status.RUNNING and self.guardrails is not None
        if not trips and self.verdicts is None:
            return verdicts  # nothing would read the guardrails (an offline replay)
        readings = await self._guardrail_readings(info, sample, population)
        if trips:
            await self._check_guardrails(info, readings)
        if self.verdicts is None:
            return verdicts
        baseline = _control_baseline(df) if population is None else population.baseline
        verdict = await self._verdict(info, primaries, [r for r, _ in readings], baseline)
        if verdict is not None:
            self._still_merging(info, verdicts)
            await self.verdicts.publish_verdict(info.id, verdict.to_dict(), as_of)
            self.observer.published(info.id, "verdict", as_of)
            verdicts += 1
        return verdicts

    async def _verdict(
        self,
        info: ExperimentInfo,
        primaries: dict[str, tuple[EstimateResult, tuple[float, float] | None]],
        guardrails: list[GuardrailReading],
        baselines: Mapping[str, float] | None = None,
        retry: bool = True,
    ) -> Verdict | None:
        """The look's verdict on the decision metric (analysis.verdict), from the design's
        first estimator of it as published, with its sequence, and the guardrails.

        The first decisive verdict is kept in the tuning store (first writer wins), so a later
        look, a restarted worker or a second one repeats it: acting on the first decisive
        look is what the sequences' guarantee covers. A guardrail breached after a *ship*
        overrules it once, to *do not ship*, kept the same way."""
        metric = decision_metric(info.params)
        if metric not in primaries:
            log.info("experiment %s: no verdict at this look: no estimate of %s", info.id, metric)
            return None
        result, cs = primaries[metric]
        fields = published_fields(result, cs, self.alpha)
        key, overruled = f"verdict:{metric}", f"verdict:{metric}:overruled"
        decided, at = decode_decision(await self.tuning.recall(info.id, key))
        overruled_at: int | None = None
        if decided == "ship":
            later = await self.tuning.recall(info.id, overruled)
            if later is not None and math.isfinite(later):
                overruled_at = int(later)
        seq = await self._sequence(info, result, _series(result.method, metric))
        df = result.df
        verdict = decide(
            metric=metric,
            fields=fields,
            guardrails=guardrails,
            alpha=self.alpha,
            decided=decided,
            decided_at=at,
            overruled_at=overruled_at,
            mde_pct=info.params.get("mde_pct"),
            baseline=(baselines or {}).get(metric),
            planned_periods=_planned(info, result),
            days_per_period=period_days(info.params),
            # the sequence at the estimate's own reference, as published (t with few clusters)
            radius=None if seq is None else (lambda se: seq.radius(se, df)),
        )
        # first writer wins: a second worker deciding at the same look keeps one answer
        if decided is None and verdict.verdict != "keep_running":
            code = encode_decision(verdict.verdict, verdict.n_periods)
            kept = decode_decision(await self.tuning.fix(info.id, key, code))
        elif decided == "ship" and overruled_at is None and verdict.verdict == "do_not_ship":
            stored = await self.tuning.fix(info.id, overruled, float(verdict.n_periods))
            kept = ("do_not_ship", int(stored) if math.isfinite(stored) else None)
        else:
            return verdict
        if kept != (verdict.verdict, verdict.decided_at) and retry:
            # another worker decided first (or earlier): say its decision, kept (once: a
            # stored value that cannot be read back must not loop)
            return await self._verdict(info, primaries, guardrails, baselines, retry=False)
        return verdict

    async def _arm_verdict(
        self,
        info: ExperimentInfo,
        decision: Mapping[str, tuple[EstimateResult, tuple[float, float] | None]],
        baselines: Mapping[str, float] | None = None,
        periods_seen: int | None = None,
        guardrails: Mapping[str, Sequence[GuardrailReading]] | None = None,
        radius: Mapping[str, Callable[[np.ndarray], np.ndarray]] | None = None,
    ) -> Verdict | None:
        """The look's verdict of a k-arm experiment (analysis.verdict.decide_arms) on each
        arm's decision estimate of the design's first estimator fitted per arm, with its
        sequence at alpha / (k - 1), and each arm's ``guardrails``; None (logged) when an arm
        has no such estimate at this look: the rule needs every arm. The first decisive
        verdict and the arm it ships are one value in the tuning store
        (analysis.verdict.encode_arm_decision), first writer wins: later looks and other
        workers repeat it. A guardrail of the shipped arm breached later overrules the ship
        once, to *do not ship*, kept the same way as for two arms."""
        metric = decision_metric(info.params)
        split = info.arms - 1
        arms = info.params.get("arms") or ()
        names = [str(a["name"]) for a in arms]
        missing = [
            str(a["name"]) for a in arms if not a.get("control") and a["name"] not in decision
        ]
        if missing or not decision:
            log.info(
                "experiment %s: no verdict at this look: no %s estimate of arm(s) %s",
                info.id, metric, ", ".join(missing) or "any",
            )  # fmt: skip
            return None
        fields: dict[str, dict[str, Any]] = {}
        given, radius = radius, dict(radius or {})
        for arm, (result, cs) in decision.items():
            # the arm's sequence as published, for the days still needed (an adaptive
            # ladder's ``given``: its sequences are not the tuned mixtures)
            if given is None:
                key = _series(arm_label(result.method, str(arm)), metric)
                seq = await self._sequence(info, result, key, split)
                if seq is not None:
                    radius[arm] = partial(_radius_at, seq, result.df)
            fields[arm] = published_fields(result, cs, self.alpha)
        key, overruled = f"verdict:{metric}", f"verdict:{metric}:overruled"
        code = await self.tuning.recall(info.id, key)
        decided, at = decode_decision(code)
        decided_arm = _arm_named(names, decode_arm(code))
        overruled_at: int | None = None
        if decided == "ship":
            later = await self.tuning.recall(info.id, overruled)
            if later is not None and math.isfinite(later):
                overruled_at = int(later)
        if decided == "ship" and decided_arm is None:
            log.warning("experiment %s: the kept ship names no arm of the spec", info.id)
            return None
        any_result = next(iter(decision.values()))[0]

        def verdict_now() -> Verdict:
            return decide_arms(
                metric=metric,
                fields=fields,
                alpha=self.alpha,
                decided=decided,
                decided_at=at,
                decided_arm=decided_arm,
                mde_pct=info.params.get("mde_pct"),
                baseline=(baselines or {}).get(metric),
                planned_periods=_planned(info, any_result),
                days_per_period=period_days(info.params),
                radius=radius,
                periods_seen=periods_seen,
                guardrails=guardrails,
                overruled_at=overruled_at,
            )

        verdict = verdict_now()
        if decided == "ship" and overruled_at is None and verdict.verdict == "do_not_ship":
            stored = await self.tuning.fix(info.id, overruled, float(verdict.n_periods))
            overruled_at = int(stored) if math.isfinite(stored) else verdict.n_periods
            return verdict_now()
        if decided is None and verdict.verdict != "keep_running":
            index = names.index(verdict.arm) if verdict.verdict == "ship" and verdict.arm else None
            mine = encode_arm_decision(verdict.verdict, verdict.n_periods, index)
            kept = await self.tuning.fix(info.id, key, mine)
            if kept != mine:  # another worker decided first: say its decision, kept
                decided, at = decode_decision(kept)
                decided_arm = _arm_named(names, decode_arm(kept))
                if decided == "ship" and decided_arm is None:
                    return None
                verdict = verdict_now()
        return verdict

    async def _adaptive_look(
        self,
        info: ExperimentInfo,
        as_of: datetime,
        published: list[tuple[str, EstimateResult | ElasticityResult | NotIdentified]],
    ) -> int:
        """An adaptive ladder's look (issue #57; analysis.adaptive_live): AIPW on the recorded
        probabilities (``AllocationSource``, never the spec's allocations) per metric and arm,
        with the simultaneous anytime-valid sequences; the look's message (kind: adaptive)
        with the reason the fixed-allocation methods are not published; the verdict and the
        guardrails from the same sequences; and the latest look on the steering metric for
        the controller (``looks``). Returns how many messages of their own kind went out."""
        told = 0
        df = await self.source.panel(info.id, as_of)  # read: reading compacts closed periods
        if df.empty or df["period"].nunique() < self.min_periods:
            return told
        if not isinstance(self.source, AllocationSource):
            self._adaptive_wait(info, "its panel source gives no recorded probabilities")
            return told
        allocations = await self.source.allocations(info.id)
        plans = [_plan_of(p) for p in self.estimators_for(info)]
        lag, points = carryover(plans)
        arms = info.params.get("arms") or ()
        names = [str(a["name"]) for a in arms]
        control = next((i for i, a in enumerate(arms) if a.get("control")), 0)
        horizon = info.planned_periods or int(info.params.get("n_periods") or 0)
        steer = adaptive_metric(info.params)
        fits: dict[str, AdaptiveFit] = {}
        try:
            cells = ladder_cells(df, names, allocations, lag, points)
        except (AnalysisError, ValueError) as exc:
            self._adaptive_wait(info, str(exc))
            return told
        failed = False
        for metric in ADAPTIVE_METRICS:
            if metric not in cells.values:
                continue
            t0 = time.perf_counter()
            label = _series(ADAPTIVE_ESTIMATOR, metric)
            try:
                fits[metric] = fit_ladder(
                    cells, metric, names, control, lag=lag, horizon=horizon, alpha=self.alpha
                )
            except (AnalysisError, ValueError) as exc:
                self.observer.estimated(info.id, label, time.perf_counter() - t0, False)
                self._adaptive_wait(info, f"{metric}: {exc}")
                failed = True
                continue
            self.observer.estimated(info.id, label, time.perf_counter() - t0, True)
        if steer not in fits:
            self._adaptive_wait(info, f"its cells have no {steer}")
            return told
        if not failed:  # said once: a metric that keeps failing is not said at every look
            self._adaptive_not_yet.pop(info.id, None)
        decide_on = decision_metric(info.params)
        decision: dict[str, tuple[EstimateResult, tuple[float, float] | None]] = {}
        by_metric: dict[tuple[str, str], AdaptiveEstimate] = {}
        for metric, fit in fits.items():
            for est in fit.estimates():
                arm = str(est.arm)
                self._still_merging(info, told)
                await self.sink.publish(info.id, est, as_of, est.sequence)
                self.observer.published(info.id, _series(arm_label(est.method, arm), metric), as_of)
                published.append((info.id, est))
                by_metric[(metric, arm)] = est
                if metric == decide_on:
                    decision[arm] = (est, est.sequence)
        lead = fits[steer]
        if self.adaptive is not None:
            self._still_merging(info, told)
            doc = lead.to_dict(allocations, not_valid_note(plans), horizon)
            await self.adaptive.publish_adaptive(info.id, doc, as_of)
            self.observer.published(info.id, "adaptive", as_of)
            told += 1
        trips = info.status == status.RUNNING and self.guardrails is not None
        guards = self._adaptive_guardrails(info, names, control, by_metric)
        if trips:
            await self._check_guardrails(info, [r for rs in guards.values() for r in rs])
        if self.verdicts is not None and decide_on in fits and decision:
            fit = fits[decide_on]
            baseline = {m: float(f.estimator.mean_[control]) for m, f in fits.items()}
            verdict = await self._arm_verdict(
                info,
                decision,
                baseline,
                fit.periods,
                {arm: [r for r, _ in rs] for arm, rs in guards.items()},
                radius={
                    arm: partial(_adaptive_radius, fit, e.se) for arm, (e, _) in decision.items()
                },
            )
            if verdict is not None:
                self._still_merging(info, told)
                await self.verdicts.publish_verdict(info.id, verdict.to_dict(), as_of)
                self.observer.published(info.id, "verdict", as_of)
                told += 1
        # the look of periods 0 .. P - 1 is left only once a period from P on was drawn (has
        # a record, or cells): it then steers the next update (P + 1 at the earliest), never
        # the flip it would race (the flip of P runs at P's boundary, the first cycle that can
        # see period P - 1 complete just after it); so which look steers a period does not
        # depend on which of the two processes ran first, and a lock-step run stays a
        # function of its seeds
        drawn = max(max(allocations, default=-1), int(df["period"].max()))
        if self.looks is not None and drawn >= lead.periods:
            await self.looks.put_look(lead.look(info.id, as_of))
        return told

    def _adaptive_guardrails(
        self,
        info: ExperimentInfo,
        names: Sequence[str],
        control: int,
        estimates: Mapping[tuple[str, str], AdaptiveEstimate],
    ) -> dict[str, list[tuple[GuardrailReading, EstimateResult | None]]]:
        """Each guardrail of an adaptive ladder on each non-control arm: the relative
        anytime-valid set of the arm's AIPW contrast on the guardrail's metric (Fieller's at
        the simultaneous sequence's multiplier), or why there is none (``open``)."""
        out: dict[str, list[tuple[GuardrailReading, EstimateResult | None]]] = {}
        for arm in (n for i, n in enumerate(names) if i != control):
            out[arm] = []
            for g in info.params.get("guardrails") or ():
                metric, limit = g["metric"], float(g["max_drop_pct"])
                res = estimates.get((metric, arm))
                if res is None:
                    why = f"no adaptive estimate of {metric}"
                    out[arm].append((GuardrailReading(metric, limit, note=why, arm=arm), None))
                    continue
                rel = published_fields(res, res.sequence, self.alpha)
                out[arm].append((_guardrail_reading(metric, limit, rel, arm), res))
        return out

    def _adaptive_wait(self, info: ExperimentInfo, why: str) -> None:
        """Why an adaptive ladder has no estimate at this look, said once until it changes."""
        if self._adaptive_not_yet.get(info.id) != why:
            self._adaptive_not_yet[info.id] = why
            log.info("experiment %s: adaptive ladder not estimated yet: %s", info.id, why)

    def _tell_arms(self, info: ExperimentInfo) -> None:
        """What an experiment of more than two arms gets (issue #41), said once per
        experiment, not every cycle."""
        if info.id not in self._arms_told:
            self._arms_told.add(info.id)
            plans = [_plan_of(p) for p in self.estimators_for(info)] or list(DEFAULT_PLANS)
            first = next((p.label for p in plans if p.name in PAIR_METHODS), None)
            verdict = (
                f"the verdict names an arm (from {first})"
                if first is not None
                else "no verdict: none of the design's estimators "
                f"({', '.join(p.label for p in plans)}) is fitted per arm yet"
            )
            log.info(
                "experiment %s: %d arms: each arm is estimated against the control with "
                "simultaneous intervals and anytime-valid sequences at alpha / (k - 1); %s; each "
                "guardrail is checked on each arm against the control at the same split; no "
                "segment or spillover estimate is published for it yet (issue #41)",
                info.id,
                info.arms,
                verdict,
            )

    async def _arm_estimates(
        self, info: ExperimentInfo, df: pd.DataFrame
    ) -> list[EstimateResult | NotIdentified]:
        """Each planned estimator of each metric, for every non-control arm against the
        control, on the pair's cells (:func:`analysis.arms.pair_frame`: a third arm's cells
        blacked out, a product the design put in a third arm left out), with the k - 1
        comparisons' simultaneous intervals (:func:`analysis.arms.compare_pairs`, as ``pricelab
        analyze --arm`` gives them). An estimator that does not work on a pair (it needs the
        design probability per arm) is published as not identified, with the reason."""
        try:
            arms = read_arms(df, "arm", _control_arm(info, df), "product")
            frames = {name: pair_frame(df, arms, name, "blackout")[0] for name in arms.others}
            pairs = {name: metric_panels(_pair_cells(f, arms)) for name, f in frames.items()}
        except (AnalysisError, ValueError, KeyError) as exc:
            # said once, not at every look (a time-bound ladder has only its control arm
            # for its first half)
            if self._arms_not_yet.get(info.id) != str(exc):
                self._arms_not_yet[info.id] = str(exc)
                log.warning("experiment %s: arms not estimable yet: %s", info.id, exc)
            return []
        self._arms_not_yet.pop(info.id, None)
        units = pairs[arms.others[0]]["units"]
        out: list[EstimateResult | NotIdentified] = []
        for metric in metrics_of(df.columns):
            for item in self.estimators_for(info):
                plan = _plan_of(item)
                if plan.name not in PAIR_METHODS:
                    why = not_on_pairs(plan.name)
                    n_u, n_t = units.n_units, units.n_periods
                    for name in arms.others:
                        out.append(NotIdentified(plan.label, why, n_u, n_t, metric, arm=name))
                    continue

                def fit(name: str, plan: EstimatorPlan = plan, metric: str = metric) -> object:
                    return fit_metric(plan, pairs[name], metric, self.seed)

                def corr(plan: EstimatorPlan = plan, metric: str = metric) -> np.ndarray | None:
                    joint = plan.name in JOINT_METHODS and plan.cluster in (None, "unit")
                    if not joint or metric not in df.columns:
                        return None  # the price paid is a linearisation: Bonferroni
                    return dm_correlation(df, arms, metric, "blackout", "probability", frames)

                compared = self._timed(
                    info,
                    _series(plan.label, metric),
                    partial(compare_pairs, arms, fit, self.alpha, corr),
                )
                if compared is None:
                    continue
                for name, result, sim in zip(
                    arms.others,
                    compared.results,
                    compared.simultaneous.intervals,
                    strict=True,
                ):
                    if not math.isfinite(result.effect):
                        continue
                    sim_method = compared.simultaneous.method
                    best = {b.arm: b for b in compared.best or ()}
                    mcb, best_set = None, None
                    if name in best and metric in DECISION_METRICS:  # higher is better
                        mcb, best_set = (best[name].mcb_low, best[name].mcb_high), compared.best_set
                    out.append(
                        replace(
                            result,
                            arm=name,
                            sim_ci=sim,
                            sim_method=sim_method,
                            mcb=mcb,
                            best_set=best_set,
                        )  # fmt: skip
                    )
        return out

    def _demand(self, info: ExperimentInfo, df: pd.DataFrame) -> DemandResult | None:
        """The demand and profit curves of an experiment whose arms are a price ladder (every
        arm has a price ratio, three prices or more; analysis.demand), as ``pricelab analyze
        --method demand --profit profit`` fits them: the usable, randomised cells per
        product and arm, the cost of goods from profit (revenue - profit). None for other experiments, or when the
        panel cannot give the curve yet (logged)."""
        ratios = {str(a["name"]): a.get("price_ratio") for a in info.params.get("arms") or ()}
        if any(r is None for r in ratios.values()) or len(set(ratios.values())) < 3:
            return None
        listed = {name: float(r) for name, r in ratios.items() if r is not None}

        def fit() -> DemandResult:
            return fit_ladder_cells(df, listed, _control_arm(info, df), self.alpha)

        return self._timed(info, "demand", fit)

    def _chunked(self, info: ExperimentInfo) -> bool:
        """Whether the experiment is read in chunks: more products than ``chunking.above``,
        and a source that reads chunks."""
        return (
            info.n_products is not None
            and info.n_products > self.chunking.above
            and isinstance(self.source, ChunkedPanelSource)
        )

    def _still_merging(self, info: ExperimentInfo, told: int = 0) -> None:
        """Raises :class:`_Superseded` when the experiment's looks are spread over a group and
        this worker no longer merges it: checked before each message, so a worker that lost
        the merge during a long look stops publishing it (its successor publishes the next
        round's look: in this round it has usually looked already, as a worker that does not
        merge). Any rebalance counts, also one that gives the same shards back. A message
        already handed to the producer when the group moved is not called back: the
        successor's look of the same experiment follows it on the topic."""
        if self._sharded is not None and not self._sharded.merges(info.id):
            raise _Superseded(info.id, told)

    async def _population(
        self, info: ExperimentInfo, as_of: datetime, tick: int | None = None
    ) -> tuple[Population, pd.DataFrame] | None:
        """An experiment read in chunks (analysis.chunked): the chunked estimators' results
        on every product, and the long rows of the sample and the segments' products."""
        plans = [_plan_of(p) for p in self.estimators_for(info)] if info.arms == 2 else []
        segments: Mapping[str, Sequence[str]] = info.params.get("segments") or {}
        members = sorted({p for ps in segments.values() for p in ps})
        looks = self._looks if self._sharded is None else self._sharded
        look = await looks.look(
            self.source, info.id, as_of, plans, members, self.min_periods, tick=tick
        )
        if look is not None:
            for (label, metric), seconds in look[0].seconds.items():
                ok = not isinstance(look[0].results.get((label, metric)), Exception)
                self.observer.estimated(info.id, _series(label, metric), seconds, ok)
        return look

    def _chunked_result(
        self, info: ExperimentInfo, population: Population, plan: EstimatorPlan, metric: str
    ) -> EstimateResult | None:
        """A chunked estimate, as :meth:`_timed` gives a fitted one: None when it is not
        estimable (said nowhere) or not applicable (logged)."""
        got = population.results[(plan.label, metric)]
        if isinstance(got, NotEstimable):
            return None
        if isinstance(got, Exception):
            log.info(
                "experiment %s: %s not applicable: %s", info.id, _series(plan.label, metric), got
            )
            return None
        return got

    def _sample(
        self, info: ExperimentInfo, df: pd.DataFrame, population: Population | None
    ) -> pd.DataFrame | None:
        """The cells the estimators that are not sums over products are fitted on: the whole
        experiment's, or, read in chunks, its sample's (``df`` also holds the segments'
        products); None when there are too few."""
        if population is None:
            return df
        if df.empty:
            return None
        sampled = sample_positions(population.n_products, self.chunking.sample, info.id, self.seed)
        if len(sampled) < population.n_products:
            codes = df["product"].cat.codes.to_numpy()
            df = df[np.isin(codes, sampled)]
        if df["product"].nunique() < 2 or df["period"].nunique() < self.min_periods:
            return None
        return df

    def _timed(self, info: ExperimentInfo, label: str, fit: Callable[[], T]) -> T | None:
        """``fit()``, timed for the observer; None when it is not estimable (said nowhere) or
        not applicable (logged, and counted as a failed fit)."""
        t0 = time.perf_counter()
        try:
            done = fit()
        except NotEstimable:
            return None
        except (AnalysisError, ValueError) as exc:
            self.observer.estimated(info.id, label, time.perf_counter() - t0, False)
            log.info("experiment %s: %s not applicable: %s", info.id, label, exc)
            return None
        self.observer.estimated(info.id, label, time.perf_counter() - t0, True)
        return done

    def _warn_margins(self, info: ExperimentInfo, df: pd.DataFrame) -> None:
        """One sentence, once per experiment, when products sell below their unit cost: allowed
        (a negative margin is real), but an analyst reading the profit should know."""
        if info.id in self._margins_told or "profit" not in df.columns:
            return
        below = negative_margins(df, info.params.get("unit_costs") or {})
        if below:
            self._margins_told.add(info.id)
            log.warning(
                "experiment %s: %d product(s) sold below their unit cost (e.g. %s): their "
                "margin is negative, and profit counts it so",
                info.id,
                len(below),
                ", ".join(below[:3]),
            )

    async def _estimates(
        self,
        info: ExperimentInfo,
        metric: str,
        panels: dict[str, Panel] | None,
        population: Population | None = None,
    ) -> list[tuple[EstimateResult, tuple[float, float] | None]]:
        """Every planned estimator of one metric, each with its confidence sequence: from the
        chunks' sums where the experiment was read in chunks and the estimator is a sum over
        products, else fitted on ``panels`` (the experiment's, or its sample's)."""
        out = []
        for item in self.estimators_for(info):
            plan = EstimatorPlan(item) if isinstance(item, str) else item
            label = _series(plan.label, metric)
            if population is not None and (plan.label, metric) in population.results:
                result = self._chunked_result(info, population, plan, metric)
            elif panels is None:
                continue
            else:
                fit = partial(fit_metric, plan, panels, metric, self.seed)
                result = self._timed(info, label, fit)
            if result is None or not math.isfinite(result.effect):
                continue
            out.append((result, await self._confidence_sequence(info, result, label)))
        return out

    async def _segments(
        self, info: ExperimentInfo, df: pd.DataFrame, metric: str = "units"
    ) -> list[tuple[EstimateResult, tuple[float, float] | None]]:
        """The design's primary estimate of ``metric`` on each product segment the spec names.

        Each segment is its own panel (its products' cells), fitted like the whole experiment;
        the p-values are Benjamini-Hochberg adjusted across the segments estimated at this look
        (for one metric), and each segment keeps its own anytime-valid sequence (tuned at its
        first look). A segment that cannot be estimated yet is logged and left out of the
        adjustment.
        """
        segments: dict[str, Sequence[str]] = info.params.get("segments") or {}
        if not segments:
            return []
        first = next(iter(self.estimators_for(info)), None)
        if first is None:
            return []
        plan = EstimatorPlan(first) if isinstance(first, str) else first
        if metric == "price":  # the design's first estimator that measures the price paid
            plans = [
                EstimatorPlan(p) if isinstance(p, str) else p for p in self.estimators_for(info)
            ]
            measuring = [p for p in plans if p.name in PRICE_ESTIMATORS]
            if not measuring:
                return []
            plan = measuring[0]
        fitted: list[tuple[str, EstimateResult]] = []
        for name, members in segments.items():
            t0 = time.perf_counter()
            label = _series(f"{plan.label}@{name}", metric)
            try:
                panels = metric_panels(df[df["product"].isin(list(members))])
                result = fit_metric(plan, panels, metric, self.seed)
            except (AnalysisError, ValueError) as exc:
                self.observer.estimated(info.id, label, time.perf_counter() - t0, False)
                log.info("experiment %s: segment %s not estimable: %s", info.id, name, exc)
                continue
            self.observer.estimated(info.id, label, time.perf_counter() - t0, True)
            if math.isfinite(result.effect):
                fitted.append((name, result))
        adjusted = bh_adjust([r.pvalue() for _, r in fitted])
        out = []
        for (name, result), p_bh in zip(fitted, adjusted, strict=True):
            tagged = replace(result, segment=name, pvalue_bh=p_bh)
            key = _series(f"{plan.label}@{name}", metric)
            out.append((tagged, await self._confidence_sequence(info, tagged, key)))
        return out

    def _elasticity(
        self, info: ExperimentInfo, panels: dict[str, Panel]
    ) -> ElasticityResult | None:
        """The within-product elasticity (analysis.elasticity), when the panel has revenue
        and the design puts products in both arms; "not identified" is published with its
        reason (ElasticityResult.reason)."""
        if "revenue" not in panels:
            return None
        t0 = time.perf_counter()
        try:
            # at the published level (the estimates topic's intervals are 95%)
            result = within_product_elasticity(panels["units"], panels["revenue"].Y, 0.05)
        except (AnalysisError, ValueError) as exc:
            self.observer.estimated(info.id, "elasticity", time.perf_counter() - t0, False)
            log.info("experiment %s: no elasticity: %s", info.id, exc)
            return None
        self.observer.estimated(info.id, "elasticity", time.perf_counter() - t0, True)
        return result

    def spillover_estimates(
        self, info: ExperimentInfo, panel: Panel
    ) -> Sequence[EstimateResult | NotIdentified]:
        """Spillover-adjusted estimates for experiments that carry a substitutes graph, by
        :func:`analysis.spillover.design_spillover` (the function ``pricelab analyze --method
        spillover`` runs offline): the design says how (``info.spillover``), and its sampler
        (``info.sampler``) redraws the live design for the exposure probabilities and the
        design-bootstrap variance. For designs that give spillover no valid variance, a
        :class:`~analysis.results.NotIdentified` with the design's reason."""
        edges = info.params.get("substitutes") or ()
        if not edges:
            return []
        from analysis.spillover import SpilloverError, design_spillover

        if info.sampler is None:
            log.info("experiment %s: no design sampler; spillover estimates skipped", info.id)
            return []
        if info.spillover is None:
            # said on the topic, so that an analyst who gave a substitutes graph does not wonder
            return [
                NotIdentified(
                    "spillover_ipw",
                    f"spillover is not identified for the {info.design} design: "
                    f"{info.spillover_note or 'it gives no valid spillover variance'}. The other "
                    "estimates compare the arms as they ran: where treated products take sales "
                    "from control substitutes, the comparison includes it",
                    panel.n_units,
                    panel.n_periods,
                )
            ]
        graph = nx.Graph()
        graph.add_nodes_from(str(u) for u in panel.units)
        graph.add_weighted_edges_from((a, b, float(w)) for a, b, w in edges)
        t0 = time.perf_counter()
        try:
            results = design_spillover(
                panel,
                graph,
                info.spillover,
                info.sampler,
                design=info.design,
                metric="units",
                seed=self.seed,
            )
        except (SpilloverError, AnalysisError, ValueError) as exc:
            self.observer.estimated(info.id, "spillover_ipw", time.perf_counter() - t0, False)
            log.info("experiment %s: spillover estimates not available: %s", info.id, exc)
            return []
        self.observer.estimated(info.id, "spillover_ipw", time.perf_counter() - t0, True)
        return results

    async def _guardrail_readings(
        self,
        info: ExperimentInfo,
        df: pd.DataFrame | None,
        population: Population | None = None,
    ) -> list[tuple[GuardrailReading, EstimateResult | None]]:
        """Each guardrail of the spec at this look: the anytime-valid set of the relative
        effect on its metric, Fieller's at the confidence sequence's multiplier
        (analysis.ratio): it carries the control mean's own uncertainty and its covariance with
        the treated mean, not a point baseline's division. A guardrail that cannot be read yet
        has no set and a note (its status is then ``open``)."""
        out: list[tuple[GuardrailReading, EstimateResult | None]] = []
        for g in info.params.get("guardrails") or ():
            metric, limit = g["metric"], float(g["max_drop_pct"])
            plan = _guardrail_plan(info)
            try:
                if population is not None and (plan.label, metric) in population.results:
                    got = population.results[(plan.label, metric)]
                    if isinstance(got, Exception):
                        raise got
                    res = got
                elif df is None:
                    raise PanelError("no sampled cells to check it on")
                else:
                    res = fit_metric(plan, metric_panels(df), metric, self.seed)
            except (AnalysisError, ValueError, KeyError) as exc:
                # a look's result re-raised: its traceback, this frame (df, population), off it
                # again, as the chunked look keeps it (core.errors.kept)
                kept(exc)
                log.info("experiment %s: guardrail on %s not checked: %s", info.id, metric, exc)
                out.append((GuardrailReading(metric, limit, note=str(exc)), None))
                continue
            out.append(await self._guardrail_reading(info, metric, limit, res))
        return out

    async def _guardrail_reading(
        self,
        info: ExperimentInfo,
        metric: str,
        limit: float,
        res: EstimateResult,
        arm: str | None = None,
        split: int = 1,
    ) -> tuple[GuardrailReading, EstimateResult | None]:
        """One guardrail read from its fitted comparison ``res`` (of ``arm`` against the
        control, k arms, its sequence at alpha / ``split``): the relative anytime-valid set
        (Fieller's, at the sequence's multiplier), or why there is none."""
        key = f"guardrail:{metric}" if arm is None else f"guardrail:{metric}:{arm}"
        where = "" if arm is None else f" (arm {arm})"
        cs = await self._confidence_sequence(info, res, key, split)
        if cs is None:
            log.info(
                "experiment %s: guardrail on %s%s not checked: no finite SE",
                info.id, metric, where,
            )  # fmt: skip
            return GuardrailReading(metric, limit, note="no finite SE yet", arm=arm), res
        rel = published_fields(res, cs)
        if rel.get("relative_cs_high") is None:
            # no bounded relative set (a loss in control, a noisy mean)
            log.info(
                "experiment %s: guardrail on %s%s not checked: %s",
                info.id, metric, where, rel.get("relative_note"),
            )  # fmt: skip
        return _guardrail_reading(metric, limit, rel, arm), res

    async def _arm_guardrail_readings(
        self, info: ExperimentInfo, df: pd.DataFrame
    ) -> dict[str, list[tuple[GuardrailReading, EstimateResult | None]]]:
        """Each guardrail of a k-arm spec, for each non-control arm against the control on the
        pair's cells (as the arms' estimates, :func:`analysis.arms.pair_frame`), by the
        design's comparison of arm means (:func:`_guardrail_plan`), each set at alpha / (k - 1):
        the arms' sets of one guardrail hold together, as the verdict's sequences do
        (Bonferroni). A guardrail that cannot be read yet has no set and a note (``open``)."""
        guards = info.params.get("guardrails") or ()
        if not guards:
            return {}
        split = max(info.arms - 1, 1)
        plan = _guardrail_plan(info)
        names = [str(a["name"]) for a in info.params.get("arms") or () if not a.get("control")]

        def unread(arm: str, why: str) -> list[tuple[GuardrailReading, EstimateResult | None]]:
            return [
                (GuardrailReading(g["metric"], float(g["max_drop_pct"]), note=why, arm=arm), None)
                for g in guards
            ]

        if plan.name not in PAIR_METHODS:  # the optimal switchback's Hajek windows
            return {arm: unread(arm, not_on_pairs(plan.name)) for arm in names}
        try:
            arms = read_arms(df, "arm", _control_arm(info, df), "product")
            pairs = {
                name: metric_panels(_pair_cells(pair_frame(df, arms, name, "blackout")[0], arms))
                for name in arms.others
            }
        except (AnalysisError, ValueError, KeyError) as exc:
            log.info("experiment %s: guardrails not checked yet: %s", info.id, exc)
            return {arm: unread(arm, str(exc)) for arm in names}
        out: dict[str, list[tuple[GuardrailReading, EstimateResult | None]]] = {}
        for arm in arms.others:
            out[arm] = []
            for g in guards:
                metric, limit = g["metric"], float(g["max_drop_pct"])
                try:
                    res = fit_metric(plan, pairs[arm], metric, self.seed)
                except (AnalysisError, ValueError, KeyError) as exc:
                    log.info(
                        "experiment %s: guardrail on %s (arm %s) not checked: %s",
                        info.id, metric, arm, exc,
                    )  # fmt: skip
                    out[arm].append((GuardrailReading(metric, limit, note=str(exc), arm=arm), None))
                    continue
                out[arm].append(await self._guardrail_reading(info, metric, limit, res, arm, split))
        for arm in names:
            out.setdefault(arm, unread(arm, "no cells of the arm yet"))
        return out

    async def _check_guardrails(
        self,
        info: ExperimentInfo,
        readings: list[tuple[GuardrailReading, EstimateResult | None]],
    ) -> None:
        """Trip the first guardrail whose anytime-valid relative set lies wholly below
        -max_drop_pct (:attr:`GuardrailReading.status` ``breached``): the experiment stops."""
        assert self.guardrails is not None
        for reading, res in readings:
            if reading.status != "breached" or res is None:
                continue
            metric, limit = reading.metric, reading.max_drop_pct
            assert reading.relative_effect is not None and reading.relative_cs_low is not None
            upper = reading.relative_cs_high
            assert upper is not None
            detail = {
                **({} if reading.arm is None else {"arm": reading.arm}),
                "metric": metric,
                "max_drop_pct": limit,
                "effect": res.effect,
                "control_mean": res.relative(self.alpha).get("control_mean"),
                "relative_effect_pct": 100.0 * reading.relative_effect,
                "cs_relative_pct": [100.0 * reading.relative_cs_low, 100.0 * upper],
                "n_periods": res.n_periods,
            }
            self._still_merging(info)
            where = "" if reading.arm is None else f" (arm {reading.arm})"
            log.warning(
                "experiment %s: guardrail on %s%s tripped: %s", info.id, metric, where, detail
            )
            await self.guardrails.trip(info.id, metric, detail)
            self.observer.guardrail_tripped(info.id, metric)
            return


def _guardrail_reading(
    metric: str, limit: float, rel: Mapping[str, Any], arm: str | None
) -> GuardrailReading:
    """A guardrail's reading from an estimate's published relative fields (its relative set,
    or the note of why there is none)."""
    return GuardrailReading(
        metric,
        limit,
        relative_effect=rel.get("relative_effect"),
        relative_cs_low=rel.get("relative_cs_low"),
        relative_cs_high=rel.get("relative_cs_high"),
        note=rel.get("relative_note"),
        arm=arm,
    )


def _spillover_too_large(
    info: ExperimentInfo, population: Population, above: int
) -> list[NotIdentified]:
    """Spillover of an experiment read in chunks: not estimated (it needs the whole
    substitutes graph and every product's exposure in memory), said on the topic when the
    spec gives a substitutes graph."""
    if not info.params.get("substitutes"):
        return []
    return [
        NotIdentified(
            "spillover_ipw",
            f"spillover is not estimated for an experiment of {population.n_products} "
            f"products, above the analysis worker's chunked_above ({above}): it needs the whole "
            "substitutes graph and every product's exposure in one process (issue #42)",
            population.n_products,
            population.n_periods,
        )
    ]


def metric_panels(df: pd.DataFrame) -> dict[str, Panel]:
    """The per-cell metrics of a cell table as panels of the same cells: units, and revenue
    and profit where the table has them (``analysis.metrics.metrics_of``)."""
    units = panel_from_cells(df)
    out = {"units": units}
    for metric in metrics_of(df.columns):
        if metric not in ("units", "price"):
            out[metric] = units.outcome_of(df, metric, unit="product", time="period")
    return out


def fit_metric(
    plan: EstimatorPlan, panels: dict[str, Panel], metric: str, seed: int = 0
) -> EstimateResult:
    """One planned estimator on one metric: the price paid by its linearisation
    (``analysis.metrics.fit_price``), every other metric by the estimator on its panel."""
    if metric == "price":
        return fit_price(plan, panels["units"], panels["revenue"], seed)
    return fit_plan(plan, panels[metric], seed, metric=metric)


def _radius_at(seq: ConfidenceSequence, df: float | None, se: np.ndarray) -> np.ndarray:
    """A sequence's radius at SE ``se``, at its estimate's own reference (t with ``df``)."""
    return np.asarray(seq.radius(se, df))


def _adaptive_radius(fit: AdaptiveFit, se_now: float, se: np.ndarray) -> np.ndarray:
    """An adaptive ladder's sequence radius at a projected SE ``se`` (for the days still
    needed): the SE shrinks as one over the root of the increments, so ``se`` is reached
    after ``n (se_now / se)^2`` of them, where the multiplier is that look's."""
    n = len(fit.estimator.periods_)
    k = len(fit.names)
    se = np.asarray(se, dtype=float)
    ahead = np.maximum(n, np.ceil(n * (se_now / se) ** 2)).astype(int)
    horizon = int(fit.estimator.horizon)
    each = fit.alpha / max(k - 1, 1)
    mult = np.array([cs_multiplier(int(m), horizon, each) for m in ahead.ravel()])
    return np.asarray(mult.reshape(se.shape) * se)


def _arm_named(names: Sequence[str], code: float | None) -> str | None:
    """The arm the tuning store keeps by its index in the spec's arms (None: none kept)."""
    if code is None or not math.isfinite(code) or not 0 <= int(code) < len(names):
        return None
    return names[int(code)]


def _control_arm(info: ExperimentInfo, df: pd.DataFrame) -> str:
    """The control arm's name: the spec's arm marked ``control`` (else the arm of the cells
    that are not treated)."""
    for arm in info.params.get("arms") or ():
        if arm.get("control"):
            return str(arm["name"])
    names = set(df.loc[df["treated"] == 0, "arm"].dropna().astype(str))
    if len(names) != 1:
        raise AnalysisError(f"no single control arm among the cells' arms ({sorted(names)})")
    return names.pop()


def _pair_cells(pair: pd.DataFrame, arms: Arms) -> pd.DataFrame:
    """The cell table of a pair (:func:`analysis.arms.pair_frame`'s frame): ``treated`` is 1
    on the arm's cells, and a third arm's cells are blacked out."""
    return pair.assign(treated=pair[TREATED], blackout=pair[BLACKOUT].astype(bool)).drop(
        columns=[TREATED, BLACKOUT, arms.column]
    )


#: an estimate's series (confidence-sequence key, freshness label): core.series
_series = series


def _guardrail_plan(info: ExperimentInfo) -> EstimatorPlan:
    """The design's own comparison of arm means: the Hajek windows where the design publishes
    them (the optimal switchback: under carryover a plain difference in means counts the other
    arm's), else the difference in means as the design runs it (its clustering), else by
    product."""
    plans = _plans(info)
    return next(
        (p for p in plans if p.name == "hajek"),
        next((p for p in plans if p.name == "dm"), EstimatorPlan("dm")),
    )
