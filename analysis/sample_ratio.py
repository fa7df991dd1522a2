"""An adaptive ladder's sample-ratio test: its draws against the probabilities the controller
recorded for each period (docs/adaptive.md, "The sample ratio"), not against the spec's
allocations, which its looks move away from.

One implementation for both readers: the console's Health section (streams.client.adaptive_health,
on the live panel and the controller's record) and the HTML report (analysis.report, on a panel
whose ``probability_<arm>`` columns carry the record). :func:`draw_counts` takes each period's
arm counts among the design's independent draws, :func:`recorded_sample_ratio` is the test and
:func:`recorded_verdict` its flag and sentence by :data:`SRM_PROBLEM` and :data:`SRM_WARN`,
the thresholds of the fixed ladder's check too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

#: the sample-ratio p-value below which the draws are a problem (the report's and the Health
#: section's); below SRM_WARN, one to watch
SRM_PROBLEM = 0.001
SRM_WARN = 0.01

#: a check's flags, as the Health section names them
OK, WARN, PROBLEM = "ok", "warn", "problem"


def sample_ratio_flag(pvalue: float) -> str:
    """``problem`` below :data:`SRM_PROBLEM`, ``warn`` below :data:`SRM_WARN`, else ``ok``."""
    if pvalue < SRM_PROBLEM:
        return PROBLEM
    return WARN if pvalue < SRM_WARN else OK


@dataclass(frozen=True)
class RecordedSampleRatio:
    """Each arm's count among the independent draws of the recorded periods (``observed``),
    the count the recorded probabilities expect (``expected``), the test's ``statistic``,
    its degrees of freedom ``df`` and ``pvalue``, over ``n`` draws in ``periods`` periods
    (``level``: what a draw is)."""

    level: str
    n: int
    periods: int
    observed: dict[str, int]
    expected: dict[str, float]
    statistic: float
    df: int
    pvalue: float


@dataclass(frozen=True)
class DesignDraws:
    """What a ladder's independent draw is, from its spec: the ``arms`` in the spec's order, an
    optimal switchback's randomisation ``points`` (a draw per product and block), the cluster
    design's ``classes`` (product -> class: a draw per class and period); neither, a draw per
    product-period (random days)."""

    arms: tuple[str, ...]
    points: tuple[int, ...] | None = None
    classes: Mapping[str, str] | None = None


def draw_counts(
    df: pd.DataFrame,
    arms: Sequence[str],
    *,
    points: Sequence[int] | None = None,
    classes: Mapping[str, str] | None = None,
) -> tuple[dict[int, list[int]], str]:
    """Each period's count of every arm (``arms`` order) among the design's independent draws
    in the panel ``df`` (columns product, period, arm by name, blackout), and what a draw is:
    every product-period (``product``); with ``points`` (an optimal switchback's
    randomisation points) each product's block, counted in the block's first period
    (``block``); with ``classes`` (product -> class, the cluster design) each class-period
    (``class``). Cells in blackout are left out (a pause or a freeze sets the arm in force,
    not the draw), and so is a draw whose arm is not in ``arms`` (it cannot be compared with
    a probability)."""
    index = {n: i for i, n in enumerate(arms)}
    if df.empty or "arm" not in df.columns:
        return {}, "product"
    d = df[~df["blackout"].astype(bool)] if "blackout" in df.columns else df
    d = d[d["arm"].astype(str).isin(index)]
    level = "product"
    if points is not None:
        d = d[d["period"].isin(list(points))]  # a block's draw, once, in its first period
        level = "block"
    elif classes is not None:
        d = d.assign(_class=d["product"].astype(str).map(classes))
        d = d.drop_duplicates(["_class", "period"])  # the products of a class share its draw
        level = "class"
    out: dict[int, list[int]] = {}
    for period, g in d.groupby("period"):
        counts = [0] * len(arms)
        for arm, n in g["arm"].astype(str).value_counts().items():
            counts[index[str(arm)]] = int(n)
        out[int(str(period))] = counts
    return out, level


def recorded_sample_ratio(
    counts: Mapping[int, Sequence[int]],
    probabilities: Mapping[int, Sequence[float]],
    arms: Sequence[str],
    level: str = "product",
) -> RecordedSampleRatio | None:
    """The draws of every recorded period against its recorded probabilities.

    Null hypothesis: each independent draw of period t took arm a with the recorded
    probability ``p_t(a)``, independently of the period's other draws (the design's keyed
    uniforms); ``p_t`` may depend on the periods before (the looks). Given the history, the
    counts ``n_t`` of period t are then multinomial(``N_t``, ``p_t``), so ``d = sum_t (n_t -
    N_t p_t)`` is a sum of martingale differences with predictable covariance ``V = sum_t N_t
    (diag p_t - p_t p_t')``, and the statistic ``d' V^+ d`` is approximately chi-square with
    ``rank V`` (k - 1) degrees of freedom (the martingale central limit theorem; exact in the
    limit of many draws a period). With every period at one ``p`` it is Pearson's chi-square
    of the summed counts. Summing the counts before the test, rather than the periods'
    chi-squares, keeps k - 1 degrees of freedom: a pipeline that favours an arm in every
    period is seen with the power of all the draws together.

    Only periods with both counts and a recorded probability enter; None when none does."""
    k = len(arms)
    periods = sorted(t for t in counts if t in probabilities and sum(counts[t]) > 0)
    if not periods:
        return None
    n = np.array([counts[t] for t in periods], dtype=float)
    p = np.array([probabilities[t] for t in periods], dtype=float)
    if n.shape[1] != k or p.shape[1] != k:
        raise ValueError(f"need {k} counts and {k} probabilities a period")
    size = n.sum(axis=1)
    expected = (size[:, None] * p).sum(axis=0)
    d = n.sum(axis=0) - expected
    v = np.einsum("t,ta,ab->ab", size, p, np.eye(k)) - np.einsum("t,ta,tb->ab", size, p, p)
    df = int(np.linalg.matrix_rank(v, tol=1e-9 * max(float(size.sum()), 1.0)))
    stat = float(d @ np.linalg.pinv(v, rcond=1e-12, hermitian=True) @ d) if df else 0.0
    pvalue = float(stats.chi2.sf(stat, df)) if df else math.nan
    return RecordedSampleRatio(
        level=level,
        n=int(size.sum()),
        periods=len(periods),
        observed={a: int(x) for a, x in zip(arms, n.sum(axis=0), strict=True)},
        expected={a: float(x) for a, x in zip(arms, expected, strict=True)},
        statistic=stat,
        df=df,
        pvalue=pvalue,
    )


#: the sentence when no recorded period has a draw
NOTHING_TO_CHECK = "No drawn period with recorded probabilities yet: nothing to check."


def recorded_verdict(srm: RecordedSampleRatio | None) -> tuple[str, str]:
    """The test's flag (:func:`sample_ratio_flag` of its p-value) and one sentence that gives
    its figures and what to do; no recorded period with draws is ``ok``, nothing to check."""
    if srm is None or not math.isfinite(srm.pvalue):
        return OK, NOTHING_TO_CHECK
    arms = ", ".join(
        f"{a} {srm.observed[a]} (expected {srm.expected[a]:.1f})" for a in srm.expected
    )
    figures = (
        f"chi-square {srm.statistic:.2f} on {srm.df} degree(s) of freedom, p = {srm.pvalue:.3g}, "
        f"over {srm.n} independent draws ({srm.level}s) in {srm.periods} period(s): {arms}"
    )
    flag = sample_ratio_flag(srm.pvalue)
    if flag == PROBLEM:
        return flag, (
            f"The arms' draws differ from the probabilities recorded for their periods "
            f"({figures}): investigate the assignment pipeline before trusting the estimates."
        )
    if flag == WARN:
        return flag, (
            f"The arms' draws are at the edge of the probabilities recorded for their periods "
            f"({figures}): watch the next looks."
        )
    return flag, f"The arms' draws match the probabilities recorded for their periods ({figures})."


__all__ = [
    "NOTHING_TO_CHECK",
    "OK",
    "PROBLEM",
    "SRM_PROBLEM",
    "SRM_WARN",
    "WARN",
    "DesignDraws",
    "RecordedSampleRatio",
    "draw_counts",
    "recorded_sample_ratio",
    "recorded_verdict",
    "sample_ratio_flag",
]
