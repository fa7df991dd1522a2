"""An experiment's health, as the console's Health section shows it: seven checks, each with a
flag (``ok``, ``warn`` or ``problem``) and one plain sentence, and the traffic over time.

- **sample ratio per arm:** each arm's independent draws against the spec's allocations, by
  the report's own chi-square (``analysis.report.arm_sample_ratio_check``); an adaptive
  ladder's against the probabilities recorded for each period (streams.client.adaptive_health);
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

The rules (which figure makes which flag, and its sentence) are pure functions of their own,
in streams.client.health_rules, re-exported here; this module takes the figures from the panel
and the trail (:func:`panel_figures`, :func:`flip_lateness`, :func:`letters_of`) and does the
reading (:func:`read_health`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from controller.periods import period_start
from controller.spec import ExperimentSpec
from streams.client.adaptive_health import recorded_sample_ratio_check
from streams.client.health_rules import (
    FLAGS,
    FLIP_LATE_PROBLEM,
    FLIP_LATE_WARN,
    OK,
    ONE_EXPERIMENT,
    PROBLEM,
    RECENT_FLIPS,
    SALES_DROP,
    SMD_PROBLEM,
    SMD_WARN,
    SRM_PROBLEM,
    SRM_WARN,
    STALE_AFTER,
    WARN,
    Check,
    balance_check,
    dead_letters_check,
    flip_check,
    freshness_check,
    multiple_exposure_check,
    sales_check,
    sample_ratio_check,
    worst,
)

#: the rules are re-exported: the console and the tests import every check from here
__all__ = [
    "FLAGS", "FLIP_LATE_PROBLEM", "FLIP_LATE_WARN", "KAFKA_READS", "KAFKA_WRITES", "OK",
    "ONE_EXPERIMENT", "PROBLEM", "RECENT_FLIPS", "SALES_DROP", "SMD_PROBLEM", "SMD_WARN",
    "SRM_PROBLEM", "SRM_WARN", "STALE_AFTER", "WARN", "Check", "balance_check",
    "dead_letters_check", "flip_check", "flip_lateness", "freshness_check", "last_look",
    "letters_of", "list_flags", "multiple_exposure_check", "panel_figures", "panel_source",
    "read_dead_letters", "read_health", "sale_product", "sales_check", "sample_ratio_check",
    "tally", "worst",
]  # fmt: skip

#: what ``read_health`` opens on Kafka (``TopicSettings`` fields; no consumer group): the
#: dead letters, read by streams.client.dead_letters (which also writes sales, for a replay:
#: the console never replays, so its grants come from here)
KAFKA_READS = ("dead_letter",)
KAFKA_WRITES: tuple[str, ...] = ()


# --------------------------------------------------------------------------- figures
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
    df: pd.DataFrame,
    spec: ExperimentSpec,
    cut: Mapping[int, str] | None = None,
    probabilities: Mapping[int, Sequence[float]] | None = None,
) -> dict[str, Any]:
    """What the checks take from the panel: the units of each completed period, the per-arm
    sample ratio (an adaptive ladder's against its recorded ``probabilities``, by period:
    ``srm_recorded``) and the covariates' balance (the report's functions), the products in
    each arm in the last period, each period's traffic by arm, and the multiple exposure of
    the periods a pause, stop or freeze ``cut`` (streams.client.exposure)."""
    from analysis.report import arm_sample_ratio_check, covariate_balance, normalise_panel
    from streams.client.exposure import exposed_cells, traffic
    from streams.client.report import allocations_of, with_unit_costs

    if df.empty:
        return {"units_by_period": {}, "srm": None, "adaptive": spec.adaptive is not None,
                "srm_recorded": None,
                "smd": {}, "products_per_arm": {},
                "traffic": [], "exposure": multiple_exposure_check(exposed_cells(df, {}, ""))}  # fmt: skip
    d = normalise_panel(with_unit_costs(df, spec))
    arms = spec.arm_list()
    control = next(a.name for a in arms if a.control)
    if "arm" not in d.columns:  # a two-arm shorthand: its arm is its treatment
        treated = next(a.name for a in arms if not a.control)
        d["arm"] = d["treated"].map({1: treated, 0: control})
    d["arm"] = d["arm"].astype(str)
    units = d.groupby("period")["units"].sum()
    # an adaptive ladder's shares follow its looks: a check against the spec's allocations
    # would call every adaptation a broken pipeline; its draws are checked against the
    # probabilities recorded for their periods instead
    adaptive = spec.adaptive is not None
    srm = None if adaptive else arm_sample_ratio_check(d, allocations_of(spec) or {}, control)
    recorded = None
    if adaptive:
        from streams.client.adaptive_health import draw_counts, recorded_sample_ratio

        counts, level = draw_counts(d, spec)
        names = [a.name for a in arms]
        recorded = recorded_sample_ratio(counts, probabilities or {}, names, level)
    bal = covariate_balance(d)
    last = d[d["period"] == d["period"].max()]
    per_arm = last.groupby("arm")["product"].nunique()
    return {
        "units_by_period": {int(k): float(v) for k, v in units.items()},
        "srm": srm,
        "adaptive": adaptive,
        "srm_recorded": recorded,
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
    bytes name none), read by ``pricelab dead-letters``' reader from the topic's start
    (the console keeps one follower instead: streams.client.letter_follower)."""
    from streams.client.dead_letters import read_letters

    return tally({}, ((x.reason, x.original) for x in await read_letters(settings, idle)))


def tally(
    counts: dict[tuple[str, str | None], int], letters: Iterable[tuple[str, bytes]]
) -> dict[tuple[str, str | None], int]:
    """``counts`` with each letter (its reason and its original's bytes) added, by reason
    and the product its sale names (:func:`sale_product`; None: none)."""
    for reason, original in letters:
        key = (reason, sale_product(original))
        counts[key] = counts.get(key, 0) + 1
    return counts


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
    recorded = await panels.allocations(exp_id) if spec.adaptive is not None else None
    figures = panel_figures(
        await panels.panel(exp_id, now), spec, cut_periods(spec, edges, done), recorded
    )
    totals = await store.totals(exp_id)
    events = {k.removeprefix("events:"): v for k, v in totals.items() if k.startswith("events:")}
    srm = figures["srm"]
    look = last_look(estimates)
    as_of = datetime.fromisoformat(look) if look else None
    checks = [
        recorded_sample_ratio_check(figures["srm_recorded"]) if figures["adaptive"] else
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
