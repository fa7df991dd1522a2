"""The analysis worker's ports: what the controller side hands it, and where its estimates go.

The analysis worker (``analysis/worker.py``) imports no Kafka or Redis client and no controller
module. It receives:

- a :class:`PanelSource`: the experiments to analyse, as :class:`ExperimentInfo`, and each
  one's long cell table (implemented over Redis in ``controller/panel_source.py``);
- an :class:`EstimateSink`, a :class:`VerdictSink` and a :class:`GuardrailSink` (Kafka, in
  ``streams/worker/sinks.py``);
- for adaptive ladders, an :class:`AllocationSource` (each period's recorded probabilities),
  an :class:`AdaptiveLookSink` (the latest look, which the controller's flip reads) and an
  :class:`AdaptiveSink` (the look's message on the estimates topic, Kafka);
- a :class:`SequenceTuningStore`, where each confidence sequence's mixture is fixed at its
  first look (Redis, in ``controller/panel_source.py``), so that a restarted or second worker
  continues the same sequence.

What to estimate is the design's decision, not the worker's: ``ExperimentInfo.estimators``
carries the design's default estimators (:class:`EstimatorPlan`, with the level they cluster
at), and ``ExperimentInfo.sampler`` redraws assignments from the live design itself, for the
estimators that need the design's distribution (spillover exposure probabilities).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # typing only: the ports are data and protocols, no numerical code
    import numpy as np
    import pandas as pd


@dataclass(frozen=True)
class EstimatorPlan:
    """One estimator a design publishes: the registry ``name``, the keyword ``params`` it is
    built with (e.g. ``{"cluster": "class"}``), and ``label``, the name it is published under
    (the registry name unless two variants of one estimator run on the same design)."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    label: str = ""

    def __post_init__(self) -> None:
        if not self.label:
            object.__setattr__(self, "label", self.name)

    @property
    def cluster(self) -> str | None:
        """The level its standard error clusters at, when it clusters."""
        value = self.params.get("cluster")
        return None if value is None else str(value)


#: Fresh draws from an experiment's design: ``sampler(seed, units, periods)`` is the assignment
#: the design would have made with ``seed``, for ``units`` (rows) in ``periods`` (columns), as a
#: boolean matrix.
AssignmentSampler = Callable[[int, Sequence[str], Sequence[int]], "np.ndarray"]


@dataclass(frozen=True)
class ExperimentInfo:
    """What the analysis worker knows of one experiment beyond its cells.

    ``params`` is the spec as JSON; ``estimators`` the design's default estimators, primary
    first; ``planned_periods`` the planned length; ``periods_share_draws`` says whether one
    draw of the design fixes arms in several periods (crossover, time-bound, ...);
    ``spillover`` how the design lets spillover be estimated (``"per-period"``, ``"block"``
    or None: not at all, and ``spillover_note`` says why); ``sampler`` redraws the design
    (None when the source cannot); ``arms`` is how many arms the experiment has (with more
    than two, the worker estimates each arm against the control and publishes no verdict or
    guardrail check yet: issue #41).
    """

    id: str
    design: str
    status: str  # one of core.status.STORED
    params: dict[str, Any] = field(default_factory=dict)
    estimators: tuple[EstimatorPlan, ...] = ()
    planned_periods: int = 0
    periods_share_draws: bool = True
    spillover: str | None = None
    spillover_note: str | None = None  # why not, where ``spillover`` is None
    sampler: AssignmentSampler | None = field(default=None, compare=False, repr=False)
    arms: int = 2
    #: how many products the experiment has (None: not known; the worker reads its cells
    #: whole). Above the worker's ``chunked_above`` it reads them in chunks (issue #42)
    n_products: int | None = None
    #: stopped or ended, and every period it ran compacted (closed to sales): its cells never
    #: change again, and its next look is its final look (``core.final_look``)
    sealed: bool = False


class PublishedEstimate(Protocol):
    """What a sink needs of an estimate (``analysis.results.EstimateResult`` and
    ``analysis.elasticity.ElasticityResult`` provide it): the message fields, and the relative
    form at the confidence sequence's multiplier of the SE."""

    @property
    def effect(self) -> float: ...

    @property
    def se(self) -> float: ...

    def to_dict(self, alpha: float = 0.05) -> dict[str, Any]: ...

    def relative(self, alpha: float = 0.05, q_sequence: float | None = None) -> dict[str, Any]:
        """The estimate relative to its control mean (analysis.ratio.relative_fields)."""
        ...


class PanelSource(Protocol):
    async def experiments(self) -> list[ExperimentInfo]: ...

    async def panel(self, exp_id: str, as_of: datetime) -> pd.DataFrame:
        """The cells of the periods complete as of ``as_of`` (the cycle's one clock reading)."""
        ...


@dataclass(frozen=True)
class GridLayout:
    """What one read of an experiment's cells in chunks covers (:class:`ChunkedPanelSource`):
    its ``products`` (sorted: a chunk is a range of them), the ``done`` periods complete as
    of the read, the first ``final`` of which are compacted (their cells never change again),
    and ``hits``, per done period, whether an exclusion window (pause, freeze) blacks it out
    (a new window can black out a compacted period: a reader that kept sums of it starts
    afresh)."""

    experiment: str
    products: Sequence[str]
    done: int
    final: int
    hits: tuple[bool, ...]
    #: the source's own (opaque) state of the read
    token: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class CellGrid:
    """Products ``[start, stop)`` of an experiment over ``periods`` as product x period
    matrices: the per-cell metrics (``values``: units, revenue, and profit where the spec
    gives every product a cost), the arm in force (``treated``: any arm but control), the
    design probability, ``blackout`` as the long cell table has it, ``recorded`` (the cell
    has an assignment record: the long table has a row for it), each product's class (None
    when the spec has none), and ``rows``: the long cell table's rows of the products asked
    for (``keep``), in :meth:`PanelSource.panel`'s columns."""

    start: int
    stop: int
    products: np.ndarray
    periods: np.ndarray
    values: Mapping[str, np.ndarray]
    treated: np.ndarray
    probability: np.ndarray
    blackout: np.ndarray
    recorded: np.ndarray
    classes: np.ndarray | None
    rows: pd.DataFrame | None = None


@runtime_checkable
class ChunkedPanelSource(PanelSource, Protocol):
    """A panel source that reads an experiment's cells in chunks of products, for the
    experiments too large to hold whole (issue #42)."""

    async def layout(self, exp_id: str, as_of: datetime) -> GridLayout | None:
        """What a read as of ``as_of`` covers (it compacts what has closed first, as
        :meth:`PanelSource.panel` does); None when the experiment has no cells to read."""
        ...

    def grids(
        self,
        layout: GridLayout,
        size: int,
        first: int = 0,
        keep: np.ndarray | None = None,
        only: Collection[int] | None = None,
    ) -> AsyncIterator[CellGrid]:
        """The experiment's products in chunks of ``size``, in order, over periods
        ``first .. layout.done - 1``; ``keep``: the sorted positions of the products whose
        long rows each chunk carries (``CellGrid.rows``); ``only``: the chunks to read, by
        index (chunk ``i`` is products ``[i * size, (i + 1) * size)``; None: every one)."""
        ...

    async def unchanged(self, layout: GridLayout) -> bool:
        """Whether the cells read under ``layout`` are still what it describes (no open
        period was compacted meanwhile by another worker: its sums may have been read gone)."""
        ...


class EstimateSink(Protocol):
    async def publish(
        self,
        experiment: str,
        result: PublishedEstimate,
        as_of: datetime,
        cs: tuple[float, float] | None,
    ) -> None: ...


class VerdictSink(Protocol):
    async def publish_verdict(
        self, experiment: str, verdict: Mapping[str, Any], as_of: datetime
    ) -> None:
        """The verdict of one look (``analysis.verdict.Verdict.to_dict()``), on the estimates
        topic as its own message (``kind: verdict``)."""
        ...


class DemandSink(Protocol):
    async def publish_demand(
        self, experiment: str, demand: Mapping[str, Any], as_of: datetime
    ) -> None:
        """A price ladder's demand and profit curves and recommended price
        (``analysis.demand.DemandResult.to_dict()``), on the estimates topic as its own
        message (``kind: demand``)."""
        ...


class AdaptiveSink(Protocol):
    async def publish_adaptive(
        self, experiment: str, look: Mapping[str, Any], as_of: datetime
    ) -> None:
        """An adaptive ladder's look (``analysis.adaptive_live.AdaptiveFit.to_dict()``: each
        arm's mean and sequence, the best set, the recorded probabilities per period, and why
        the fixed-allocation methods are not published), on the estimates topic as its own
        message (``kind: adaptive``)."""
        ...


class GuardrailSink(Protocol):
    async def trip(self, experiment: str, metric: str, detail: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class AdaptiveLook:
    """What an adaptive ladder's latest look tells the controller's rule (issue #57): the
    ``periods`` it used (0-based periods ``0 .. periods - 1``, all complete when it was read),
    the decision ``metric``, each arm's estimated mean of it (``means``, in the spec's
    ``arm_list()`` order) and their covariance (``cov``, k x k), and ``as_of`` (the look's
    clock reading). The controller draws period ``t`` from the newest look with
    ``periods <= t``; a look never sees the period it steers."""

    experiment: str
    periods: int
    metric: str
    means: tuple[float, ...]
    cov: tuple[tuple[float, ...], ...]
    as_of: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment,
            "periods": self.periods,
            "metric": self.metric,
            "means": list(self.means),
            "cov": [list(r) for r in self.cov],
            "as_of": self.as_of.isoformat(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AdaptiveLook:
        return cls(
            experiment=str(d["experiment"]),
            periods=int(d["periods"]),
            metric=str(d["metric"]),
            means=tuple(float(x) for x in d["means"]),
            cov=tuple(tuple(float(x) for x in r) for r in d["cov"]),
            as_of=datetime.fromisoformat(str(d["as_of"])),
        )


class AdaptiveLookSink(Protocol):
    """Where the analysis worker leaves an adaptive ladder's latest look for the controller
    (Redis, ``controller/panel_source.py``: the flip of a later period reads it there). A look
    with fewer ``periods`` than the one stored is ignored (an older worker's late write)."""

    async def put_look(self, look: AdaptiveLook) -> None: ...


@runtime_checkable
class AllocationSource(Protocol):
    """An adaptive ladder's recorded probabilities (issue #57): for every period the controller
    has drawn, each arm's probability (spec ``arm_list()`` order) that period's cells were
    drawn with, recorded before any of the period's assignments was published (warmup periods
    included: the arms' allocations). The analysis worker's IPW/AIPW weights come from here,
    never from the spec."""

    async def allocations(self, exp_id: str) -> dict[int, tuple[float, ...]]:
        """Period index (0-based) -> probabilities; periods not drawn yet are absent."""
        ...


class ShardOwnership(Protocol):
    """Which shards of the experiments' chunks this analysis worker computes, when one
    experiment's analysis is spread over several workers (``analysis.sharded``): the
    partitions of a shard topic that the workers' consumer group assigns it
    (``streams/worker/shards.py``). Which chunks a shard holds: ``analysis.sharded.shard_of``."""

    @property
    def partitions(self) -> int: ...

    def owned(self) -> frozenset[int] | None:
        """The shards assigned to this worker now; None while it is not in the group (joining,
        or in a rebalance)."""
        ...

    def generation(self) -> int:
        """A number that changes at every assignment (a rebalance)."""
        ...


class PartialStore(Protocol):
    """Where the workers of one experiment leave each chunk's partial sums of a look for the
    worker that merges them (Redis, with a time to live: ``controller/panel_source.py``)."""

    async def put(self, experiment: str, look: str, chunk: int, blob: bytes) -> None: ...

    async def get(self, experiment: str, look: str, chunks: Sequence[int]) -> list[bytes | None]:
        """Each chunk's blob of the look, None where none is stored (yet, or any more)."""
        ...


class SequenceTuningStore(Protocol):
    async def fix(self, experiment: str, key: str, target_se: float) -> float:
        """The target SE of ``experiment``'s sequence ``key``: the one stored at its first look,
        or ``target_se``, stored now, when there is none (the first writer wins)."""
        ...

    async def recall(self, experiment: str, key: str) -> float | None:
        """The value stored under ``key`` (by :meth:`fix`), or None: read, never written.
        The worker keeps an experiment's first decisive verdict this way."""
        ...


@runtime_checkable
class HoldsExperiments(Protocol):
    """A port that keeps something of experiments between cycles (a panel source's compacted
    periods): which ones, for the worker's gauge of what it holds."""

    def held(self) -> frozenset[str]: ...


class ClockLike(Protocol):
    def now(self) -> datetime: ...

    async def sync(self) -> None: ...


#: what each metric's absolute effect is counted in (the scorecards' and the CLI's captions)
EFFECT_UNITS = {
    "units": "units per product-period",
    "revenue": "revenue per product-period",
    "profit": "profit per product-period",
    "price": "average price paid",
}


def metric_name(value: object) -> str:
    """An estimate message's metric as read: v1 workers published units as ``"outcome"``
    (older ones none at all)."""
    return "units" if value in (None, "outcome") else str(value)
