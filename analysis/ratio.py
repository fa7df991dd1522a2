"""Ratios of two estimated means with honest intervals: relative effects and elasticities.

A relative effect (treated over control mean, minus one) and an arc elasticity (the change in
log units over the change in log price) are ratios of two estimates that share their noise.
Dividing an absolute interval by a point baseline ignores the baseline's uncertainty and
their covariance (the defect cluster-experiments PR #264 and GrowthBook PR #3610 fixed); in a
switchback the same product sits in both arms, so the covariance is not zero.

:func:`fieller` gives Fieller's interval (Fieller 1954, "Some problems in interval
estimation", JRSS B 16(2); for experiments: Franz 2007, "Ratios: a short guide to confidence
limits and proper use", arXiv:0710.2024): the set of ratios R for which ``a - R b`` is not
rejected, with ``a`` and ``b`` jointly normal with the given (cluster-robust) covariance. It
is exact under that normality, any sign of the means, and it says when no bounded interval
exists: when the denominator is not distinguishable from zero at the level asked,
``g = q^2 var(b) / b^2 >= 1``, and the honest set is then unbounded. The reference quantile
``q`` is the caller's: Student t with the covariance's degrees of freedom for a fixed-sample
interval, the confidence sequence's radius over the SE for an anytime-valid one.

Coverage is validated, not assumed: tests/unit/analysis/test_ratio.py (seeded simulations over many
seeds, next to the naive interval that divides by a point baseline).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

from analysis.reference import reference


class _Estimate(Protocol):
    """What :func:`relative_fields` reads of an estimate (``analysis.results.EstimateResult``)."""

    @property
    def method(self) -> str: ...

    @property
    def df(self) -> float | None: ...

    @property
    def details(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class RatioInterval:
    """The ratio ``a / b`` and its Fieller interval, or why there is no bounded one."""

    ratio: float
    low: float | None
    high: float | None
    g: float  # q^2 var(b) / b^2: at 1 or above the interval is unbounded

    @property
    def bounded(self) -> bool:
        return self.low is not None

    @property
    def note(self) -> str | None:
        """One sentence when there is no bounded interval, else None."""
        if self.bounded:
            return None
        if not math.isfinite(self.ratio):
            return "the denominator is zero: the ratio is not defined"
        return (
            f"the denominator is too noisy for a bounded interval (Fieller's g = {self.g:.2f}, "
            "at least 1): it is not distinguishable from zero at this level"
        )

    def shifted(self, by: float) -> RatioInterval:
        """The same interval moved by ``by`` (a relative effect is the ratio minus one)."""
        return RatioInterval(
            self.ratio + by,
            None if self.low is None else self.low + by,
            None if self.high is None else self.high + by,
            self.g,
        )


def fieller(a: float, b: float, v_aa: float, v_bb: float, v_ab: float, q: float) -> RatioInterval:
    """Fieller's interval for ``a / b`` at reference quantile ``q``, with ``var(a) = v_aa``,
    ``var(b) = v_bb``, ``cov(a, b) = v_ab``.

    The set {R : (a - R b)^2 <= q^2 (v_aa - 2 R v_ab + R^2 v_bb)} is the quadratic
    ``A R^2 - 2 B R + C <= 0`` with ``A = b^2 - q^2 v_bb``, ``B = a b - q^2 v_ab`` and
    ``C = a^2 - q^2 v_aa``: an interval exactly when ``A > 0`` (``g < 1``).
    """
    if b == 0.0 or not all(map(math.isfinite, (a, b, v_aa, v_bb, v_ab, q))):
        return RatioInterval(math.nan if b == 0.0 else a / b, None, None, math.inf)
    ratio = a / b
    g = q * q * v_bb / (b * b)
    big_a = b * b - q * q * v_bb
    big_b = a * b - q * q * v_ab
    big_c = a * a - q * q * v_aa
    disc = big_b * big_b - big_a * big_c
    if g >= 1.0 or big_a <= 0.0 or disc < 0.0:
        return RatioInterval(ratio, None, None, g)
    root = math.sqrt(disc)
    return RatioInterval(ratio, (big_b - root) / big_a, (big_b + root) / big_a, g)


@dataclass(frozen=True)
class RelativeEffect:
    """An absolute effect in relative terms: ``effect / control_mean``, where the control
    mean is the counterfactual mean of the compared cells, with Fieller intervals that carry
    the control mean's own uncertainty and its covariance with the treated mean."""

    control_mean: float
    relative_effect: float
    ci: RatioInterval  # of the relative effect (the ratio minus one)
    cs: RatioInterval | None = None  # anytime-valid, when a sequence's multiplier is given

    @property
    def note(self) -> str | None:
        return self.ci.note


def relative_effect(
    mean_treated: float,
    mean_control: float,
    covariance: tuple[float, float, float],
    q: float,
    q_sequence: float | None = None,
) -> RelativeEffect:
    """``mean_treated / mean_control - 1`` with Fieller's interval at quantile ``q`` (and the
    anytime-valid set at ``q_sequence``: the confidence sequence's radius over the absolute
    effect's SE). ``covariance``: (var treated mean, var control mean, their covariance)."""
    v11, v00, v10 = covariance
    ci = fieller(mean_treated, mean_control, v11, v00, v10, q).shifted(-1.0)
    cs = None
    if q_sequence is not None:
        cs = fieller(mean_treated, mean_control, v11, v00, v10, q_sequence).shifted(-1.0)
    return RelativeEffect(mean_control, ci.ratio, ci, cs)


#: the relative fields of an estimate message, in order
RELATIVE_FIELDS = (
    "control_mean",
    "relative_effect",
    "relative_ci_low",
    "relative_ci_high",
    "relative_cs_low",
    "relative_cs_high",
    "relative_note",
)


def relative_fields(
    result: _Estimate, alpha: float = 0.05, q_sequence: float | None = None
) -> dict[str, float | str | None]:
    """An estimate's relative form as the estimates topic and ``analyze --relative`` give it:
    the control mean, the relative effect, its Fieller interval (and the anytime-valid one at
    ``q_sequence``), or a one-sentence note where there is none (never NaN)."""
    out: dict[str, float | str | None] = dict.fromkeys(RELATIVE_FIELDS)
    d = result.details
    if "mean_covariance" not in d:
        out["relative_note"] = (
            f"{result.method} reports no arm means and covariance: no relative form"
        )
        return out
    m1, m0 = float(d["mean_treated"]), float(d["mean_control"])
    out["control_mean"] = m0
    if m0 == 0.0:
        out["relative_note"] = "the control mean is zero: the relative effect is not defined"
        return out
    if m0 < 0.0:  # a loss: m1 / m0 - 1 would read a deeper loss as an improvement
        out["relative_note"] = (
            "the control mean is negative (a loss): a relative change is not defined; read "
            "the absolute effect"
        )
        return out
    df = d.get("df_ratio") or result.df
    ref = reference(df)
    rel = relative_effect(m1, m0, d["mean_covariance"], float(ref.ppf(1 - alpha / 2)), q_sequence)
    out["relative_effect"] = rel.relative_effect
    out["relative_ci_low"], out["relative_ci_high"] = rel.ci.low, rel.ci.high
    if rel.cs is not None:
        out["relative_cs_low"], out["relative_cs_high"] = rel.cs.low, rel.cs.high
    out["relative_note"] = rel.note or (rel.cs.note if rel.cs is not None else None)
    return out
