"""The Health section's rules: which figure makes which flag, and the sentence that says it.

Seven checks, each a pure function from figures to a :class:`Check` (a flag, ``ok``, ``warn``
or ``problem``, and one plain sentence): the sample ratio per arm (an adaptive ladder's in
streams.client.adaptive_health), sales flowing in, dead
letters and late sales, flip lateness, the freshness of the last look, balance and multiple
exposure. The thresholds are the report's and the alerts' where they have one.
streams.client.health reads the figures (the panel, the totals, the topics) and calls these;
it re-exports every name here, so its importers need not know the split.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

# the flags, and the sample-ratio p-values below which the draws are a problem (SRM_PROBLEM)
# or one to watch (SRM_WARN): one definition, the report's too (analysis.sample_ratio)
from analysis.sample_ratio import OK, PROBLEM, SRM_PROBLEM, SRM_WARN, WARN

FLAGS = (OK, WARN, PROBLEM)

#: a flip announced this long after its boundary: the PricelabLateFlip alert's minute
#: (deploy/prometheus/alerts.yml) is a problem; ten seconds, one to watch
FLIP_LATE_WARN = 10.0
FLIP_LATE_PROBLEM = 60.0
#: the flips whose lateness is judged: the most recent
RECENT_FLIPS = 10
#: a look older than this is a problem whatever the period: the PricelabEstimateStale alert's
STALE_AFTER = timedelta(hours=3)
#: standardised mean differences: above 0.1 worth a look, above 0.25 imbalanced (the rules
#: of thumb of Stuart 2010, "Matching methods for causal inference", Statistical Science)
SMD_WARN = 0.1
SMD_PROBLEM = 0.25
#: a completed period with fewer units than this share of the median of the periods before
SALES_DROP = 0.5


@dataclass(frozen=True)
class Check:
    """One health check: what it is, its flag and a sentence that says it in words."""

    key: str
    title: str
    flag: str
    sentence: str
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def worst(flags: Sequence[str]) -> str:
    """The worst of ``flags`` (``ok`` for none)."""
    return max(flags, key=FLAGS.index, default=OK)


# --------------------------------------------------------------------------- rules
def sample_ratio_check(
    observed: Mapping[str, int] | None,
    expected: Mapping[str, float] | None,
    statistic: float | None,
    pvalue: float | None,
    level: str = "product",
) -> Check:
    """The per-arm sample-ratio check: its chi-square's p-value below :data:`SRM_PROBLEM` is
    a problem, below :data:`SRM_WARN` a warning; no randomised draw yet is nothing to check.
    An adaptive ladder is checked against its recorded probabilities instead
    (streams.client.adaptive_health), not against the spec's allocations."""
    title = "Sample ratio per arm"
    if not observed or not expected or pvalue is None or statistic is None:
        return Check("sample_ratio", title, OK, "No randomised draw yet: nothing to check.")
    n = sum(observed.values())
    arms = ", ".join(f"{a} {observed[a]} (expected {expected[a]:.1f})" for a in expected)
    figures = (
        f"chi-square {statistic:.2f} on {len(expected) - 1} degree(s) of freedom, "
        f"p = {pvalue:.3g}, over {n} independent draws ({level}s): {arms}"
    )
    detail = {"observed": dict(observed), "expected": dict(expected), "statistic": statistic,
              "pvalue": pvalue, "n": n, "level": level}  # fmt: skip
    if pvalue < SRM_PROBLEM:
        return Check("sample_ratio", title, PROBLEM,
                     f"The arms' draws differ from the spec's allocations ({figures}): "
                     "investigate the assignment pipeline before trusting the estimates.",
                     detail)  # fmt: skip
    if pvalue < SRM_WARN:
        return Check("sample_ratio", title, WARN,
                     f"The arms' draws are at the edge of the spec's allocations ({figures}): "
                     "watch the next looks.", detail)  # fmt: skip
    return Check("sample_ratio", title, OK,
                 f"The arms' draws match the spec's allocations ({figures}).", detail)  # fmt: skip


def sales_check(
    units_by_period: Mapping[int, float], events: Mapping[str, float], running: bool
) -> Check:
    """Sales flowing in: while the experiment runs, a last completed period without a unit
    is a problem, and one under :data:`SALES_DROP` of the median of the periods before a
    warning. ``events``: the sales counted so far by status (``Store.totals``' ``events:``)."""
    title = "Sales flowing in"
    counted = int(sum(events.values()))
    by_status = ", ".join(f"{int(v)} {k}" for k, v in sorted(events.items()) if v)
    so_far = f"{counted} sale(s) counted so far" + (f" ({by_status})" if by_status else "")
    detail = {"units_by_period": {int(k): v for k, v in units_by_period.items()},
              "events": dict(events)}  # fmt: skip
    if not units_by_period:
        return Check("sales", title, OK, f"No completed period yet; {so_far}.", detail)
    periods = sorted(units_by_period)
    last = periods[-1]
    units = units_by_period[last]
    before = [units_by_period[k] for k in periods[:-1]]
    head = f"{units:g} unit(s) in the last completed period ({last})"
    if running and units <= 0:
        return Check("sales", title, PROBLEM,
                     f"No unit sold in the last completed period ({last}); {so_far}: are the "
                     "shop's sales reaching the sales topic?", detail)  # fmt: skip
    if running and before and units < SALES_DROP * statistics.median(before):
        return Check("sales", title, WARN,
                     f"{head}, under half the median of the periods before "
                     f"({statistics.median(before):g}); {so_far}.", detail)  # fmt: skip
    return Check("sales", title, OK, f"{head}; {so_far}.", detail)


def dead_letters_check(by_reason: Mapping[str, int], fleet: int | None = None) -> Check:
    """Dead letters and late sales of this experiment (``by_reason``: the letters whose sale
    names one of its products, streams.client.health.letters_of): none is fine; any is a
    warning that names each reason. ``fleet``: the letters on the topic in all (every experiment's, and those
    that name no product), said beside them."""
    title = "Dead letters and late sales"
    total = sum(by_reason.values())
    late = by_reason.get("late", 0)
    detail = {"by_reason": dict(by_reason), "late": late, "total": total, "fleet": fleet}
    others = fleet - total if fleet is not None else 0
    beside = (
        f"; the topic holds {others} more, of other experiments' products or naming none"
        if others
        else ""
    )
    if not total:
        return Check("dead_letters", title, OK,
                     f"No dead letter and no late sale names a product of this experiment"
                     f"{beside}.", detail)  # fmt: skip
    reasons = ", ".join(f"{n} {r}" for r, n in sorted(by_reason.items(), key=lambda kv: -kv[1]))
    return Check("dead_letters", title, WARN,
                 f"{total} dead letter(s) name a product of this experiment ({reasons}), "
                 f"{late} of them late sales{beside}: an operator can read and replay them "
                 "from the dead-letter topic.", detail)  # fmt: skip


def flip_check(lateness: Mapping[int, float], missed: int) -> Check:
    """Flip lateness: a boundary caught up late (a missed flip), or one of the last
    :data:`RECENT_FLIPS` flips announced more than :data:`FLIP_LATE_PROBLEM` seconds after
    its boundary, is a problem; more than :data:`FLIP_LATE_WARN` seconds, a warning.
    ``lateness``: seconds after its boundary, by period."""
    title = "Flip lateness"
    recent = {k: lateness[k] for k in sorted(lateness)[-RECENT_FLIPS:]}
    detail = {"lateness": recent, "missed_flips": missed}
    if missed:
        return Check("flips", title, PROBLEM,
                     f"{missed} period boundar{'y was' if missed == 1 else 'ies were'} caught "
                     "up late (missed flips): pricing ran the period before's assignments "
                     "meanwhile.", detail)  # fmt: skip
    if not recent:
        return Check("flips", title, OK, "No flip yet.", detail)
    last = max(recent)
    late_k = max(recent, key=lambda k: recent[k])
    head = (
        f"the last flip (period {last}) came {recent[last]:.1f} s after its boundary; the "
        f"latest of the last {len(recent)}, period {late_k}'s, {recent[late_k]:.1f} s"
    )
    if recent[late_k] > FLIP_LATE_PROBLEM:
        return Check("flips", title, PROBLEM, f"Flips are late: {head}.", detail)
    if recent[late_k] > FLIP_LATE_WARN:
        return Check("flips", title, WARN, f"Flips are slow: {head}.", detail)
    return Check("flips", title, OK, f"Flips are on time: {head}.", detail)


def freshness_check(
    as_of: datetime | None,
    now: datetime,
    period: timedelta,
    interval: timedelta,
    running: bool,
    periods_done: int,
) -> Check:
    """How fresh the last look is: while the experiment runs, a look older than both a
    period and three analysis cycles is a warning, and one older than both two periods and
    :data:`STALE_AFTER` a problem. No look yet is a warning once two periods are done (the
    first look needs them)."""
    title = "Freshness of the last look"
    fresh, stale = max(period, 3 * interval), max(2 * period, STALE_AFTER)
    if as_of is None:
        detail: dict[str, Any] = {"as_of": None, "age_seconds": None}
        if running and periods_done >= 2:
            return Check("freshness", title, WARN,
                         f"No look yet, although {periods_done} periods are done: is the "
                         "analysis worker running?", detail)  # fmt: skip
        return Check("freshness", title, OK,
                     "No look yet: the first comes when the first periods are done.",
                     detail)  # fmt: skip
    age = now - as_of
    detail = {"as_of": as_of.isoformat(), "age_seconds": age.total_seconds()}
    head = f"The last look, as of {as_of.isoformat()}, is {_duration(age)} old"
    if not running:
        return Check("freshness", title, OK, f"{head}; the experiment is not running.", detail)
    if age > stale:
        return Check("freshness", title, PROBLEM,
                     f"{head}: the analysis worker has not looked for over {_duration(stale)}.",
                     detail)  # fmt: skip
    if age > fresh:
        return Check("freshness", title, WARN,
                     f"{head}: more than {_duration(fresh)} since the look before.",
                     detail)  # fmt: skip
    return Check("freshness", title, OK, f"{head}.", detail)


def balance_check(smd: Mapping[str, float], products_per_arm: Mapping[str, int]) -> Check:
    """Balance: the largest absolute standardised mean difference above :data:`SMD_PROBLEM`
    is a problem, above :data:`SMD_WARN` a warning; with no covariate, the products in each
    arm alone (no flag to raise)."""
    title = "Balance"
    arms = ", ".join(f"{a} {n}" for a, n in products_per_arm.items())
    per_arm = f"products per arm: {arms}" if arms else "no product in an arm yet"
    finite = {c: v for c, v in smd.items() if v is not None and math.isfinite(v)}
    detail = {"smd": finite, "products_per_arm": dict(products_per_arm)}
    if not finite:
        return Check("balance", title, OK,
                     f"No covariate to compare (no product characteristic, no pre-period); "
                     f"{per_arm}.", detail)  # fmt: skip
    name = max(finite, key=lambda c: abs(finite[c]))
    head = f"the largest standardised mean difference is {finite[name]:+.2f} ({name}); {per_arm}"
    if abs(finite[name]) > SMD_PROBLEM:
        return Check("balance", title, PROBLEM, f"The arms are imbalanced: {head}.", detail)
    if abs(finite[name]) > SMD_WARN:
        return Check("balance", title, WARN, f"The arms are slightly imbalanced: {head}.", detail)
    return Check("balance", title, OK, f"The arms are balanced: {head}.", detail)


#: the sentence on two experiments at once: the store's claim rule, not a reading
ONE_EXPERIMENT = (
    "A product is in one experiment at a time: the controller refuses a spec whose products "
    "a running or paused experiment holds."
)


def multiple_exposure_check(figures: Mapping[str, Any]) -> Check:
    """Multiple exposure (streams.client.exposure): ``figures``, its ``exposed_cells``. A
    multiply exposed product-period the panel did not black out is a problem (an estimate
    would mix two arms' prices); any that it did is a warning (those cells are lost to the
    estimates); none is fine."""
    title = "Multiple exposure"
    detail = dict(figures)
    cells, products, open_cells = figures["cells"], figures["products"], figures["not_blacked_out"]
    if not cells:
        return Check("exposure", title, OK,
                     f"No product was in two arms within one period. {ONE_EXPERIMENT}", detail)  # fmt: skip
    which = ", ".join(f"{k} ({kind})" for k, kind in figures["periods"].items())
    head = (
        f"{cells} product-period(s) of {products} product(s) saw an arm's price and then the "
        f"control's, or the reverse, within one period: period(s) {which}"
    )
    if open_cells:
        return Check("exposure", title, PROBLEM,
                     f"{head}; {open_cells} of them are not blacked out, so an estimate mixes "
                     "two arms' prices.", detail)  # fmt: skip
    return Check("exposure", title, WARN,
                 f"{head}; all are blacked out, so the estimates leave them out. "
                 f"{ONE_EXPERIMENT}", detail)  # fmt: skip


def _duration(d: timedelta) -> str:
    s = d.total_seconds()
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    if s < 2 * 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"
