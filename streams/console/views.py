"""What the console's API returns, put together from the client's views (streams.client):
the experiments with their latest verdicts, and one experiment's overview, verdict,
scorecard and history. The pages are templates over these same documents.

Nothing here computes a figure or words a verdict: the overview is
``streams.client.commands.read_overview``'s, the verdict's lines are
``streams.client.estimates.render_verdict``'s, the scorecard, the segments and the elasticity are
``streams.client.results.results_view``'s (``latest_of``'s choice), an adaptive ladder's
look is ``streams.client.adaptive.adaptive_view``'s and the history is
``streams.client.history.read_trail``'s and the design's schedule is
``streams.client.launch.schedule_preview``'s.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from controller.settings import Settings
from controller.store import Store
from streams.client.adaptive import adaptive_view
from streams.client.commands import (
    read_freezes,
    read_overview,
    read_overviews,
)
from streams.client.drafts import read_drafts
from streams.client.estimates import (
    is_verdict,
    latest_demand,
    latest_verdict,
    render_demand,
    render_verdict,
)
from streams.client.health import last_look, list_flags
from streams.client.history import TrailFollower, latest_decision, read_trail
from streams.client.known import known
from streams.client.launch import schedule_preview
from streams.client.results import results_view
from streams.client.stack_clock import stack_clock
from streams.console.feed import EstimatesFeed

#: the status tabs of the experiments list, in order (``all``: no filter), and the drafts
#: (specs saved, not launched: streams.client.drafts)
TABS = ("all", "running", "created", "paused", "stopped", "ended", "drafts")

#: records of the audit history a page
HISTORY_PAGE = 50

#: the spec's fields that list every product (or pair of products): the design section gives
#: their sizes, not their items (an experiment may have a million products)
_PER_PRODUCT = ("products", "clusters", "unit_costs", "substitutes", "reference_prices")


def design_view(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec as ``pricelab experiment show`` gives it, each per-product field by its size."""
    out: dict[str, Any] = {}
    for key, value in spec.items():
        if key in _PER_PRODUCT:
            out[key] = f"{len(value or ())} entries"
        elif isinstance(value, dict) and any(k in _PER_PRODUCT for k in value):
            out[key] = design_view(value)  # a design's own block (e.g. triggered)
        else:
            out[key] = value
    return out


#: each shown experiment's schedule preview: a stored spec never changes, and a big one's
#: draws take a while, so each is counted once (the newest few kept). Kept with the spec it
#: was counted from: another spec under the same id and creation time (a re-created
#: experiment, another store) is counted anew
_SCHEDULES: dict[tuple[str, int], tuple[Any, dict[str, Any]]] = {}
_SCHEDULES_KEPT = 64


async def schedule_view(store: Store, exp_id: str) -> dict[str, Any]:
    """A stored experiment's schedule preview (``streams.client.launch.schedule_preview``,
    what the "New experiment" page shows before its launch), off the event loop. The page
    fetches it on its own once it has loaded: a 1,000,000-product experiment's first one
    takes seconds (about 40 ms a period per 100,000 products)."""
    await known(store, exp_id)
    state = await store.get_experiment(exp_id)
    key = (state.spec.id, state.created_ms)
    made = _SCHEDULES.get(key)
    if made is None or made[0] is not state.spec:
        shown = await asyncio.to_thread(schedule_preview, state.spec)
        _SCHEDULES.pop(key, None)
        while len(_SCHEDULES) >= _SCHEDULES_KEPT:
            _SCHEDULES.pop(next(iter(_SCHEDULES)))
        made = _SCHEDULES[key] = (state.spec, shown)
    return made[1]


#: each spec's design section, made once: a spec does not change once created, and the store
#: keeps each one it parsed (a 1,000,000-product spec: parsing and dumping it cost seconds a
#: page; benchmarks/bench_console.py)
_DESIGNS: dict[int, tuple[Any, dict[str, Any]]] = {}


async def _design(store: Store, exp_id: str) -> dict[str, Any]:
    """:func:`design_view` of the experiment's spec as ``read_experiment`` gives it."""
    spec = (await store.get_experiment(exp_id)).spec
    made = _DESIGNS.get(id(spec))
    if made is None or made[0] is not spec:
        made = _DESIGNS[id(spec)] = (spec, design_view(spec.model_dump(mode="json")))
    return made[1]


def verdict_view(doc: dict[str, Any] | None) -> dict[str, Any] | None:
    """The latest verdict as the console shows it: the message itself, its headline (the
    word, and the days still needed while it keeps running) and the lines below it, as
    ``pricelab estimates`` prints them."""
    if doc is None:
        return None
    lines = render_verdict(doc).splitlines()
    return {
        "verdict": doc.get("verdict"),
        "arm": doc.get("arm"),
        "headline": lines[0],
        "lines": [line.strip() for line in lines[1:]],
        "more_days": doc.get("more_days"),
        "as_of": doc.get("as_of"),
        "n_periods": doc.get("n_periods"),
        "message": doc,
    }


def looks_view(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each look's verdict, newest first (a look published more than once: its latest, by
    the one rule :func:`latest_verdict`), with whether its word changed from the look before."""
    by_look: dict[str, list[dict[str, Any]]] = {}
    for d in docs:
        if is_verdict(d):
            by_look.setdefault(str(d.get("as_of")), []).append(d)
    verdicts = [latest_verdict(v) for v in by_look.values()]
    shown = [verdict_view(v) for v in sorted(verdicts, key=lambda v: str((v or {}).get("as_of")))]
    out: list[dict[str, Any]] = []
    for i, v in enumerate(shown):
        if v is None:
            continue
        before = shown[i - 1] if i else None
        changed = before is not None and (before["verdict"], before["arm"]) != (
            v["verdict"],
            v["arm"],
        )
        out.append(
            {k: v[k] for k in ("as_of", "n_periods", "verdict", "arm", "headline")}
            | {"changed": changed}
        )
    return out[::-1]


def ladder_view(
    docs: list[dict[str, Any]], verdict: dict[str, Any] | None
) -> dict[str, Any] | None:
    """A price ladder's latest demand curve, as ``pricelab estimates`` prints it beside the
    verdict (None: not a ladder, or no look yet)."""
    doc = latest_demand(docs)
    if doc is None:
        return None
    return {"lines": render_demand(doc, verdict).splitlines(), "message": doc}


def _matches(row: dict[str, Any], q: str) -> bool:
    q = q.casefold()
    return any(q in str(v).casefold() for v in (row["id"], row["design"], *row["arms"]))


async def experiments_view(
    store: Store,
    feed: EstimatesFeed,
    status: str | None = None,
    q: str | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Every experiment (``status``: of that state; ``q``: whose id, design or an arm name
    holds it), each with its latest verdict and (given the ``settings``) the health flags
    that need no panel read (streams.client.health.list_flags); and how many each tab
    holds. The ``drafts`` tab lists the drafts (``q``: likewise) instead, as ``drafts``."""
    rows = await read_overviews(store)
    drafts = await read_drafts(store)
    counts = {tab: 0 for tab in TABS}
    counts["drafts"] = len(drafts)
    for row in rows:
        counts["all"] += 1
        if row["state"] in counts:
            counts[row["state"]] += 1
    shown = [
        r
        for r in rows
        if (not status or status == "all" or r["state"] == status) and (not q or _matches(r, q))
    ]
    docs = await feed.many([r["id"] for r in shown])
    now = (await stack_clock(settings, store)).now() if settings is not None else None
    for row in shown:
        row["verdict"] = verdict_view(latest_verdict(docs[row["id"]]))
        if settings is not None and now is not None:
            row["health"] = list_flags(row, last_look(docs[row["id"]]), now, settings)
    out = {"experiments": shown, "counts": counts, "status": status or "all", "q": q or ""}
    if status == "drafts":
        out["drafts"] = [d for d in drafts if not q or _matches(d, q)]
    return out


def finite(obj: Any) -> Any:
    """``obj`` with every NaN or infinity (anywhere inside) as None: JSON has neither."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    return obj


async def experiment_view(
    settings: Settings,
    store: Store,
    feed: EstimatesFeed,
    exp_id: str,
    page: int = 1,
    trails: TrailFollower | None = None,
) -> dict[str, Any]:
    """One experiment: its overview, latest verdict, the scorecard's latest estimates (each
    metric's primary estimator, the decision metric first), the decision that stands (the
    trail's latest) and its audit history, newest first, ``page`` by page (from ``trails``,
    the console's one reader of the trail, else read from the topic's start). An unknown id
    raises UnknownExperiment."""
    overview = await read_overview(store, exp_id)
    docs = await feed.docs(exp_id)
    verdict = latest_verdict(docs)
    lead = overview["decision_metric"] if verdict is None else verdict.get("metric")
    design = await _design(store, exp_id)
    results = finite(results_view(docs, lead, design.get("segments") or ()))
    trail = (
        await trails.trail(exp_id)
        if trails is not None
        else await read_trail(settings, exp_id, timeout=settings.console.command_timeout)
    )
    created_by = next(
        (
            (r.get("detail") or {}).get("actor")
            for r in trail.records
            if r.get("kind") == "command"
            and (r.get("detail") or {}).get("command") == "create"
            and (r.get("detail") or {}).get("accepted")
        ),
        None,
    )
    # the freezes that apply to it, each ahead, in force, over or cancelled by the
    # controller's clock (read_freezes opens its own client: off this event loop)
    freezes = await asyncio.to_thread(read_freezes, settings, exp_id)
    records = list(reversed(trail.records))
    pages = max(1, math.ceil(len(records) / HISTORY_PAGE))
    page = min(max(1, page), pages)
    return {
        "overview": overview
        | {
            "created_by": overview.get("created_by") or created_by,
            "decision": latest_decision(trail),
        },
        "verdict": verdict_view(verdict),
        "scorecard": results["scorecard"],
        "segments": results["segments"],
        "segments_note": results["segments_note"],
        "elasticity": results["elasticity"],
        "looks": looks_view(docs),
        "ladder": ladder_view(docs, verdict),
        "adaptive": adaptive_view(docs),
        "freezes": freezes,
        "design": design,
        "history": {
            "records": records[(page - 1) * HISTORY_PAGE : page * HISTORY_PAGE],
            "total": len(records),
            "page": page,
            "pages": pages,
            "expired": trail.expired,
            "repeats": trail.repeats,
        },
    }
