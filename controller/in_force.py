"""What is in force: the message a pricing system holds for a product, and why.

One answer for every reader: the flipper (the messages of a decision, and the records the
sales path routes by), the trigger runner (a fire's announcement), ``pricelab assignments``
(:func:`read_assignment`), ``pricelab experiment freezes`` (:func:`freeze_view`) and the
live report (:func:`status_in_force`). All of it is pure but :func:`read_assignment`, which
reads the store at the edge and asks the rest.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, Protocol

from controller.adaptive_flip import read_context
from controller.blackout import Freeze, apply_freezes, freezes_of
from controller.designs import (
    Assignment,
    DesignContext,
    PeriodAssignments,
    assign,
    forced_control,
)
from controller.lifecycle import Phase, Records
from controller.spec import ExperimentSpec
from controller.store import ExperimentState, Store
from core import status


class AssignmentSink(Protocol):
    """Where what is in force goes: every product's message of a decision (keyed by product),
    and the experiment's events (streams.worker.sinks implements it)."""

    async def publish_assignments(
        self, assignments: Sequence[Assignment], seq: int, status: str
    ) -> None: ...

    async def publish_event(
        self,
        experiment: str,
        kind: str,
        at: datetime,
        detail: dict[str, object],
        *,
        flush: bool = True,
    ) -> None: ...


#: the reason each non-running mode gives its forced control blackout
_FORCED = {
    status.FROZEN: "freeze",
    status.PAUSED: "paused",
    status.STOPPED: "stopped",
    status.ENDED: "ended",
}


def in_force_one(
    spec: ExperimentSpec, a: Assignment, mode: str, freezes: Sequence[Freeze]
) -> Assignment:
    """The message of one product's design assignment ``a`` in ``mode`` (the ``status`` a
    pricing system reads). Running: the design's policy, with the operator freezes laid over
    the blackouts (a freeze that covered the period's start and is over by now still blacks
    out its data, but no longer sets the policy: running means no freeze is in force); any
    other mode: the control policy, in blackout for the whole period."""
    a = apply_freezes(spec, a, freezes)
    if mode == status.RUNNING:
        return replace(a, policy=a.design_policy or a.policy)
    return forced_control(spec, a, _FORCED[mode])


def in_force(
    spec: ExperimentSpec, design: PeriodAssignments, mode: str, freezes: Sequence[Freeze]
) -> PeriodAssignments:
    """Every product's message of a decision: the period's design assignments ``design``
    (``period_assignments``) in ``mode`` (:func:`in_force_one`, once per distinct one)."""
    return design.map(lambda a: in_force_one(spec, a, mode, freezes))


def period_records(
    spec: ExperimentSpec, design: PeriodAssignments, policy: Records, freezes: Sequence[Freeze]
) -> PeriodAssignments:
    """The period's assignment records, which the sales path routes by: the design's with the
    freezes laid over its blackouts, or (``Records.CONTROL``, paused) the control policy."""
    out = design.map(lambda a: apply_freezes(spec, a, freezes))
    if policy is Records.CONTROL:
        out = out.map(lambda a: forced_control(spec, a, status.PAUSED))
    return out


def mode_at(experiment: str, at: datetime, freezes: Sequence[Freeze]) -> str:
    """The mode a running experiment's period starting ``at`` starts in: frozen if an
    operator freeze covers that instant."""
    frozen = any(f.applies_to(experiment) and f.covers(at) for f in freezes)
    return status.FROZEN if frozen else status.RUNNING


def freeze_view(freeze: Freeze, now: datetime) -> dict[str, Any]:
    """A freeze as an operator is shown it: id, window, scope, reason, and whether it is
    ahead, in force or over at ``now``."""
    when = "ahead" if now < freeze.start else ("in force" if now < freeze.end else "over")
    return {
        "id": freeze.id,
        "start": freeze.start.isoformat(),
        "end": freeze.end.isoformat(),
        "experiments": freeze.experiments
        if freeze.experiments == "all"
        else list(freeze.experiments),
        "reason": freeze.reason,
        "now": when,
    }


def status_in_force(st: ExperimentState) -> str:
    """What a pricing system is told for the experiment's products now: the mode in force
    (running, frozen, paused, stopped, ended), or before any period its phase (creating,
    created)."""
    lc = st.lifecycle
    return lc.mode or lc.phase.value


def product_view(
    st: ExperimentState,
    product: str,
    freezes: Sequence[Freeze],
    now: datetime | None,
    ctx: DesignContext | None,
) -> dict[str, Any]:
    """The message in force for ``product`` of experiment ``st`` as an operator is shown it:
    the experiment's state, the status, arm and policy (an ``arms:`` spec's arm by name, with
    its price ratio where the spec gives one), its seq and period, and why. ``now`` and
    ``ctx`` (the triggers of a triggered design) are needed once a period is in force."""
    exp = st.spec.id
    lc = st.lifecycle
    view: dict[str, Any] = {
        "experiment": exp,
        "product": product,
        "state": st.phase,
        "frozen": st.shows_frozen,
    }
    if lc.phase is Phase.CREATING:
        return view | {"status": None, "policy": None, "reason": "being created"}
    if lc.mode is None:
        return view | {
            "status": None,
            "policy": None,
            "reason": "not started: nothing is in force before "
            + st.spec.start.astimezone(st.spec.zone).isoformat(),
        }
    assert now is not None
    a = in_force_one(st.spec, assign(st.spec, product, lc.period, ctx), lc.mode, freezes)
    zone = st.spec.zone  # times as the experiment's calendar reads them, with the offset
    until = a.blackout_until.astimezone(zone) if a.blackout_until else None
    return view | {
        "status": lc.mode,
        "seq": st.seq,
        "period": lc.period,
        "timezone": st.spec.timezone,
        "period_start": a.period_start.astimezone(zone).isoformat(),
        "period_end": a.period_end.astimezone(zone).isoformat(),
        "arm": a.arm.value,
        **({"arm_name": a.arm_name} if a.arm_name is not None else {}),
        "policy": a.policy,
        **({"price_ratio": a.price_ratio} if a.price_ratio is not None else {}),
        "probability": a.probability,
        **({"probabilities": dict(a.arm_probabilities)} if a.arm_probabilities else {}),
        "blackout_until": until.isoformat() if until else None,
        "blackout_reason": a.blackout_reason,
        "reason": _reason(
            lc.mode, a, [f for f in freezes if f.applies_to(exp) and f.covers(now)], until
        ),
    }


async def read_assignment(
    store: Store, product: str, now: Callable[[], Awaitable[datetime]]
) -> dict[str, Any] | None:
    """The message in force for ``product`` (:func:`product_view`): what a pricing system
    that keeps the highest ``seq`` holds, from the experiment holding the product (or, once
    none does, the last one that held it); None when no experiment ever had it. ``now`` is
    asked only once a period is in force."""
    exp = await store.experiment_of(product)
    if exp is None:
        exp = await _last_experiment_of(store, product)
        if exp is None:
            return None
    st = await store.get_experiment(exp)
    if st.lifecycle.mode is None:
        return product_view(st, product, (), None, None)
    freezes = freezes_of(await store.freezes())
    at = await now()
    ctx = await read_context(store, st.spec)  # triggers; an adaptive ladder's probabilities
    return product_view(st, product, freezes, at, ctx)


async def _last_experiment_of(store: Store, product: str) -> str | None:
    """The most recently created experiment whose products include ``product``."""
    best: tuple[int, str] | None = None
    for st in await store.experiments():
        if product in st.spec.units() and (best is None or st.created_ms > best[0]):
            best = (st.created_ms, st.spec.id)
    return None if best is None else best[1]


def _reason(mode: str, a: Assignment, frozen_by: list[Freeze], until: datetime | None) -> str:
    """Why the product is on its policy, in a few words an operator can act on (``until``:
    the blackout's end in the experiment's time zone)."""
    if mode == status.PAUSED:
        return "paused: the control policy, data excluded"
    if mode in status.FINAL:
        return f"{mode}: the control policy; the product is released"
    if mode == status.FROZEN:
        ids = ", ".join(f.id + (f" ({f.reason})" if f.reason else "") for f in frozen_by)
        return "frozen: the control policy" + (f", by freeze {ids}" if ids else "")
    arm = a.arm_name or a.arm.value  # an arms: spec's arm by its name
    if until is not None:
        return f"{a.blackout_reason or 'blackout'} until {until.isoformat()}, then the {arm} arm"
    return f"the {arm} arm of period {a.period}"


__all__ = [
    "AssignmentSink",
    "freeze_view",
    "in_force",
    "in_force_one",
    "mode_at",
    "period_records",
    "product_view",
    "read_assignment",
    "status_in_force",
]
