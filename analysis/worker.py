"""The periodic analysis worker's logic: panel in, running estimates out.

The worker receives a ``PanelSource`` and an ``EstimateSink`` (their Redis and Kafka
implementations live in controller/ and streams/), so this module imports no client.
``run_once()`` is the unit of work; the worker loop only schedules it.

Each design publishes the estimators that are valid for it (``ESTIMATORS_BY_DESIGN``);
every estimate carries its standard error, a 95% interval, and an anytime-valid confidence
sequence (analysts inspect running estimates repeatedly).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import pandas as pd

from analysis.confseq import ConfidenceSequence
from analysis.errors import AnalysisError
from analysis.estimators import registry
from analysis.panel import Panel
from analysis.results import EstimateResult

log = logging.getLogger("pricelab.analysis")

ESTIMATORS_BY_DESIGN: dict[str, tuple[str, ...]] = {
    "random-days": ("dm", "ht"),
    "optimal-switchback": ("ht", "dm"),
    "crossover": ("crossover", "dm"),
    "cluster": ("dm",),
    "time-bound": ("did", "sdid", "sc", "mc"),
    "triggered": ("staggered", "did"),
}


@dataclass(frozen=True)
class ExperimentInfo:
    id: str
    design: str
    status: str
    params: dict[str, Any] = field(default_factory=dict)


class PanelSource(Protocol):
    async def experiments(self) -> list[ExperimentInfo]: ...

    async def panel(self, exp_id: str) -> pd.DataFrame: ...


class EstimateSink(Protocol):
    async def publish(
        self,
        experiment: str,
        result: EstimateResult,
        as_of: datetime,
        cs: tuple[float, float] | None,
    ) -> None: ...


class ClockLike(Protocol):
    def now(self) -> datetime: ...

    async def sync(self) -> None: ...


class WorkerObserver(Protocol):
    def estimated(self, experiment: str, estimator: str, seconds: float, ok: bool) -> None: ...

    def published(self, experiment: str, estimator: str, as_of: datetime) -> None: ...


class _NullObserver:
    def estimated(self, experiment: str, estimator: str, seconds: float, ok: bool) -> None:
        return None

    def published(self, experiment: str, estimator: str, as_of: datetime) -> None:
        return None


def panel_from_cells(df: pd.DataFrame) -> Panel:
    """The long cell table of a PanelSource as a validated Panel (outcome: units sold)."""
    return Panel.from_long(
        df,
        unit="product",
        time="period",
        outcome="units",
        treated="treated",
        blackout="blackout",
        probability="probability",
    )


@dataclass
class AnalysisWorker:
    source: PanelSource
    sink: EstimateSink
    clock: ClockLike
    observer: WorkerObserver = field(default_factory=_NullObserver)
    estimators_for: Callable[[ExperimentInfo], Sequence[str]] = lambda info: (
        ESTIMATORS_BY_DESIGN.get(info.design, ("dm",))
    )
    alpha: float = 0.05
    seed: int = 0
    min_periods: int = 2
    _cs_target: dict[tuple[str, str], float] = field(default_factory=dict, repr=False)

    def _confidence_sequence(
        self, info: ExperimentInfo, result: EstimateResult
    ) -> tuple[float, float] | None:
        """Anytime-valid interval (Howard et al. 2021 normal mixture; analysis/confseq.py).

        The mixture is tuned once per experiment and estimator, at the first look, to the SE
        expected at the planned horizon (first SE x sqrt(periods seen / periods planned)), and
        then kept fixed, as the guarantee requires.
        """
        if not (math.isfinite(result.se) and result.se > 0):
            return None
        key = (info.id, result.method)
        if key not in self._cs_target:
            planned = int(info.params.get("n_periods") or result.n_periods)
            self._cs_target[key] = result.se * math.sqrt(
                result.n_periods / max(planned, result.n_periods)
            )
        cs = ConfidenceSequence(target_se=self._cs_target[key], alpha=self.alpha, intersect=False)
        r = float(cs.radius(result.se))
        return (result.effect - r, result.effect + r)

    async def run_once(self) -> list[tuple[str, EstimateResult]]:
        """Estimate every experiment with data once; publish each estimate. Returns them."""
        await self.clock.sync()
        as_of = self.clock.now()
        published: list[tuple[str, EstimateResult]] = []
        for info in await self.source.experiments():
            df = await self.source.panel(info.id)
            if df.empty or df["period"].nunique() < self.min_periods:
                continue
            try:
                panel = panel_from_cells(df)
            except AnalysisError as exc:
                log.warning("experiment %s: panel not usable yet: %s", info.id, exc)
                continue
            for name in self.estimators_for(info):
                t0 = time.perf_counter()
                try:
                    result = registry.make(name, seed=self.seed).fit(panel).result
                except (AnalysisError, ValueError) as exc:
                    self.observer.estimated(info.id, name, time.perf_counter() - t0, False)
                    log.info("experiment %s: %s not applicable: %s", info.id, name, exc)
                    continue
                self.observer.estimated(info.id, name, time.perf_counter() - t0, True)
                if not math.isfinite(result.effect):
                    continue
                cs = self._confidence_sequence(info, result)
                await self.sink.publish(info.id, result, as_of, cs)
                self.observer.published(info.id, name, as_of)
                published.append((info.id, result))
        return published
