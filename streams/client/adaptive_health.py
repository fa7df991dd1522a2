"""The sample-ratio check of an adaptive ladder: its draws against the probabilities the
controller recorded for each period (docs/adaptive.md, "The sample ratio"), not against the
spec's allocations, which its looks move away from.

:func:`draw_counts` takes each period's arm counts among the design's independent draws from
the panel (random days: every product-period; an optimal switchback: each product's block,
counted in the block's first period; the cluster design: each class-period), cells in blackout
left out (a pause or a freeze sets the arm in force, not the draw). :func:`recorded_sample_ratio`
is the test, :func:`recorded_sample_ratio_check` the Health section's flag and sentence, by the
thresholds of the fixed ladder's check (streams.client.health_rules).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from controller.spec import ExperimentSpec
from streams.client.health_rules import OK, PROBLEM, SRM_PROBLEM, SRM_WARN, WARN, Check


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


def draw_counts(df: pd.DataFrame, spec: ExperimentSpec) -> tuple[dict[int, list[int]], str]:
    """Each period's count of every arm (spec arm order) among the design's independent draws
    in the panel ``df`` (columns product, period, arm by name, blackout), and what a draw is
    (``product``, ``block`` or ``class``). A draw whose arm the spec does not name is left
    out (it cannot be compared with a probability)."""
    names = [a.name for a in spec.arm_list()]
    index = {n: i for i, n in enumerate(names)}
    if df.empty or "arm" not in df.columns:
        return {}, "product"
    d = df[~df["blackout"].astype(bool)] if "blackout" in df.columns else df
    d = d[d["arm"].astype(str).isin(index)]
    level = "product"
    if spec.design == "optimal-switchback":
        from controller.designs.optimal_switchback import points

        d = d[d["period"].isin(points(spec))]  # a block's draw, once, in its first period
        level = "block"
    elif spec.design == "cluster":
        classes = spec.class_map()
        d = d.assign(_class=d["product"].map(classes))
        d = d.drop_duplicates(["_class", "period"])  # the products of a class share its draw
        level = "class"
    out: dict[int, list[int]] = {}
    for period, g in d.groupby("period"):
        counts = [0] * len(names)
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
    from scipy import stats

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


def recorded_sample_ratio_check(srm: RecordedSampleRatio | None) -> Check:
    """An adaptive ladder's sample-ratio check: its test's p-value below ``SRM_PROBLEM`` is a
    problem, below ``SRM_WARN`` a warning (the fixed ladder's thresholds); no recorded
    period with draws is nothing to check."""
    title = "Sample ratio per arm"
    if srm is None or not math.isfinite(srm.pvalue):
        return Check("sample_ratio", title, OK,
                     "No drawn period with recorded probabilities yet: nothing to check.")  # fmt: skip
    arms = ", ".join(
        f"{a} {srm.observed[a]} (expected {srm.expected[a]:.1f})" for a in srm.expected
    )
    figures = (
        f"chi-square {srm.statistic:.2f} on {srm.df} degree(s) of freedom, p = {srm.pvalue:.3g}, "
        f"over {srm.n} independent draws ({srm.level}s) in {srm.periods} period(s): {arms}"
    )
    detail = {"observed": dict(srm.observed), "expected": dict(srm.expected),
              "statistic": srm.statistic, "df": srm.df, "pvalue": srm.pvalue, "n": srm.n,
              "periods": srm.periods, "level": srm.level, "against": "recorded"}  # fmt: skip
    if srm.pvalue < SRM_PROBLEM:
        return Check("sample_ratio", title, PROBLEM,
                     f"The arms' draws differ from the probabilities recorded for their periods "
                     f"({figures}): investigate the assignment pipeline before trusting the "
                     "estimates.", detail)  # fmt: skip
    if srm.pvalue < SRM_WARN:
        return Check("sample_ratio", title, WARN,
                     f"The arms' draws are at the edge of the probabilities recorded for their "
                     f"periods ({figures}): watch the next looks.", detail)  # fmt: skip
    return Check("sample_ratio", title, OK,
                 f"The arms' draws match the probabilities recorded for their periods "
                 f"({figures}).", detail)  # fmt: skip


__all__ = [
    "RecordedSampleRatio",
    "draw_counts",
    "recorded_sample_ratio",
    "recorded_sample_ratio_check",
]
