"""The verdict: ship, do not ship, no difference, or keep running, on the decision metric.

An experiment is run to take a decision, and the decision hangs on one metric: profit where
every product's unit cost is known, else revenue (the spec's ``decision_metric`` overrides).
Guardrails (the spec's ``guardrails``: e.g. units not below -2%) are metrics the decision must
not hurt beyond a tolerated drop.

The rule (docs/decision.md), applied at every look of the analysis worker:

- **do not ship** when the decision metric's anytime-valid confidence sequence lies wholly
  below 0, or a guardrail is *breached*: its relative sequence lies wholly below
  ``-max_drop_pct``;
- **ship** when the decision metric's sequence lies wholly above 0 and every guardrail is
  *cleared*: its relative sequence lies wholly above ``-max_drop_pct`` (non-inferiority shown);
- **no difference** (keep the control) when neither applies and the relative sequence lies
  wholly within ``+-mde_pct``: no effect as large as the planned MDE, either way. A sequence
  within the band but wholly above 0 is a gain shown, if small: it ships (once the
  guardrails hold); one wholly below 0 is a loss shown: do not ship;
- otherwise **keep running**, with ``more_days``: the days still needed for 80% power at the
  planned minimum detectable effect (``mde_pct``), from the SE measured so far.

The sequences are the ones the worker publishes (Howard et al. 2021 normal mixture,
analysis/confseq.py): they hold at every look simultaneously, so looking every day and
acting on the first decisive look keeps the error rate (*no difference* included). The first
decisive look is final: the worker keeps it (``decided_at``) and repeats it at later looks,
with the figures of each.

Error rates. With no effect on the decision metric, ``ship`` or ``do not ship`` on it at any
look needs its sequence to exclude the truth: at most ``alpha`` (two-sided) over the whole
experiment. Each guardrail can add a false ``do not ship`` only when its sequence lies wholly
below ``-max_drop_pct`` while its truth is above it: at most ``alpha / 2`` each (one-sided), and
far less when the truth sits well above the limit. With a true effect at least ``mde_pct``
either way, *no difference* needs the sequence to miss it (on one side): at most ``alpha``.
*No difference* adds no ship: it can only end a path earlier. docs/decision.md measures them.

Power. With information growing like the number of periods (SE ~ 1/sqrt(periods), the same
assumption the sequence's tuning makes), the sequence at ``n`` periods excludes 0 with
probability about ``Phi(|delta| / se_n - r(se_n) / se_n)``, ``r`` its radius: the normal
approximation the planner uses for its MDE, with the sequence's multiplier in place of the
fixed-horizon quantile (:func:`power_at`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import numpy as np
from pydantic import TypeAdapter, ValidationError

VerdictWord = Literal["ship", "do_not_ship", "no_difference", "keep_running"]
VERDICTS: tuple[VerdictWord, ...] = ("ship", "do_not_ship", "no_difference", "keep_running")
#: the decisive verdicts that keep the control
KEEP_CONTROL: tuple[VerdictWord, ...] = ("do_not_ship", "no_difference")
#: the metrics a decision may hang on
DECISION_METRICS = ("units", "revenue", "profit")
#: the power ``more_days`` plans for
TARGET_POWER = 0.8
#: the longest extension ``more_days`` looks for, in multiples of the planned length
_HORIZON_FACTOR = 20

_DURATION = TypeAdapter(timedelta)


def decision_metric(params: Mapping[str, Any]) -> str:
    """The spec's decision metric: ``decision_metric`` when given, else profit when every
    product has a unit cost, else revenue."""
    given = params.get("decision_metric")
    if given:
        return str(given)
    costs = params.get("unit_costs") or {}
    products = list(params.get("products") or ()) or [
        p for members in (params.get("clusters") or {}).values() for p in members
    ]
    return "profit" if costs and len(costs) == len(products) else "revenue"


def period_days(params: Mapping[str, Any]) -> float:
    """The spec's period in days (its ``period`` as the spec's JSON gives it; a day when
    absent or unreadable)."""
    raw = params.get("period")
    if raw is None:
        return 1.0
    try:
        return _DURATION.validate_python(raw).total_seconds() / 86400.0
    except ValidationError:
        return 1.0


@dataclass(frozen=True)
class GuardrailReading:
    """One guardrail at one look: the relative effect on its metric and its anytime-valid set
    (fractions), against the largest tolerated drop (percent)."""

    metric: str
    max_drop_pct: float
    relative_effect: float | None = None
    relative_cs_low: float | None = None
    relative_cs_high: float | None = None
    note: str | None = None  # why the set is missing, when it is
    #: k arms: the arm compared with the control (None for two arms)
    arm: str | None = None

    @property
    def status(self) -> Literal["ok", "breached", "open"]:
        """``breached``: the set lies wholly below the limit; ``ok``: wholly above it (shown
        not to drop more than tolerated); ``open``: neither yet (or no bounded set)."""
        limit = -self.max_drop_pct / 100.0
        if self.relative_cs_high is not None and self.relative_cs_high < limit:
            return "breached"
        if self.relative_cs_low is not None and self.relative_cs_low > limit:
            return "ok"
        return "open"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self) | {"status": self.status}
        if self.arm is None:  # a two-arm guardrail: the message it always was
            out.pop("arm")
        return out


@dataclass(frozen=True)
class Verdict:
    """The verdict at one look, with what it rests on (the estimates topic's verdict message)."""

    verdict: VerdictWord
    metric: str
    estimator: str
    rule: str
    reason: str
    effect: float
    cs_low: float | None
    cs_high: float | None
    relative_effect: float | None
    relative_cs_low: float | None
    relative_cs_high: float | None
    n_units: int
    n_periods: int
    alpha: float = 0.05
    guardrails: tuple[GuardrailReading, ...] = ()
    mde_pct: float | None = None
    more_days: float | None = None
    more_days_note: str | None = None
    decided_at: int | None = None  # periods seen at the first decisive look
    extra: dict[str, Any] = field(default_factory=dict, repr=False)
    #: k arms: the arm whose figures the verdict gives (the arm to ship, else the leading
    #: one) and every arm's sequence against the control (None for two arms)
    arm: str | None = None
    arms: tuple[dict[str, Any], ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("extra")
        out["guardrails"] = [g.to_dict() for g in self.guardrails]
        if self.arm is None:  # a two-arm verdict: the message it always was
            out.pop("arm")
            out.pop("arms")
        else:
            out["arms"] = [dict(a) for a in self.arms or ()]
        return out


def rule_text(
    metric: str,
    alpha: float,
    guardrails: Sequence[GuardrailReading],
    mde_pct: float | None = None,
) -> str:
    """The rule, in one sentence naming the metric, the level, the guardrails and, with an
    ``mde_pct``, the band of no meaningful difference."""
    level = f"{1 - alpha:.0%} anytime-valid confidence sequence"
    limits = ", ".join(f"{g.metric} not below -{g.max_drop_pct:g}%" for g in guardrails)
    guard = f" and every guardrail ({limits}) is shown to hold" if guardrails else ""
    breach = " or a guardrail is breached" if guardrails else ""
    same = (
        f"; no difference (keep control) when neither holds and its relative sequence lies "
        f"wholly within +-{abs(mde_pct):g}% (mde_pct)"
        if mde_pct
        else ""
    )
    return (
        f"ship when the {level} of {metric}'s effect lies wholly above 0{guard}; do not ship "
        f"when it lies wholly below 0{breach}{same}; otherwise keep running"
    )


def within_mde(low: float | None, high: float | None, mde_pct: float | None) -> bool:
    """Whether a relative sequence ``[low, high]`` (fractions) lies wholly within
    ``+-mde_pct`` percent: no effect as large as the MDE, either way (False without an MDE
    or a bounded relative sequence)."""
    if not mde_pct or low is None or high is None:
        return False
    band = abs(mde_pct) / 100.0
    return -band < low and high < band


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100.0 * x:+.1f}%"


def _describe(
    metric: str,
    effect: float,
    cs: tuple[float | None, float | None],
    rel: tuple[float | None, float | None, float | None],
) -> str:
    if rel[0] is not None and rel[1] is not None and rel[2] is not None:
        return f"{metric} {_pct(rel[0])} [{_pct(rel[1])}, {_pct(rel[2])}]"
    lo, hi = cs
    if lo is None or hi is None:
        return f"{metric} {effect:+.4g} (no sequence)"
    return f"{metric} {effect:+.4g} [{lo:+.4g}, {hi:+.4g}]"


def look_verdict(
    cs_low: float | None,
    cs_high: float | None,
    guardrails: Sequence[GuardrailReading],
    relative_cs: tuple[float | None, float | None] = (None, None),
    mde_pct: float | None = None,
) -> VerdictWord:
    """The rule at one look, on the decision metric's sequence (and its relative form
    ``relative_cs`` against ``mde_pct``) and the guardrails.

    Ship and do not ship come first: a sequence wholly above 0 but within the MDE is a gain
    shown, if smaller than planned for, and is shipped (once the guardrails hold; until then
    it keeps running); one wholly below 0 is a loss shown. *No difference* is the verdict only
    when neither applies and the relative sequence lies wholly within ``+-mde_pct``."""
    if any(g.status == "breached" for g in guardrails):
        return "do_not_ship"
    if cs_high is not None and cs_high < 0:
        return "do_not_ship"
    if cs_low is not None and cs_low > 0:
        return "ship" if all(g.status == "ok" for g in guardrails) else "keep_running"
    if within_mde(relative_cs[0], relative_cs[1], mde_pct):
        return "no_difference"
    return "keep_running"


def power_at(
    effect: float, se: np.ndarray | float, radius: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """Probability that a sequence of radius ``radius(se)`` around an estimate
    ~ N(effect, se^2) excludes 0 (the far side's share is negligible and left out)."""
    from scipy import stats  # here: readers of verdicts (the CLI, the console) do without it

    se = np.asarray(se, dtype=float)
    return np.asarray(stats.norm.cdf((abs(effect) - radius(se)) / se))


def any_look_power(
    effect: float,
    se: float,
    periods: int,
    *,
    df: float | None = None,
    alpha: float = 0.05,
    first_look: int = 2,
    draws: int = 200,
    rng: np.random.Generator | None = None,
) -> float:
    """The share of paths on which the verdict decides at some look, given the estimate
    ``effect`` and its ``se`` at the planned end of ``periods`` periods.

    The running estimate times its information, ``X(I) = I * estimate``, is taken as Brownian
    motion in the information ``I = 1 / se^2``, which grows like the periods seen (the
    assumption the sequence's tuning makes). Given where it ends, ``X(I_T) = effect / se^2``,
    its path is a Brownian bridge whatever the true effect, so the earlier looks are drawn as
    bridges to the end the planner simulated. At look ``t`` the estimate is ``X(I_t) / I_t``
    with SE ``se * sqrt(periods / t)``, and the verdict decides when the sequence (tuned to the
    end's SE, at the ``df`` reference) excludes 0. The end look alone is the fixed-horizon
    criterion (``horizon_multiplier``); every look before it can only add.

    Two assumptions can make it optimistic: the end's ``df`` at every look (live, an
    estimator whose ``df`` grows with the periods seen, such as ``hajek``'s blocks or
    ``did``'s placebo periods, has wider early looks), and the sequence tuned to the end's SE
    (live, it is tuned at the first look to that look's SE projected to the end)."""
    from analysis.confseq import ConfidenceSequence

    if not (math.isfinite(effect) and math.isfinite(se) and se > 0) or periods < first_look:
        return math.nan
    rng = rng if rng is not None else np.random.default_rng(0)
    looks = np.arange(first_look, periods + 1, dtype=float)
    info_end = 1.0 / se**2
    info = info_end * looks / periods
    end = effect * info_end
    # a Brownian bridge from 0 to `end` over [0, I_T], sampled at the looks in order
    steps = np.diff(np.concatenate([[0.0], info]))
    walk = np.cumsum(rng.standard_normal((draws, len(looks))) * np.sqrt(steps), axis=1)
    bridge = walk - (info / info_end)[None, :] * walk[:, -1:] + (info / info_end)[None, :] * end
    estimate = bridge / info[None, :]
    radius = ConfidenceSequence(target_se=se, alpha=alpha).radius(se * np.sqrt(periods / looks), df)
    decided = (np.abs(estimate) > np.asarray(radius)[None, :]).any(axis=1)
    return float(decided.mean())


def periods_for_power(
    effect: float,
    se: float,
    n_periods: int,
    radius: Callable[[np.ndarray], np.ndarray],
    *,
    power: float = TARGET_POWER,
    max_periods: int,
) -> int | None:
    """The fewest periods ``n >= n_periods`` at which the sequence reaches ``power`` against
    ``effect``, projecting the SE as ``se * sqrt(n_periods / n)``; None when not by
    ``max_periods``."""
    if not (math.isfinite(effect) and effect != 0 and math.isfinite(se) and se > 0):
        return None
    n = np.arange(n_periods, max(max_periods, n_periods) + 1, dtype=float)
    reached = np.nonzero(power_at(effect, se * np.sqrt(n_periods / n), radius) >= power)[0]
    return int(n[reached[0]]) if reached.size else None


def more_days(
    *,
    mde_pct: float | None,
    control_mean: float | None,
    se: float,
    n_periods: int,
    planned_periods: int,
    days_per_period: float,
    radius: Callable[[np.ndarray], np.ndarray],
) -> tuple[float | None, str | None]:
    """(days still needed for 80% power at the MDE, None) or (None, why not)."""
    if mde_pct is None:
        return None, (
            "the spec gives no mde_pct (the effect `pricelab plan` says the experiment can "
            "detect), so the days still needed are not computed"
        )
    if control_mean is None or not math.isfinite(control_mean) or control_mean == 0:
        return None, "no control mean to turn the MDE into an effect"
    if not (math.isfinite(se) and se > 0):
        return None, "no finite standard error yet"
    effect = abs(mde_pct / 100.0 * control_mean)
    cap = _HORIZON_FACTOR * max(planned_periods, n_periods)
    n = periods_for_power(effect, se, n_periods, radius, max_periods=cap)
    if n is None:
        return None, (
            f"80% power at the MDE of {mde_pct:g}% is not reached within {cap} periods at the "
            "noise measured so far"
        )
    return (n - n_periods) * days_per_period, None


def more_days_change(previous: Mapping[str, Any] | None, current: Mapping[str, Any]) -> str | None:
    """Why ``more_days`` moved between two keep-running looks, in one clause (None when it
    held, within a quarter and two days, or there is nothing to compare).

    ``more_days`` is planned afresh at every look from the standard error measured at that
    look, and a standard error from few periods is itself noisy: the days still needed move
    with it. The clause names the earlier figure and the width of the decision metric's
    sequence at both looks, the measured noise a reader can see move."""
    if previous is None or current.get("verdict") != "keep_running":
        return None
    before, now = previous.get("more_days"), current.get("more_days")
    if before is None:
        return None
    was = f"was about {math.ceil(before)} after {previous.get('n_periods')} periods"
    if now is None:
        return f"{was}; now none: {current.get('more_days_note') or 'not computed'}"
    if abs(now - before) <= max(2.0, 0.25 * before):
        return None

    def width(v: Mapping[str, Any]) -> str | None:
        low, high = v.get("relative_cs_low"), v.get("relative_cs_high")
        if low is not None and high is not None:
            return f"{100.0 * (high - low) / 2.0:.1f}%"
        low, high = v.get("cs_low"), v.get("cs_high")
        if low is not None and high is not None:
            return f"{(high - low) / 2.0:.3g}"
        return None

    a, b = width(previous), width(current)
    noise = (
        f"; the sequence's half-width went from {a} to {b} as the noise was measured again"
        if a is not None and b is not None
        else "; planned again from the noise measured at this look"
    )
    return f"{was}{noise}"


def decide(
    *,
    metric: str,
    fields: Mapping[str, Any],
    guardrails: Sequence[GuardrailReading] = (),
    alpha: float = 0.05,
    decided_at: int | None = None,
    decided: VerdictWord | None = None,
    overruled_at: int | None = None,
    mde_pct: float | None = None,
    baseline: float | None = None,
    planned_periods: int = 0,
    days_per_period: float = 1.0,
    radius: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Verdict:
    """The verdict at one look.

    ``fields`` is the decision estimate as the estimates topic publishes it
    (:func:`analysis.results.published_fields`: effect, se, cs_low/high, control_mean and the
    relative form). ``decided``/``decided_at``: an earlier look's decisive verdict, which is
    kept, except that a guardrail breached at a later look than a *ship* turns it into *do not
    ship* (the safe side: the breach also stops the experiment); ``overruled_at``: the look at
    which that happened, kept like the decision. ``radius`` is the decision sequence's
    radius as a function of the SE (for ``more_days``; None: not computed). ``baseline``: the
    metric's mean over the control cells, which turns ``mde_pct`` into an effect when the
    estimate has no control mean of its own (a difference in differences).
    """
    effect = float(fields["effect"])
    cs = (fields.get("cs_low"), fields.get("cs_high"))
    rel = (
        fields.get("relative_effect"),
        fields.get("relative_cs_low"),
        fields.get("relative_cs_high"),
    )
    n_periods = int(fields["n_periods"])
    now = look_verdict(cs[0], cs[1], guardrails, (rel[1], rel[2]), mde_pct)
    figure = _describe(metric, effect, cs, rel)
    small = (
        f"; smaller than the mde_pct of {abs(mde_pct or 0):g}%"
        if within_mde(rel[1], rel[2], mde_pct)
        else ""
    )
    breached = [g for g in guardrails if g.status == "breached"]
    open_ = [g for g in guardrails if g.status == "open"]
    at: int | None
    if decided == "ship" and overruled_at is not None:
        verdict: VerdictWord = "do_not_ship"
        at = overruled_at
        reason = (
            f"a guardrail was breached after {overruled_at} periods, after ship had been "
            f"decided ({decided_at if decided_at is not None else '?'} periods): do not ship, "
            f"kept; now {figure}"
        )
    elif decided == "ship" and breached and n_periods > (decided_at or 0):
        g = breached[0]
        verdict = "do_not_ship"
        at = n_periods
        reason = (
            f"guardrail {g.metric} breached after ship was decided "
            f"({decided_at if decided_at is not None else '?'} periods): "
            f"{_pct(g.relative_effect)} [{_pct(g.relative_cs_low)}, {_pct(g.relative_cs_high)}] "
            f"lies wholly below -{g.max_drop_pct:g}%"
        )
    elif decided is not None and decided != "keep_running":
        verdict = decided
        at = decided_at if decided_at is not None else n_periods
        reason = (
            f"decided after {at} periods and kept (the first decisive look is final); now {figure}"
        )
    else:
        verdict, at = now, (n_periods if now != "keep_running" else None)
        if breached:
            g = breached[0]
            reason = (
                f"guardrail {g.metric} breached: {_pct(g.relative_effect)} "
                f"[{_pct(g.relative_cs_low)}, {_pct(g.relative_cs_high)}] lies wholly below "
                f"-{g.max_drop_pct:g}%"
            )
        elif now == "do_not_ship":
            reason = f"{figure} lies wholly below 0{small}"
        elif now == "ship":
            reason = (
                f"{figure} lies wholly above 0"
                + (", and every guardrail holds" if guardrails else "")
                + (f"; a gain shown, though {small[2:]}" if small else "")
            )
        elif now == "no_difference":
            reason = (
                f"{figure} lies wholly within +-{abs(mde_pct or 0):g}% (the spec's mde_pct): no "
                "meaningful difference; keep the control"
            )
        elif cs[0] is not None and cs[0] > 0 and open_:
            names = ", ".join(f"{g.metric} (not below -{g.max_drop_pct:g}%)" for g in open_)
            reason = f"{figure} lies above 0, but not yet shown: {names}"
        elif cs[0] is None:
            reason = f"{figure}: no confidence sequence yet"
        else:
            reason = f"{figure} still includes 0"
    days, note = None, None
    if verdict == "keep_running":
        if cs[0] is not None and cs[0] > 0:
            note = "the decision metric is up; the verdict waits for the guardrails to be shown"
        elif radius is None:
            note = "no confidence sequence yet"
        else:
            days, note = more_days(
                mde_pct=mde_pct,
                control_mean=fields.get("control_mean")
                if fields.get("control_mean") is not None
                else baseline,
                se=float(fields.get("se") or math.nan),
                n_periods=n_periods,
                planned_periods=planned_periods,
                days_per_period=days_per_period,
                radius=radius,
            )
            if days == 0:
                note = (
                    f"80% power at the MDE of {mde_pct:g}% is reached: an effect that large would "
                    "most likely have shown; the effect is likely smaller, and keeping control "
                    "is the default"
                )
    return Verdict(
        verdict=verdict,
        metric=metric,
        estimator=str(fields["estimator"]),
        rule=rule_text(metric, alpha, guardrails, mde_pct),
        reason=reason,
        effect=effect,
        cs_low=cs[0],
        cs_high=cs[1],
        relative_effect=rel[0],
        relative_cs_low=rel[1],
        relative_cs_high=rel[2],
        n_units=int(fields["n_units"]),
        n_periods=n_periods,
        alpha=alpha,
        guardrails=tuple(guardrails),
        mde_pct=mde_pct,
        more_days=days,
        more_days_note=note,
        decided_at=at,
    )


def _shown_below(cs: tuple[float | None, float | None]) -> bool:
    """Whether a sequence lies wholly below 0."""
    high = cs[1]
    return high is not None and high < 0


def arm_look(
    cs: Mapping[str, tuple[float | None, float | None]],
    effects: Mapping[str, float] | None = None,
    at_end: bool = False,
    *,
    relative: Mapping[str, tuple[float | None, float | None]] | None = None,
    mde_pct: float | None = None,
    guardrails: Mapping[str, Sequence[GuardrailReading]] | None = None,
) -> tuple[VerdictWord, str | None]:
    """The k-arm rule at one look, on each non-control arm's sequence against the control
    (simultaneous: each at alpha / (k - 1)), its relative form (``relative``) and its
    guardrails (``guardrails``: each arm's readings against the control, at the same split).
    An arm with a breached guardrail is *barred*: never shipped, and no longer in the way of
    the others. An arm may be shipped once every guardrail of it is ``ok``:

    - **ship** arm X when X's sequence lies wholly above 0 and above every other unbarred
      arm's sequence: X beats the control and every other arm;
    - at the planned end (``at_end``), **ship** the arm with the highest ``effects`` among
      those whose sequence lies wholly above 0: it beats the control, though it is not shown
      to beat every other arm (the verdict's reason says which it is not shown to beat);
    - **do not ship** (keep control) when every arm is barred or its sequence lies wholly
      below 0;
    - **no difference** (keep control) when no unbarred arm's sequence lies wholly above 0
      and every unbarred arm's relative sequence lies wholly within ``+-mde_pct``;
    - **do not ship** (keep control) also when every unbarred arm is either shown below 0 or
      within ``+-mde_pct``, some of each: no arm can gain as much as the MDE;
    - otherwise keep running.

    Returns the word and the arm to ship (None unless ship)."""
    readings = guardrails or {}
    barred = {a for a in cs if any(g.status == "breached" for g in readings.get(a, ()))}
    cleared = {a for a in cs if all(g.status == "ok" for g in readings.get(a, ()))}
    for x, (low, _) in cs.items():
        if low is None or low <= 0 or x not in cleared:
            continue
        if all(hi is not None and low > hi for y, (_, hi) in cs.items() if y not in (x, *barred)):
            return "ship", x
    above = [a for a, (low, _) in cs.items() if low is not None and low > 0 and a not in barred]
    shippable = [a for a in above if a in cleared]
    if at_end and shippable:
        return "ship", max(shippable, key=lambda a: (effects or {}).get(a, 0.0))
    if cs and all(a in barred or _shown_below(c) for a, c in cs.items()):
        return "do_not_ship", None
    rel = relative or {}
    free = [a for a in cs if a not in barred]
    inside = {a for a in free if within_mde(*rel.get(a, (None, None)), mde_pct)}
    if not above and free and all(a in inside for a in free):
        return "no_difference", None
    below = {a for a in free if _shown_below(cs[a])}
    if not above and free and all(a in inside or a in below for a in free):
        # each arm is shown worse than the control or within +-mde_pct of it: none can gain
        # as much as the MDE (missing a true gain that large needs its sequence to miss it)
        return "do_not_ship", None
    return "keep_running", None


def arm_rule_text(
    metric: str,
    alpha: float,
    k: int,
    mde_pct: float | None = None,
    guardrails: Sequence[GuardrailReading] = (),
) -> str:
    """The k-arm rule in one sentence."""
    level = (
        f"{1 - alpha:.0%} anytime-valid confidence sequences ({k - 1} arms against control, "
        f"each at {alpha / (k - 1):.3g})"
    )
    names = sorted({f"{g.metric} not below -{g.max_drop_pct:g}%" for g in guardrails})
    guard = f" and every guardrail of it ({', '.join(names)}) is shown to hold" if names else ""
    barred = " or breaches a guardrail" if names else ""
    same = (
        f"; no difference (keep control) when no arm is shown above 0 and every arm's relative "
        f"sequence lies wholly within +-{abs(mde_pct):g}% (mde_pct), and keep control too when "
        "each lies wholly below 0 or within that band"
        if mde_pct
        else ""
    )
    return (
        f"ship an arm when its {metric} sequence lies wholly above 0 and above every other "
        f"arm's{guard}, or, at the planned end, the leading arm among those above 0; keep control "
        f"when every arm's lies wholly below 0{barred}{same}; otherwise keep running ({level})"
    )


def decide_arms(
    *,
    metric: str,
    fields: Mapping[str, Mapping[str, Any]],
    alpha: float = 0.05,
    decided: VerdictWord | None = None,
    decided_at: int | None = None,
    decided_arm: str | None = None,
    mde_pct: float | None = None,
    baseline: float | None = None,
    planned_periods: int = 0,
    days_per_period: float = 1.0,
    radius: Mapping[str, Callable[[np.ndarray], np.ndarray]] | None = None,
    periods_seen: int | None = None,
    guardrails: Mapping[str, Sequence[GuardrailReading]] | None = None,
    overruled_at: int | None = None,
) -> Verdict:
    """The verdict at one look of an experiment of k arms (:func:`arm_look`).

    ``fields``: each non-control arm's decision estimate as published (its sequence at
    alpha / (k - 1), so that the k - 1 sequences hold together with probability 1 - alpha).
    ``decided``/``decided_at``/``decided_arm``: an earlier look's decisive verdict, kept.
    ``radius``: each arm's sequence radius as a function of the SE (for ``more_days``).
    ``guardrails``: each arm's guardrail readings against the control (their sets at the
    same alpha / (k - 1) split); a breach of the shipped arm's after the ship turns it into
    *do not ship*, at ``overruled_at`` once kept, as for two arms. ``mde_pct``: the band of
    *no difference*.

    ``planned_periods``: the planned length, at which (``periods_seen``, the look's complete
    periods, blacked-out ones included; default the estimates' periods) the leading arm that
    beats the control is shipped even when it is not shown to beat every other arm.

    Error rates: with every sequence covering its arm's effect (probability at least 1 -
    alpha over the whole experiment), a ship names an arm that beats the control (and,
    before the planned end, every other arm too), and keep-control means no arm beats the
    control: a wrong decisive verdict needs a sequence that misses, so it has probability
    at most alpha; so does *no difference* while some arm's effect is at least ``mde_pct``
    either way. At the planned end the shipped arm may not be the best one; its reason
    says which arms it is not shown to beat."""
    if not fields:
        raise ValueError("a k-arm verdict needs at least one arm's estimate")
    cs = {a: (f.get("cs_low"), f.get("cs_high")) for a, f in fields.items()}
    effects = {a: float(f["effect"]) for a, f in fields.items()}
    if periods_seen is None:
        periods_seen = max(int(f["n_periods"]) for f in fields.values())
    at_end = planned_periods > 0 and periods_seen >= planned_periods
    relative = {a: (f.get("relative_cs_low"), f.get("relative_cs_high")) for a, f in fields.items()}
    readings = {a: tuple(g) for a, g in (guardrails or {}).items()}
    now, winner = arm_look(
        cs, effects, at_end, relative=relative, mde_pct=mde_pct, guardrails=readings
    )
    barred = sorted(a for a in fields if any(g.status == "breached" for g in readings.get(a, ())))
    free = [a for a in fields if a not in barred] or list(fields)
    leader = winner or max(free, key=lambda a: float(fields[a]["effect"]))
    k = len(fields) + 1

    def breach(a: str) -> str:
        g = next(g for g in readings.get(a, ()) if g.status == "breached")
        return (
            f"arm {a}'s guardrail {g.metric} {_pct(g.relative_effect)} "
            f"[{_pct(g.relative_cs_low)}, {_pct(g.relative_cs_high)}] lies wholly below "
            f"-{g.max_drop_pct:g}%"
        )

    def figure(a: str) -> str:
        f = fields[a]
        rel = (f.get("relative_effect"), f.get("relative_cs_low"), f.get("relative_cs_high"))
        return f"arm {a}: " + _describe(metric, float(f["effect"]), cs[a], rel)

    at: int | None
    verdict: VerdictWord
    named: str = leader
    n_periods = int(fields[leader]["n_periods"])
    if (
        decided == "ship"
        and decided_arm is not None
        and decided_arm in fields
        and (overruled_at is not None or (decided_arm in barred and n_periods > (decided_at or 0)))
    ):
        verdict, named = "do_not_ship", decided_arm
        at = overruled_at if overruled_at is not None else n_periods
        reason = (
            f"a guardrail of arm {decided_arm} was breached after {at} periods, after ship had "
            f"been decided ({decided_at if decided_at is not None else '?'} periods): do not "
            f"ship, kept; now {figure(decided_arm)}"
            if overruled_at is not None
            else f"{breach(decided_arm)}, after ship was decided "
            f"({decided_at if decided_at is not None else '?'} periods): do not ship"
        )
    elif decided is not None and decided != "keep_running":
        verdict = decided
        at = decided_at if decided_at is not None else n_periods
        if decided == "ship":
            if decided_arm is None or decided_arm not in fields:
                raise ValueError(f"the kept ship names arm {decided_arm!r}, not one of this look's")
            named = decided_arm
        reason = f"decided after {at} periods and kept (the first decisive look is final); now {figure(named)}"
    else:
        verdict, at = now, (n_periods if now != "keep_running" else None)
        others = [a for a in fields if a != leader and a not in barred]
        open_ = [
            f"{g.metric} (not below -{g.max_drop_pct:g}%)"
            for g in readings.get(leader, ())
            if g.status == "open"
        ]
        barred_note = f"; {'; '.join(breach(a) for a in barred)}" if barred else ""
        lead_low = cs[leader][0]

        def beaten(a: str) -> bool:
            high = cs[a][1]
            return high is not None and lead_low is not None and lead_low > high

        unbeaten = [a for a in others if not beaten(a)]
        if now == "ship" and not unbeaten:
            reason = (
                f"{figure(leader)} lies wholly above 0 and above every other arm's sequence"
                + (", and every guardrail of it holds" if readings.get(leader) else "")
                + barred_note
            )
        elif now == "ship":
            reason = (
                f"the planned {planned_periods} periods are done and {figure(leader)} lies "
                f"wholly above 0, the leading arm that does; it is not shown to beat arm(s) "
                f"{', '.join(sorted(unbeaten))}{barred_note}"
            )
        elif now == "do_not_ship" and barred:
            rest = [a for a in fields if a not in barred]
            inside = [a for a in rest if not _shown_below(cs[a])]
            reason = (
                "; ".join(breach(a) for a in barred)
                + (
                    f"; every other arm's {metric} lies wholly below 0"
                    if rest and not inside
                    else ""
                )
                + (
                    f"; every other arm's {metric} lies wholly below 0 or within "
                    f"+-{abs(mde_pct or 0):g}% of the control (arm(s) {', '.join(inside)} within)"
                    if inside
                    else ""
                )
            )
        elif now == "do_not_ship" and not all(_shown_below(cs[a]) for a in fields):
            inside = [a for a in fields if not _shown_below(cs[a])]
            worse = [a for a in fields if a not in inside]
            reason = (
                f"arm(s) {', '.join(worse)} lie wholly below 0 and arm(s) {', '.join(inside)} "
                f"wholly within +-{abs(mde_pct or 0):g}% of the control (the spec's mde_pct): "
                f"no arm can gain as much as the MDE; keep the control; the leading "
                f"{figure(leader)}"
            )
        elif now == "do_not_ship":
            reason = f"every arm's {metric} lies wholly below 0; the best, {figure(leader)}"
        elif now == "no_difference":
            reason = (
                f"every arm's {metric} lies wholly within +-{abs(mde_pct or 0):g}% of the "
                f"control (the spec's mde_pct): no meaningful difference; keep the control; the "
                f"leading {figure(leader)}{barred_note}"
            )
        elif lead_low is None:
            reason = f"{figure(leader)}: no confidence sequence yet"
        elif lead_low > 0:

            def reach(a: str) -> float:
                high = cs[a][1]
                return math.inf if high is None else float(high)

            runner = max(others, key=reach) if others else None
            if open_:
                reason = f"{figure(leader)} lies above 0, but not yet shown: {', '.join(open_)}"
            elif runner is None:
                reason = f"{figure(leader)} lies above 0{barred_note}"
            elif math.isfinite(reach(runner)):
                reason = (
                    f"{figure(leader)} lies above 0, but not yet above arm {runner}'s sequence "
                    f"(which reaches {reach(runner):+.4g})"
                )
            else:
                reason = f"{figure(leader)} lies above 0, but not yet above every other arm's"
        else:
            reason = (
                f"no arm is shown better than control yet; the leading {figure(leader)}"
                f"{barred_note}"
            )
    f = fields[named]
    days, note = None, None
    if verdict == "keep_running":
        r = None if radius is None else radius.get(named)
        named_low = cs[named][0]
        if named_low is not None and named_low > 0:
            note = (
                f"arm {named} beats control; the verdict waits until its guardrails are shown "
                "to hold"
                if any(g.status != "ok" for g in readings.get(named, ()))
                else f"arm {named} beats control; the verdict waits until it is shown to beat "
                "the other arms too"
            )
        elif r is None:
            note = "no confidence sequence yet"
        else:
            days, note = more_days(
                mde_pct=mde_pct,
                control_mean=f.get("control_mean")
                if f.get("control_mean") is not None
                else baseline,
                se=float(f.get("se") or math.nan),
                n_periods=n_periods,
                planned_periods=planned_periods,
                days_per_period=days_per_period,
                radius=r,
            )
            if note is None:
                note = f"for the leading arm, {named}, against control"
    keys = ("effect", "cs_low", "cs_high", "relative_effect", "relative_cs_low", "relative_cs_high")
    arms = tuple({"arm": a} | {key: fields[a].get(key) for key in keys} for a in sorted(fields))
    return Verdict(
        verdict=verdict,
        metric=metric,
        estimator=str(f["estimator"]),
        rule=arm_rule_text(
            metric, alpha, k, mde_pct, [g for a in sorted(readings) for g in readings[a]]
        ),
        reason=reason,
        effect=float(f["effect"]),
        cs_low=cs[named][0],
        cs_high=cs[named][1],
        relative_effect=f.get("relative_effect"),
        relative_cs_low=f.get("relative_cs_low"),
        relative_cs_high=f.get("relative_cs_high"),
        n_units=int(f["n_units"]),
        n_periods=n_periods,
        alpha=alpha,
        guardrails=tuple(g for a in sorted(readings) for g in readings[a]),
        mde_pct=mde_pct,
        more_days=days,
        more_days_note=note,
        decided_at=at,
        arm=named,
        arms=arms,
    )


def _instant(value: Any) -> datetime | None:
    try:
        at = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def latest(verdicts: Iterable[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The verdict of the latest look among ``verdicts`` (by ``as_of``; of one look, the last
    given), or None: what every reader shows (``pricelab estimates``, the report, the notebook
    API), whatever order two workers' messages arrived in."""
    best: tuple[datetime, int] | None = None
    out: dict[str, Any] | None = None
    for i, v in enumerate(verdicts):
        at = _instant(v.get("as_of")) or datetime.min.replace(tzinfo=UTC)
        if best is None or (at, i) >= best:
            best, out = (at, i), dict(v)
    return out


#: the fraction that marks a kept *no difference*: -(n + 1/2); a worker that predates it reads
#: -n, do not ship: the control is kept either way
_SAME_FRACTION = 0.5


def encode_decision(verdict: VerdictWord, n_periods: int) -> float:
    """A decisive verdict and its look as one number (the tuning store keeps floats):
    +n for ship after n periods, -n for do not ship, -(n + 1/2) for no difference."""
    if verdict == "keep_running":
        raise ValueError("only a decisive verdict is kept")
    if verdict == "no_difference":
        return -(float(n_periods) + _SAME_FRACTION)
    return float(n_periods if verdict == "ship" else -n_periods)


#: the fraction of a kept k-arm *ship* that names its arm: code = n + (index + 1) / 64, exact
#: in binary floating point for the 8 arms a spec may have, so the decision and its arm are one
#: value, written once (first writer wins), and :func:`decode_decision` reads its n as ever
_ARM_FRACTION = 64


def encode_arm_decision(verdict: VerdictWord, n_periods: int, index: int | None) -> float:
    """:func:`encode_decision` with the shipped arm's index in the spec's arms (k arms)."""
    code = encode_decision(verdict, n_periods)
    if verdict != "ship" or index is None:
        return code
    if not 0 <= index < _ARM_FRACTION - 1:
        raise ValueError(f"arm index {index} out of range")
    return code + (index + 1) / _ARM_FRACTION


def decode_arm(code: float | None) -> int | None:
    """The arm index a kept k-arm *ship* names (None: none, or not a ship)."""
    if code is None or not math.isfinite(code) or code <= 0:
        return None
    step = round((code - math.floor(code)) * _ARM_FRACTION)
    return step - 1 if step > 0 else None


def decode_decision(code: float | None) -> tuple[VerdictWord | None, int | None]:
    """The inverse of :func:`encode_decision` (None: nothing decided yet)."""
    if code is None or not math.isfinite(code) or code == 0:
        return None, None
    if code < 0 and math.isclose(-code - math.floor(-code), _SAME_FRACTION):
        return "no_difference", int(-code)
    return ("ship" if code > 0 else "do_not_ship"), int(abs(code))
