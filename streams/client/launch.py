"""A spec before its launch: the one check ``pricelab experiment create`` and the console make,
and what either shows before the create command is sent.

- :func:`launchable` reads a spec's text as the CLI reads a spec file
  (``controller.spec.load_spec_text``), then refuses what the live path refuses
  (``ExperimentSpec.check_live``): a SpecError naming the field, one sentence.
- :func:`plan_summary`: the arms, the calendar, the decision metric, the guardrails, the
  estimators the analysis worker will publish, and what the live path gives such a spec.
- :func:`schedule_preview`: period by period, how many products each arm holds, how many
  start the period with a washout and how many are blacked out for the whole period. It
  counts the flip's own whole-period draws (``controller.designs.period_assignments``), so a
  million-product spec gives one row a period, never a cell a product.

Pure: no broker, no Redis. ``pricelab experiment create --dry-run`` prints them
(:func:`render_preview`); the console's "New experiment" page and an experiment's Design
section show them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from analysis.verdict import decision_metric
from controller.designs import Window, design_of, period_assignments
from controller.periods import is_empty, n_periods, period_bounds
from controller.spec import ExperimentSpec, load_spec_file, load_spec_text

#: the periods a schedule preview counts by default: each costs one whole-period draw of
#: every product (about 40 ms for 100,000 products), so a year of hours is shown in part
PREVIEW_PERIODS = 60


def launchable(data: str | bytes, name: str) -> ExperimentSpec:
    """The spec written in ``data`` (YAML, or JSON when ``name`` ends in ``.json``; ``name``
    names it in the sentences), as ``pricelab experiment create`` takes it: a SpecError
    (one sentence naming the field) for a spec it refuses."""
    spec = load_spec_text(data, name)
    spec.check_live()  # the controller refuses it too; nothing is sent
    return spec


def launchable_file(path: str | Path) -> ExperimentSpec:
    """:func:`launchable` of a spec file (``pricelab experiment create SPEC``)."""
    spec = load_spec_file(path)
    spec.check_live()
    return spec


def plan_summary(spec: ExperimentSpec) -> dict[str, Any]:
    """What launching ``spec`` sets going, as a document: its arms (name, policy, share, price
    ratio), products (and classes), calendar, decision metric, guardrails, the estimators
    the analysis worker publishes (primary first) and notes on what the live path gives it."""
    design = design_of(spec)
    shown = spec.model_dump(mode="json")
    products = spec.all_products()
    notes = [n for n in (spec.live_support(),) if n]
    spillover = design.spillover_note(spec) if spec.substitutes else None
    if spillover:  # the substitutes are given for a spillover estimate that will not come
        notes.append(f"no spillover estimate: {spillover}")
    return {
        "experiment": spec.id,
        "design": spec.design,
        "arms": [
            {
                "name": a.name,
                "policy": a.policy,
                "allocation": a.allocation,
                "price_ratio": a.price_ratio,
                "control": a.control,
            }
            for a in spec.arm_list()
        ],
        "products": len(products),
        "classes": len(spec.clusters) if spec.clusters else None,
        "start": shown["start"],
        "end": shown["end"],
        "timezone": spec.timezone,
        "period": shown["period"],
        "periods": n_periods(spec),
        "washout": shown["washout"],
        "seed": spec.seed,
        "decision_metric": decision_metric(
            {
                "decision_metric": spec.decision_metric,
                "unit_costs": spec.unit_costs,
                "products": products,
            }
        ),
        "mde_pct": spec.mde_pct,
        "guardrails": [g.model_dump(mode="json") for g in spec.guardrails],
        "estimators": [p.label for p in design.estimators(spec)],
        "notes": notes,
    }


def schedule_preview(spec: ExperimentSpec, periods: int = PREVIEW_PERIODS) -> dict[str, Any]:
    """The planned schedule of ``spec``'s first ``periods`` periods, aggregated over products:
    for each period its bounds in the experiment's time zone, each arm's count of products,
    and the counts that start it with a washout (``washout``), are blacked out for the whole
    period (``blackout``: their data is discarded) and sit outside their randomised window
    (``outside``: pending, ended or a matched control, on the control policy). Hypothetical
    triggers are not assumed: a triggered design's products are all pending, as in
    ``pricelab schedule`` without ``--trigger``."""
    arms = [a.name for a in spec.arm_list()]
    total = n_periods(spec)
    zone = spec.zone
    rows = []
    for k in range(min(total, max(0, periods))):
        start, end = period_bounds(spec, k)
        row: dict[str, Any] = {
            "period": k,
            "start": start.astimezone(zone).isoformat(),
            "end": end.astimezone(zone).isoformat(),
            "arms": dict.fromkeys(arms, 0),
            "washout": 0,
            "blackout": 0,
            "outside": 0,
        }
        if is_empty(spec, k):  # swallowed by a daylight-saving gap
            rows.append(row | {"empty": True})
            continue
        held = period_assignments(spec, k)
        counts = np.bincount(np.asarray(held.codes, dtype=np.int64), minlength=len(held.templates))
        for t, n in zip(held.templates, counts.tolist(), strict=True):
            row["arms"][arms[t.index if t.index is not None else spec.control_index]] += n
            row["washout"] += n if any(b.reason == "washout" for b in t.blackouts) else 0
            row["blackout"] += n if t.excluded else 0
            row["outside"] += n if t.window != Window.RANDOMISED else 0
        rows.append(row | {"empty": False})
    return {
        "arms": arms,
        "products": len(spec.all_products()),
        "periods": total,
        "shown": len(rows),
        "timezone": spec.timezone,
        "rows": rows,
    }


def render_preview(plan: dict[str, Any], schedule: dict[str, Any]) -> str:
    """The plan summary and the schedule preview as ``pricelab experiment create --dry-run``
    prints them."""
    lines = [
        f"experiment {plan['experiment']}: {plan['design']}, {plan['products']} products"
        + (f" in {plan['classes']} classes" if plan["classes"] else ""),
        f"  {plan['periods']} periods of {plan['period']} from {plan['start']} to "
        f"{plan['end']} ({plan['timezone']}), washout {plan['washout']}, seed {plan['seed']}",
    ]
    for a in plan["arms"]:
        ratio = "" if a["price_ratio"] is None else f", price ratio {a['price_ratio']:g}"
        role = " (control)" if a["control"] else ""
        lines.append(
            f"  arm {a['name']}{role}: policy {a['policy']}, share {a['allocation']:g}{ratio}"
        )
    lines.append(
        f"  decision metric {plan['decision_metric']}"
        + (f", MDE {plan['mde_pct']:g}%" if plan["mde_pct"] is not None else "")
    )
    for g in plan["guardrails"]:
        lines.append(f"  guardrail: {g['metric']} must not drop more than {g['max_drop_pct']:g}%")
    lines.append(f"  estimators: {', '.join(plan['estimators'])}")
    lines += [f"  note: {n}" for n in plan["notes"]]
    head = ["period", "start", *schedule["arms"], "washout", "blackout", "outside"]
    table = [
        [str(r["period"]), r["start"], *(str(r["arms"][a]) for a in schedule["arms"]),
         str(r["washout"]), str(r["blackout"]), str(r["outside"])]
        for r in schedule["rows"]
    ]  # fmt: skip
    width = [max([len(h)] + [len(t[i]) for t in table]) for i, h in enumerate(head)]
    lines.append("")
    lines.append("  ".join(h.ljust(w) for h, w in zip(head, width, strict=True)).rstrip())
    lines += ["  ".join(c.ljust(w) for c, w in zip(t, width, strict=True)).rstrip() for t in table]
    if schedule["shown"] < schedule["periods"]:
        lines.append(f"(the first {schedule['shown']} of {schedule['periods']} periods)")
    return "\n".join(lines)


__all__ = [
    "PREVIEW_PERIODS",
    "launchable",
    "launchable_file",
    "plan_summary",
    "render_preview",
    "schedule_preview",
]
