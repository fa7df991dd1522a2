"""An experiment's health, as the console's Health section shows it: seven checks, each with a
flag (``ok``, ``warn`` or ``problem``) and one plain sentence, and the traffic over time.

- **sample ratio per arm:** each arm's independent draws against the spec's allocations, by
  the report's own chi-square (``analysis.report.arm_sample_ratio_check``);
- **sales flowing in:** the units of each completed period (the panel the analysis worker
  reads) and the sales counted so far by status (``Store.totals``, as the demo reads them);
- **dead letters and late sales:** the dead-letter topic by reason, read by
  ``pricelab dead-letters``' own reader (a sale refused as ``late`` is one of them), the
  experiment's own traced by the product its sale names;
- **flip lateness:** how long after its boundary each flip was announced, from the audit
  trail's ``started`` and ``flipped`` records and the controller's period arithmetic, and the
  boundaries caught up late (``missed_flips``, kept with the state);
- **freshness of the last look:** the latest estimate's ``as_of`` against the stack's clock;
- **balance:** the report's standardised mean differences of the covariates
  (``analysis.report.covariate_balance``), and the products in each arm;
- **multiple exposure** and **traffic over time**: streams.client.exposure.

The rules (which figure makes which flag) are the pure functions below; :func:`read_health`
does the reading. The thresholds are the report's and the alerts' where they have one.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from controller.periods import period_start
from controller.spec import ExperimentSpec

#: what ``read_health`` opens on Kafka (``TopicSettings`` fields; no consumer group): the
#: dead letters, read by streams.client.dead_letters (which also writes sales, for a replay:
#: the console never replays, so its grants come from here)
KAFKA_READS = ("dead_letter",)
KAFKA_WRITES: tuple[str, ...] = ()

OK, WARN, PROBLEM = "ok", "warn", "problem"
FLAGS = (OK, WARN, PROBLEM)

#: the sample-ratio p-value below which the draws are a problem: the report's (analysis/
#: report/html.py); below SRM_WARN, one to watch
SRM_PROBLEM = 0.001
SRM_WARN = 0.01
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
    a problem, below :data:`SRM_WARN` a warning; no randomised draw yet is nothing to check."""
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
    names one of its products, :func:`letters_of`): none is fine; any is a warning that names
    each reason. ``fleet``: the letters on the topic in all (every experiment's, and those
    that name no product), said beside them."""
    title = "Dead letters and late sales"
    total = sum(by_reason.values())
    late = by_reason.get("late", 0)
    detail = {"by_reason": dict(by_reason), "late": late, "total": total, "fleet": fleet}
    others = fleet - total if fleet is not None else 0
    beside = (
        f"; the topic holds {others} more, of other experiments' products or naming none: "
        "`pricelab dead-letters` shows them"
        if others
        else ""
    )
    if not total:
        return Check("dead_letters", title, OK,
                     f"No dead letter and no late sale names a product of this experiment"
                     f"{beside}.", detail)  # fmt: skip
    reasons = ", ".join(f"{n} {r}" for r, n in sorted(by_reason.items(), key=lambda kv: -kv[1]))
    shown = beside or ": `pricelab dead-letters` shows them"
    return Check("dead_letters", title, WARN,
                 f"{total} dead letter(s) name a product of this experiment ({reasons}), "
                 f"{late} of them late sales{shown}.", detail)  # fmt: skip


def letters_of(
    letters: Mapping[tuple[str, str | None], int], products: frozenset[str]
) -> dict[str, int]:
    """The dead letters whose sale names one of ``products``, by reason (``letters``: by
    reason and product, :func:`read_dead_letters`). A letter is traced by its sale's product,
    as the sales path routes a sale: one whose bytes name no product traces to none."""
    out: dict[str, int] = {}
    for (reason, product), n in letters.items():
        if product is not None and product in products:
            out[reason] = out.get(reason, 0) + n
    return out


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


# --------------------------------------------------------------------------- figures
def flip_lateness(spec: ExperimentSpec, records: Sequence[Mapping[str, Any]],
                  created_ms: int = 0) -> dict[int, float]:  # fmt: skip
    """Seconds from each period's boundary (the controller's ``period_start``) to the trail's
    record that announced its flip (``started``, ``flipped``). A boundary that passed before
    the experiment was created is a backfill, not a late flip: left out, as the controller's
    own lateness metric leaves it out."""
    out: dict[int, float] = {}
    for r in records:
        d = r.get("detail") or {}
        k = d.get("period")
        if r.get("kind") not in ("started", "flipped") or not isinstance(k, int) or k < 0:
            continue
        try:
            at = datetime.fromisoformat(str(r.get("at")))
        except ValueError:
            continue
        boundary = period_start(spec, k)
        if created_ms and boundary.timestamp() * 1000 < created_ms:
            continue
        out.setdefault(k, max(0.0, (at - boundary).total_seconds()))
    return out


def panel_figures(
    df: pd.DataFrame, spec: ExperimentSpec, cut: Mapping[int, str] | None = None
) -> dict[str, Any]:
    """What the checks take from the panel: the units of each completed period, the per-arm
    sample ratio and the covariates' balance (the report's functions), the products in
    each arm in the last period, each period's traffic by arm, and the multiple exposure of
    the periods a pause, stop or freeze ``cut`` (streams.client.exposure)."""
    from analysis.report import arm_sample_ratio_check, covariate_balance, normalise_panel
    from streams.client.exposure import exposed_cells, traffic
    from streams.client.report import allocations_of, with_unit_costs

    if df.empty:
        return {"units_by_period": {}, "srm": None, "smd": {}, "products_per_arm": {},
                "traffic": [], "exposure": multiple_exposure_check(exposed_cells(df, {}, ""))}  # fmt: skip
    d = normalise_panel(with_unit_costs(df, spec))
    arms = spec.arm_list()
    control = next(a.name for a in arms if a.control)
    if "arm" not in d.columns:  # a two-arm shorthand: its arm is its treatment
        treated = next(a.name for a in arms if not a.control)
        d["arm"] = d["treated"].map({1: treated, 0: control})
    d["arm"] = d["arm"].astype(str)
    units = d.groupby("period")["units"].sum()
    srm = arm_sample_ratio_check(d, allocations_of(spec) or {}, control)
    bal = covariate_balance(d)
    last = d[d["period"] == d["period"].max()]
    per_arm = last.groupby("arm")["product"].nunique()
    return {
        "units_by_period": {int(k): float(v) for k, v in units.items()},
        "srm": srm,
        "smd": {str(r.covariate): float(r.smd) for r in bal.itertuples()},
        "products_per_arm": {a.name: int(per_arm.get(a.name, 0)) for a in arms},
        "traffic": traffic(d, [a.name for a in arms]),
        "exposure": multiple_exposure_check(exposed_cells(d, cut or {}, control)),
    }


# --------------------------------------------------------------------------- reading
async def panel_source(settings: Any, store: Any) -> Any:
    """The panel source the checks read (the analysis worker's ``RedisPanelSource``, without
    its lateness: it reads and never compacts), on the stack's clock; keep it between calls,
    so that a compacted period is read once."""
    from controller.panel_source import RedisPanelSource
    from streams.client.stack_clock import stack_clock

    return RedisPanelSource(store, await stack_clock(settings, store))


async def read_dead_letters(settings: Any, idle: float) -> dict[tuple[str, str | None], int]:
    """The dead letters on the topic by reason and the product their sale names (None: its
    bytes name none), read by ``pricelab dead-letters``' reader."""
    from streams.client.dead_letters import read_letters

    out: dict[tuple[str, str | None], int] = {}
    for x in await read_letters(settings, idle):
        key = (x.reason, sale_product(x.original))
        out[key] = out.get(key, 0) + 1
    return out


def sale_product(original: bytes) -> str | None:
    """The product a dead letter's original sale names (a JSON object's ``product`` text),
    or None when its bytes are not such a sale."""
    import json

    try:
        doc = json.loads(original)
    except (ValueError, UnicodeDecodeError):
        return None
    product = doc.get("product") if isinstance(doc, dict) else None
    return product if isinstance(product, str) else None


async def read_health(
    settings: Any,
    store: Any,
    panels: Any,
    exp_id: str,
    estimates: Sequence[Mapping[str, Any]],
    trail: Sequence[Mapping[str, Any]],
    letters: Mapping[tuple[str, str | None], int],
) -> dict[str, Any]:
    """The seven checks of ``exp_id`` (see the module), the worst flag as ``flag``, and the
    traffic of each completed period by arm (``traffic``, the spec's ``arms`` in order).
    ``panels``: :func:`panel_source` (kept between calls: a compacted period is read once);
    ``estimates``: the experiment's estimate messages read so far; ``trail``: its audit
    trail's records; ``letters``: the dead letters by reason and product
    (:func:`read_dead_letters`), of which this experiment's products' are checked."""
    from controller.periods import n_periods, period_index
    from streams.client.exposure import cut_periods, exclusion_edges
    from streams.client.known import known
    from streams.client.stack_clock import stack_clock

    await known(store, exp_id)
    clock = await stack_clock(settings, store)
    now = clock.now()
    state = await store.get_experiment(exp_id)
    spec = state.spec
    running = state.phase == "running"
    done = max(0, min(period_index(spec, now), n_periods(spec))) if now >= spec.start else 0
    edges = exclusion_edges(await store.windows(exp_id), await store.freezes(), exp_id)
    figures = panel_figures(await panels.panel(exp_id, now), spec, cut_periods(spec, edges, done))
    totals = await store.totals(exp_id)
    events = {k.removeprefix("events:"): v for k, v in totals.items() if k.startswith("events:")}
    srm = figures["srm"]
    look = last_look(estimates)
    as_of = datetime.fromisoformat(look) if look else None
    checks = [
        sample_ratio_check(
            srm.observed if srm else None, srm.expected if srm else None,
            srm.statistic if srm else None, srm.pvalue if srm else None,
            srm.level if srm else "product",
        ),
        sales_check(figures["units_by_period"], events, running),
        dead_letters_check(letters_of(letters, spec.units()), sum(letters.values())),
        flip_check(flip_lateness(spec, trail, state.created_ms), state.missed_flips),
        freshness_check(
            as_of, now, spec.period, timedelta(seconds=settings.analysis_interval), running, done
        ),
        balance_check(figures["smd"], figures["products_per_arm"]),
        figures["exposure"],
    ]  # fmt: skip
    return {
        "experiment": exp_id,
        "now": now.isoformat(),
        "flag": worst([c.flag for c in checks]),
        "checks": [c.as_dict() for c in checks],
        "arms": [a.name for a in spec.arm_list()],
        "traffic": figures["traffic"],
    }


def last_look(estimates: Sequence[Mapping[str, Any]]) -> str | None:
    """The latest ``as_of`` among an experiment's estimate messages (None: no look yet)."""
    return max((str(d["as_of"]) for d in estimates if d.get("as_of")), default=None)


def list_flags(
    row: Mapping[str, Any], as_of: str | None, now: datetime, settings: Any
) -> dict[str, str]:
    """The health flags the experiments list shows for a row of ``read_overviews``: those
    that need no panel and no topic read (the freshness of the last look, missed flips), by
    the same rules as the page's checks, and the worse of the two as ``flag``."""
    look = freshness_check(
        datetime.fromisoformat(as_of) if as_of else None,
        now,
        timedelta(seconds=float(row["period_seconds"])),
        timedelta(seconds=settings.analysis_interval),
        row["state"] == "running",
        max(0, int(row.get("period", -1))),
    )
    flips = flip_check({}, int(row.get("missed_flips") or 0))
    return {"freshness": look.flag, "flips": flips.flag, "flag": worst([look.flag, flips.flag])}
