"""The flip's edge for an adaptive ladder (issue #57): read what is recorded and the latest
look, record the period's probabilities once (before any of its assignments is published),
and hand the design its context. The decision itself is
:func:`controller.adaptive_draw.period_probabilities` (pure)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from controller.adaptive_draw import period_probabilities
from controller.designs import DesignContext
from controller.spec import ExperimentSpec
from controller.store import Store

log = logging.getLogger("pricelab.controller")


async def adaptive_context(
    store: Store,
    spec: ExperimentSpec,
    period: int,
    triggers: Mapping[str, int] | None = None,
    *,
    record: bool = True,
) -> DesignContext:
    """The design context of ``spec``'s ``period`` with every recorded period's
    probabilities. With ``record`` (the flip), a period not recorded yet is decided and
    recorded first; the first writer wins (a second controller, or a redo, gets the recorded
    probabilities back, never new ones). ``period`` -1: none to record."""
    recorded = await store.allocations(spec.id)
    if record and period >= 0 and period not in recorded:
        decided = period_probabilities(spec, period, recorded, await store.adaptive_look(spec.id))
        kept = await store.record_allocation(spec.id, period, decided.probabilities)
        recorded[period] = kept
        log.info(
            "experiment %s: period %d's probabilities %s (%s%s)",
            spec.id,
            period,
            [round(p, 4) for p in kept],
            decided.source,
            f": {decided.why}" if decided.why else "",
        )
    return DesignContext(triggers=dict(triggers or {}), probabilities=held_between(recorded))


def held_between(recorded: Mapping[int, tuple[float, ...]]) -> dict[int, tuple[float, ...]]:
    """The recorded probabilities, with every period between two recorded ones that no flip
    drew (a controller down over its boundary) at the last recorded ones before it: what it
    would have held, so that the washout of the period after it compares with that draw, as
    a fixed design's compares with its own draw of a missed period. Only the context gets
    them; nothing is recorded."""
    out = dict(recorded)
    if out:
        last = out[min(out)]
        for s in range(min(out), max(out) + 1):
            last = out.setdefault(s, last)
    return out


async def read_context(store: Store, spec: ExperimentSpec) -> DesignContext | None:
    """The design context a reader of the schedule draws with (``pricelab assignments``, the
    schedule view): a triggered design's triggers, an adaptive ladder's recorded
    probabilities (periods not drawn yet: the allocations); None when the design needs none.
    Nothing is recorded."""
    triggers = await store.triggers(spec.id) if spec.triggered is not None else None
    if spec.adaptive is not None:
        return await adaptive_context(store, spec, -1, triggers, record=False)
    return None if triggers is None else DesignContext(triggers=triggers)


def allocation_event(
    spec: ExperimentSpec, period: int, recorded: Mapping[int, tuple[float, ...]]
) -> dict[str, object] | None:
    """The audit trail's record of ``period``'s probabilities when they differ from the last
    recorded period's before it (or it is the first): None when they hold, or none is
    recorded for it."""
    p = recorded.get(period)
    if p is None:
        return None
    before = max((s for s in recorded if s < period), default=None)
    previous = None if before is None else recorded[before]
    if previous is not None and tuple(previous) == tuple(p):
        return None
    return {
        "period": period,
        "arms": [a.name for a in spec.arm_list()],
        "probabilities": list(p),
        "previous": None if previous is None else list(previous),
    }


__all__ = ["adaptive_context", "allocation_event", "held_between", "read_context"]
