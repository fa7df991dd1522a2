"""An adaptive ladder's panel analysed offline (``pricelab analyze``; issue #57, docs/adaptive.md).

A panel is an adaptive ladder's when the experiment's spec has an ``adaptive:`` block, or when
the panel's recorded probabilities move: it has a ``probability_<arm>`` column for every arm
(each period's recorded probability of that arm, as ``pricelab simulate`` and ``pricelab panel
export`` write them) and one of them takes different values in different periods. A panel whose
per-arm probabilities are the same in every period was drawn with a fixed allocation, and the
fixed-allocation estimators are valid on it.

On an adaptive panel the estimate is the analysis worker's (:mod:`analysis.adaptive_live`:
:func:`~analysis.adaptive_live.ladder_cells` and :func:`~analysis.adaptive_live.fit_ladder`,
i.e. :class:`analysis.adaptive.AdaptiveArms`' AIPW on the recorded probabilities with the
simultaneous anytime-valid sequences of Waudby-Smith et al.), per metric the panel has (units,
revenue, profit). Nothing here estimates: it reads the recorded probabilities off the columns
and hands the cells to the worker's functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis.adaptive_live import (
    ESTIMATOR,
    METRICS,
    AdaptiveFit,
    fit_ladder,
    ladder_cells,
)
from analysis.errors import AnalysisError

#: the prefix of the columns that hold each period's recorded probability of one arm
PREFIX = "probability_"

#: why a fixed-allocation method is refused on an adaptive panel (one sentence)
REFUSED = (
    "--method {method} assumes each cell's arm was drawn with a fixed allocation, but this "
    "panel is an adaptive ladder's ({why}): the allocation moved with the data, so {method} is "
    "biased here; leave out --method for AIPW on the recorded probabilities with anytime-valid "
    "intervals (docs/adaptive.md)."
)


def probability_arms(columns: Sequence[Any]) -> list[str]:
    """The arms the panel records a probability of (its ``probability_<arm>`` columns, in the
    panel's order)."""
    return [str(c)[len(PREFIX) :] for c in columns if str(c).startswith(PREFIX)]


def recorded_probabilities(
    df: pd.DataFrame, time: str, names: Sequence[str]
) -> dict[int, tuple[float, ...]]:
    """Each period's recorded probabilities (``names`` order) from the ``probability_<arm>``
    columns: one row per period (an AnalysisError when a period's cells disagree, or when the
    periods are not the experiment's period indices 0, 1, ...). A period whose cells have no
    recorded probability at all is left out (the worker's ``ladder_cells`` then ends the look
    before it, unless every cell of it is blacked out)."""
    missing = [a for a in names if PREFIX + a not in df.columns]
    if missing:
        raise AnalysisError(
            f"the panel has no {', '.join(PREFIX + a for a in missing)} column: an adaptive "
            "ladder's estimate needs each period's recorded probability of every arm."
        )
    period = pd.to_numeric(df[time], errors="coerce")
    whole = period.notna().all() and bool((period == period.round()).all())
    if not whole or period.min() < 0:
        raise AnalysisError(
            f"--time {time!r} must hold the experiment's period indices 0, 1, ... (as `pricelab "
            "simulate` and `pricelab panel export` write them) for an adaptive ladder."
        )
    cols = [PREFIX + a for a in names]
    table = df[cols].apply(pd.to_numeric, errors="coerce").assign(_period=period.astype(int))
    unrecorded = table[cols].isna().all(axis=1)  # a period no flip drew (e.g. paused through)
    if table.loc[~unrecorded, cols].isna().any().any():
        raise AnalysisError("a cell's recorded probability is missing or not a number.")
    table = table[~unrecorded]
    if table.empty:
        raise AnalysisError("no period of the panel has recorded probabilities.")
    per = table.groupby("_period")[cols]
    spread = (per.max() - per.min()).to_numpy()
    if (spread > 1e-9).any():
        bad = int(per.max().index[(spread > 1e-9).any(axis=1)][0])
        raise AnalysisError(
            f"the cells of period {bad} disagree on its recorded probabilities; each period has "
            "one row of them."
        )
    first = per.first()
    return {int(t): tuple(float(x) for x in row) for t, row in zip(first.index, first.to_numpy(),
                                                                   strict=True)}  # fmt: skip


def with_recorded(
    df: pd.DataFrame, names: Sequence[str], allocations: Mapping[int, Sequence[float]]
) -> pd.DataFrame:
    """``df`` (a ``period`` column of period indices) with a ``probability_<arm>`` column per
    arm after ``probability`` (else at the end): each row's period's recorded probability of
    the arm, empty in a period without a record (what :func:`recorded_probabilities` reads)."""
    period = df["period"].astype(int).to_numpy()
    out = df.copy()
    at = (
        out.columns.get_loc("probability") + 1 if "probability" in out.columns else len(out.columns)
    )
    for i, name in enumerate(names):
        col = np.array([allocations[t][i] if t in allocations else np.nan for t in period], float)
        out.insert(int(at) + i, PREFIX + name, col)
    return out


def moved(allocations: Mapping[int, Sequence[float]]) -> bool:
    """Whether some arm's recorded probability differs between periods."""
    if len(allocations) < 2:
        return False
    rows = np.array([allocations[t] for t in sorted(allocations)], dtype=float)
    return bool((np.ptp(rows, axis=0) > 1e-9).any())


def moving_allocation(df: pd.DataFrame, time: str) -> bool:
    """Whether ``df`` records per-arm probabilities (``probability_<arm>``, one row per period)
    that move between periods: an adaptive ladder's panel, on which a fixed-allocation
    estimator is biased."""
    names = probability_arms(df.columns)
    if not names or time not in df.columns:
        return False
    try:
        return moved(recorded_probabilities(df, time, names))
    except AnalysisError:  # not one row of probabilities per period: no such record
        return False


@dataclass(frozen=True)
class OfflineLook:
    """The worker's look at an adaptive panel: each metric's :class:`AdaptiveFit`, the
    recorded probabilities per period, the metric the best arm is read on, the planned
    horizon, and why the fixed-allocation methods are not run."""

    fits: Mapping[str, AdaptiveFit]
    allocations: Mapping[int, tuple[float, ...]]
    metric: str
    horizon: int
    note: str
    #: where the carryover lag came from: ``--lag``, the spec's design, or neither (0)
    lag_source: str = "none given"
    #: the periods that drew afresh when read off the panel (``--lag`` without a spec)
    fresh: tuple[int, ...] | None = None

    def rows(self) -> list[dict[str, Any]]:
        """One row per metric and non-control arm: the contrast with the control and its
        simultaneous anytime-valid sequence (``cs_low``, ``cs_high``)."""
        out = []
        for metric, fit in self.fits.items():
            for est in fit.estimates():
                out.append(
                    {
                        "method": ESTIMATOR,
                        "metric": metric,
                        "arm": est.arm,
                        "effect": est.effect,
                        "cs_low": est.sequence[0],
                        "cs_high": est.sequence[1],
                        "mean_treated": est.details["mean_treated"],
                        "mean_control": est.details["mean_control"],
                        "n_cells": est.n_cells,
                        "n_units": est.n_units,
                        "n_periods": est.n_periods,
                        "lag": fit.lag,
                        "lag_source": self.lag_source,
                    }
                )
        return out

    def looks(self) -> list[dict[str, Any]]:
        """Each metric's look as the worker publishes it (``kind: adaptive``)."""
        allocations = dict(self.allocations)
        return [
            {"kind": "adaptive"} | fit.to_dict(allocations, self.note, self.horizon)
            for fit in self.fits.values()
        ]


def analyse_adaptive(
    df: pd.DataFrame,
    *,
    unit: str,
    time: str,
    arm: str,
    names: Sequence[str],
    control: str,
    blackout: str | None,
    metrics: Sequence[str],
    lag: int = 0,
    points: Sequence[int] | None = None,
    horizon: int = 0,
    alpha: float = 0.05,
    metric: str | None = None,
    note: str = "",
    lag_source: str = "none given",
    read_points: bool = False,
) -> OfflineLook:
    """The analysis worker's adaptive look at a panel: its cells as the worker's long cell
    table (product, period, arm, blackout, the ``metrics``), the recorded probabilities from
    the ``probability_<arm>`` columns, then :func:`ladder_cells` and :func:`fit_ladder` per
    metric with the design's carryover ``lag`` and randomisation ``points`` and the planned
    ``horizon`` (0: the panel's periods). ``metric``: the one the best arm is read on (default
    the first of profit, revenue, units the panel has). ``read_points``: without ``points``,
    read the periods that drew afresh off the panel (:func:`fresh_draws`); ``lag_source``
    says where ``lag`` came from."""
    if control not in names:
        raise AnalysisError(
            f"--control {control!r} is not an arm with a recorded probability "
            f"(the arms: {', '.join(names)})."
        )
    if not metrics:
        raise AnalysisError(
            f"the panel has none of the metrics {', '.join(METRICS)} an adaptive ladder's "
            "estimate is computed on."
        )
    allocations = recorded_probabilities(df, time, names)
    cells = pd.DataFrame(
        {
            "product": df[unit].astype(str).to_numpy(),
            "period": pd.to_numeric(df[time]).astype(int).to_numpy(),
            "arm": df[arm].astype(str).to_numpy(),
            "blackout": (
                df[blackout].astype(bool).to_numpy()
                if blackout is not None
                else np.zeros(len(df), bool)
            ),  # fmt: skip
        }
    )
    for m in metrics:
        cells[m] = pd.to_numeric(df[m], errors="coerce").to_numpy()
    if cells.duplicated(["product", "period"]).any():
        raise AnalysisError("the panel has more than one row for a product and period.")
    unknown = sorted(set(cells["arm"]) - set(names))
    if unknown:
        raise AnalysisError(
            f"arm {unknown[0]!r} of the panel has no {PREFIX}{unknown[0]} column (its "
            "recorded probability)."
        )
    fresh = fresh_draws(cells, allocations, names) if read_points and points is None else None
    ladder = ladder_cells(cells, names, allocations, lag, points if fresh is None else fresh)
    k = list(names).index(control)
    fits = {
        m: fit_ladder(ladder, m, names, k, lag=lag, horizon=horizon, alpha=alpha) for m in metrics
    }
    best_on = metric or next(m for m in ("profit", "revenue", "units") if m in fits)
    if best_on not in fits:
        raise AnalysisError(f"the panel has no {best_on} column to read the best arm on.")
    return OfflineLook(fits, allocations, best_on, horizon or ladder.periods, note, lag_source,
                       fresh)  # fmt: skip


#: the largest chance that a period drawn afresh kept every product's arm by coincidence
#: that :func:`fresh_draws` accepts when it reads the period as a kept draw
KEPT_BY_CHANCE = 1e-3


def fresh_draws(
    cells: pd.DataFrame,
    allocations: Mapping[int, Sequence[float]],
    names: Sequence[str] | None = None,
) -> tuple[int, ...]:
    """The periods whose cells were drawn afresh, read off the cell table (product, period,
    arm, blackout): period 0, and every later period unless it kept the period before's draw,
    as a period inside an optimal switchback's block does: the same recorded probabilities
    as the period before, and every product with a cell outside blackout in both periods (at
    least one) in the same arm in both. A carryover window's probability multiplies only its
    fresh draws' (:func:`analysis.adaptive.window_paths`). A design that draws every period
    afresh keeps every product's arm by chance only (the chance, the product over the products
    of their arm's probability, is negligible on a catalogue; a few products at a lopsided
    allocation can meet it: give the spec there). With ``names`` (the arms in the order of
    ``allocations``' rows), a period read as kept whose products could all have kept their
    arms by chance more often than :data:`KEPT_BY_CHANCE` raises AnalysisError (one
    sentence: give the spec)."""
    lit = cells[~cells["blackout"].to_numpy(bool)]
    arm = lit.pivot(index="product", columns="period", values="arm")
    last = int(cells["period"].max()) if len(cells) else -1
    out = [0]
    for t in range(1, last + 1):
        same = (
            t in allocations
            and t - 1 in allocations
            and np.allclose(allocations[t], allocations[t - 1], rtol=0.0, atol=1e-12)
        )
        if same and t in arm.columns and t - 1 in arm.columns:
            both = arm[t].notna() & arm[t - 1].notna()
            if both.any() and bool((arm.loc[both, t] == arm.loc[both, t - 1]).all()):
                if names is not None:
                    share = dict(zip(names, allocations[t], strict=False))
                    chance = float(np.prod([share.get(a, 1.0) for a in arm.loc[both, t]]))
                    if chance > KEPT_BY_CHANCE:
                        raise AnalysisError(
                            f"period {t} looks like it kept period {t - 1}'s draw, but its "
                            f"{int(both.sum())} product(s) with cells in both would all have "
                            f"kept their arms by chance once in {1 / chance:,.0f} fresh draws, "
                            "too often to tell which periods drew afresh: give --spec."
                        )
                continue  # kept the period before's draw
        out.append(t)
    return tuple(out)


__all__ = [
    "KEPT_BY_CHANCE",
    "PREFIX",
    "REFUSED",
    "OfflineLook",
    "analyse_adaptive",
    "fresh_draws",
    "moved",
    "moving_allocation",
    "probability_arms",
    "recorded_probabilities",
    "with_recorded",
]
