"""The analysis worker's ports: what the controller side hands it, and where its estimates go.

The analysis worker (``analysis/worker.py``) imports no Kafka or Redis client and no controller
module. It receives:

- a :class:`PanelSource`: the experiments to analyse, as :class:`ExperimentInfo`, and each
  one's long cell table (implemented over Redis in ``controller/panel_source.py``);
- an :class:`EstimateSink`, a :class:`VerdictSink` and a :class:`GuardrailSink` (Kafka, in
  ``streams/worker/sinks.py``);
- a :class:`SequenceTuningStore`, where each confidence sequence's mixture is fixed at its
  first look (Redis, in ``controller/panel_source.py``), so that a restarted or second worker
  continues the same sequence.

What to estimate is the design's decision, not the worker's: ``ExperimentInfo.estimators``
carries the design's default estimators (:class:`EstimatorPlan`, with the level they cluster
at), and ``ExperimentInfo.sampler`` redraws assignments from the live design itself, for the
estimators that need the design's distribution (spillover exposure probabilities).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

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


class GuardrailSink(Protocol):
    async def trip(self, experiment: str, metric: str, detail: dict[str, Any]) -> None: ...


class SequenceTuningStore(Protocol):
    async def fix(self, experiment: str, key: str, target_se: float) -> float:
        """The target SE of ``experiment``'s sequence ``key``: the one stored at its first look,
        or ``target_se``, stored now, when there is none (the first writer wins)."""
        ...

    async def recall(self, experiment: str, key: str) -> float | None:
        """The value stored under ``key`` (by :meth:`fix`), or None: read, never written.
        The worker keeps an experiment's first decisive verdict this way."""
        ...


class ClockLike(Protocol):
    def now(self) -> datetime: ...

    async def sync(self) -> None: ...


def metric_name(value: object) -> str:
    """An estimate message's metric as read: v1 workers published units as ``"outcome"``
    (older ones none at all)."""
    return "units" if value in (None, "outcome") else str(value)
