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

import networkx as nx
import numpy as np
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


class GuardrailSink(Protocol):
    async def trip(self, experiment: str, metric: str, detail: dict[str, Any]) -> None: ...


class ClockLike(Protocol):
    def now(self) -> datetime: ...

    async def sync(self) -> None: ...


class WorkerObserver(Protocol):
    def estimated(self, experiment: str, estimator: str, seconds: float, ok: bool) -> None: ...

    def published(self, experiment: str, estimator: str, as_of: datetime) -> None: ...

    def guardrail_tripped(self, experiment: str, metric: str) -> None: ...


class _NullObserver:
    def guardrail_tripped(self, experiment: str, metric: str) -> None:
        return None

    def estimated(self, experiment: str, estimator: str, seconds: float, ok: bool) -> None:
        return None

    def published(self, experiment: str, estimator: str, as_of: datetime) -> None:
        return None


def panel_from_cells(df: pd.DataFrame, outcome: str = "units") -> Panel:
    """The long cell table of a PanelSource as a validated Panel (outcome: units or revenue)."""
    return Panel.from_long(
        df,
        unit="product",
        time="period",
        outcome=outcome,
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
    guardrails: GuardrailSink | None = None
    estimators_for: Callable[[ExperimentInfo], Sequence[str]] = lambda info: (
        ESTIMATORS_BY_DESIGN.get(info.design, ("dm",))
    )
    alpha: float = 0.05
    seed: int = 0
    min_periods: int = 2
    _cs_target: dict[tuple[str, str], float] = field(default_factory=dict, repr=False)

    def _confidence_sequence(
        self, info: ExperimentInfo, result: EstimateResult, key: str | None = None
    ) -> tuple[float, float] | None:
        """Anytime-valid interval (Howard et al. 2021 normal mixture; analysis/confseq.py).

        The mixture is tuned once per experiment and estimator, at the first look, to the SE
        expected at the planned horizon (first SE x sqrt(periods seen / periods planned)), and
        then kept fixed, as the guarantee requires.
        """
        if not (math.isfinite(result.se) and result.se > 0):
            return None
        cs_key = (info.id, key or result.method)
        if cs_key not in self._cs_target:
            planned = int(info.params.get("n_periods") or result.n_periods)
            self._cs_target[cs_key] = result.se * math.sqrt(
                result.n_periods / max(planned, result.n_periods)
            )
        cs = ConfidenceSequence(
            target_se=self._cs_target[cs_key], alpha=self.alpha, intersect=False
        )
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
            for result in self._spillover(info, panel):
                await self.sink.publish(info.id, result, as_of, None)
                self.observer.published(info.id, result.method, as_of)
                published.append((info.id, result))
            if info.status == "running" and self.guardrails is not None:
                await self._check_guardrails(info, df)
        return published

    def _spillover(self, info: ExperimentInfo, panel: Panel) -> list[EstimateResult]:
        """Spillover-adjusted estimates for experiments that carry a substitutes graph.

        Block designs (time-bound, fixed clusters) use ``panel_spillover`` on detrended first
        differences. Switchbacks re-randomise every period, so each period is one
        cross-sectional experiment: its Hajek IPW contrasts (Aronow & Samii 2017) are averaged
        over periods, and, the periods' randomisations being independent, their design
        variances add: se = sqrt(sum se_t^2) / T.
        """
        edges = info.params.get("substitutes") or ()
        if not edges:
            return []
        from analysis.spillover import (
            SpilloverError,
            bernoulli_design,
            cluster_design,
            estimate_spillover,
            panel_spillover,
        )

        graph = nx.Graph()
        graph.add_nodes_from(str(u) for u in panel.units)
        graph.add_weighted_edges_from((a, b, float(w)) for a, b, w in edges)
        p = float(info.params.get("allocation", 0.5))
        clusters = info.params.get("clusters") or {}
        if clusters:
            label = {q: c for c, members in clusters.items() for q in members}
            design = cluster_design(np.array([label.get(str(u), str(u)) for u in panel.units]), p)
        else:
            design = bernoulli_design(panel.n_units, p)
        t0 = time.perf_counter()
        try:
            if panel.is_block:
                results = panel_spillover(panel, graph, design, seed=self.seed).to_results("units")
            else:
                per_period = []
                for t in range(panel.n_periods):
                    ok = panel.usable[:, t]
                    if ok.sum() < 4 or ok.sum() < panel.n_units:  # a period needs every product
                        continue
                    res = estimate_spillover(
                        graph,
                        panel.W[:, t],
                        panel.Y[:, t],
                        design,
                        nodes=[str(u) for u in panel.units],
                        n_draws=500,
                        n_variance_draws=200,
                        seed=self.seed + t,
                    )
                    per_period.append(res.effects)
                if not per_period:
                    return []
                stacked = pd.concat(per_period, keys=range(len(per_period)))
                g = stacked.groupby(level=1)
                eff, var, units = (
                    g["effect"].mean(),
                    g["se"].apply(lambda s: float((s**2).sum())),
                    g["n_units"].mean(),
                )
                results = [
                    EstimateResult(
                        method="naive_difference" if name == "naive" else f"spillover_ipw:{name}",
                        effect=float(eff[name]),
                        se=math.sqrt(var[name]) / g.size()[name],
                        n_units=int(round(units[name])),
                        n_periods=int(g.size()[name]),
                        se_method="design_bootstrap",
                        metric="units",
                    )
                    for name in eff.index
                    if math.isfinite(eff[name]) and math.isfinite(var[name])
                ]
        except (SpilloverError, AnalysisError, ValueError) as exc:
            self.observer.estimated(info.id, "spillover_ipw", time.perf_counter() - t0, False)
            log.info("experiment %s: spillover estimates not available: %s", info.id, exc)
            return []
        self.observer.estimated(info.id, "spillover_ipw", time.perf_counter() - t0, True)
        return results

    async def _check_guardrails(self, info: ExperimentInfo, df: pd.DataFrame) -> None:
        """Trip a guardrail when the anytime-valid CS of the relative effect on its metric
        lies wholly below -max_drop_pct. The control mean is treated as known (it is
        estimated far more precisely than the difference), a documented approximation."""
        assert self.guardrails is not None
        for g in info.params.get("guardrails") or ():
            metric, limit = g["metric"], float(g["max_drop_pct"])
            try:
                panel = panel_from_cells(df, outcome=metric)
                res = registry.make("dm", seed=self.seed).fit(panel).result
            except (AnalysisError, ValueError):
                continue
            usable = panel.usable & ~panel.W
            base = float(panel.Y[usable].mean()) if usable.any() else math.nan
            cs = self._confidence_sequence(info, res, key=f"guardrail:{metric}")
            if cs is None or not (base > 0):
                continue
            upper_pct = 100.0 * cs[1] / base
            if upper_pct < -limit:
                detail = {
                    "metric": metric,
                    "max_drop_pct": limit,
                    "effect": res.effect,
                    "relative_effect_pct": 100.0 * res.effect / base,
                    "cs_relative_pct": [100.0 * cs[0] / base, upper_pct],
                    "n_periods": res.n_periods,
                }
                log.warning("experiment %s: guardrail on %s tripped: %s", info.id, metric, detail)
                await self.guardrails.trip(info.id, metric, detail)
                self.observer.guardrail_tripped(info.id, metric)
                return
