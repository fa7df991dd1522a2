"""Trigger rules over competitor-price events: when does a product's own window start?

A :class:`TriggerTracker` is fed competitor prices and our reference prices, one event at a
time, and reports the first time each product's :class:`~controller.spec.TriggerRule` fires:
the lowest price among the rule's competitors (all when the list is empty) is at least
``undercut_pct`` percent below our reference price, continuously for ``sustained_minutes``.

Time is event time (``observed_at``), never the wall clock:

- the condition is re-evaluated at every event and is taken to hold, unchanged, until the
  next event for the product; several events with the same ``observed_at`` count as one
  instant (only the state after the last of them matters); only time inside the experiment
  counts (an undercut already running at ``spec.start`` counts from ``spec.start``);
- the fire instant is ``undercut_since + sustained_minutes``; an event that arrives after that
  instant (even one that ends the undercut) first reports the fire, so the result does not
  depend on when the tracker is polled. ``advance(now)`` reports fires whose duration elapsed
  with no new event, and promises that no older event will follow. With
  ``sustained_minutes: 0`` the fire is reported once time has moved past the instant;
- an event older than the last one seen for its product, or than the last ``advance``, is
  stale: it is ignored and counted in ``stale``;
- each product fires at most once. The window opens at the next period boundary: the trigger
  period is ``period_index(fired_at) + 1``. Fires at or after ``spec.end``, or whose window
  would open after the last period, are not reported.

Pure and deterministic: no I/O; ``to_state``/``from_state`` give a small JSON-able state for
the store to persist.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from controller.periods import n_periods, period_index
from controller.spec import ExperimentSpec, TriggerRule

_REL_TOL = 1e-9  # undercut comparisons are on floats: 10.0% of 100 must count as 10%


@dataclass(frozen=True)
class TriggerFire:
    product: str
    fired_at: datetime  # the instant the undercut had lasted sustained_minutes
    undercut_since: datetime
    competitor: str  # the lowest-priced competitor at the fire
    period: int  # first period of the product's window

    def to_dict(self) -> dict[str, Any]:
        return {
            "product": self.product,
            "fired_at": self.fired_at.isoformat(),
            "undercut_since": self.undercut_since.isoformat(),
            "competitor": self.competitor,
            "period": self.period,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TriggerFire:
        return cls(
            product=d["product"],
            fired_at=datetime.fromisoformat(d["fired_at"]),
            undercut_since=datetime.fromisoformat(d["undercut_since"]),
            competitor=d["competitor"],
            period=int(d["period"]),
        )


@dataclass
class _Product:
    reference: float | None = None
    prices: dict[str, float] = field(default_factory=dict)
    last_at: datetime | None = None
    undercut_since: datetime | None = None
    # an undercut that ended at broken_at, kept so that a same-instant resumption continues it
    broken_at: datetime | None = None
    broken_since: datetime | None = None


def _positive(price: float, what: str) -> float:
    if not (isinstance(price, int | float) and math.isfinite(price) and price > 0):
        raise ValueError(f"{what} must be a positive finite number, got {price!r}")
    return float(price)


def _ts(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _aware(ts: datetime) -> datetime:
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError("observed_at must be timezone-aware")
    return ts


class TriggerTracker:
    """First-fire detection of one experiment's trigger rule, product by product."""

    def __init__(self, spec: ExperimentSpec) -> None:
        if spec.triggered is None:
            raise ValueError(f"experiment {spec.id!r} has no trigger rule (design {spec.design})")
        self.spec = spec
        self.rule: TriggerRule = spec.triggered
        self.sustain = timedelta(minutes=self.rule.sustained_minutes)
        self.products: dict[str, _Product] = {}
        self.fired: dict[str, TriggerFire] = {}
        self.watermark: datetime | None = None
        self.stale = 0
        self._units = spec.units()
        # (due, product) of every running undercut, so that advance() looks only at what is
        # due instead of every watched product. Lazy: an entry whose product fired or whose
        # undercut changed since is dropped when it surfaces.
        self._due: list[tuple[datetime, str]] = []

    # -------------------------------------------------------------- events
    def observe_reference(
        self, product: str, price: float, observed_at: datetime
    ) -> TriggerFire | None:
        """Our reference price for ``product`` changed (or was re-stated) at ``observed_at``."""
        price = _positive(price, "reference price")
        return self._event(product, _aware(observed_at), reference=price)

    def observe_competitor(
        self, product: str, competitor: str, price: float, observed_at: datetime
    ) -> TriggerFire | None:
        """A competitor's price for ``product`` observed at ``observed_at``."""
        price = _positive(price, "competitor price")
        if self.rule.competitors and competitor not in self.rule.competitors:
            return None
        return self._event(product, _aware(observed_at), competitor=(competitor, price))

    def seed_references(self, prices: dict[str, float]) -> None:
        """Our reference prices as of ``spec.start`` for the products this tracker has not seen
        yet (neither watched nor fired): the state persists only products that saw an event,
        so a tracker rebuilt from it gets the spec's reference prices back here (not through
        :meth:`observe_reference`, whose event at the start would be stale after a watermark)."""
        for product, price in prices.items():
            known = product in self.products or product in self.fired
            if product in self._units and not known:
                self.products[product] = _Product(
                    reference=_positive(price, "reference price"), last_at=self.spec.start
                )

    def advance(self, now: datetime) -> list[TriggerFire]:
        """Fires whose sustained duration elapsed by ``now``; no event older than now may follow."""
        now = _aware(now)
        if self.watermark is None or now > self.watermark:
            self.watermark = now
        fires = []
        keep = []  # due exactly now with nothing to sustain: fires once time moves past
        while self._due and self._due[0][0] <= now:
            due, product = heapq.heappop(self._due)
            state = self.products.get(product)
            if state is None or state.undercut_since is None:
                continue
            if state.undercut_since + self.sustain != due:
                continue  # superseded by a later undercut (which has its own entry)
            fire = self._check(product, state, now)
            if fire is not None:
                fires.append(fire)
            elif due == now and not self.sustain:
                keep.append((due, product))
            # otherwise it can never fire (due at or after the end, or no period left)
        for entry in keep:
            heapq.heappush(self._due, entry)
        return sorted(fires, key=lambda f: f.product)

    # -------------------------------------------------------------- internals
    def _event(
        self,
        product: str,
        at: datetime,
        reference: float | None = None,
        competitor: tuple[str, float] | None = None,
    ) -> TriggerFire | None:
        if product not in self._units or product in self.fired:
            return None
        state = self.products.setdefault(product, _Product())
        if (state.last_at is not None and at < state.last_at) or (
            self.watermark is not None and at < self.watermark
        ):
            self.stale += 1
            return None
        # the condition held unchanged up to this event: report a fire that fell due before it
        fire = self._check(product, state, at)
        if fire is not None:
            return fire
        state.last_at = at
        if reference is not None:
            state.reference = reference
        if competitor is not None:
            state.prices[competitor[0]] = competitor[1]
        if self._undercut(state):
            if state.undercut_since is None:
                resumed = state.broken_at == at and state.broken_since is not None
                since = (
                    state.broken_since
                    if resumed and state.broken_since
                    else max(at, self.spec.start)
                )
                state.undercut_since = since
                self._watch(product, since)
        elif state.undercut_since is not None:
            state.broken_at, state.broken_since = at, state.undercut_since
            state.undercut_since = None
        return self._check(product, state, at)

    def _watch(self, product: str, since: datetime) -> None:
        heapq.heappush(self._due, (since + self.sustain, product))
        if len(self._due) > 2 * len(self.products) + 64:  # drop superseded entries
            self._due = [
                (s.undercut_since + self.sustain, p)
                for p, s in self.products.items()
                if s.undercut_since is not None
            ]
            heapq.heapify(self._due)

    def _undercut(self, state: _Product) -> bool:
        if state.reference is None or not state.prices:
            return False
        lowest = min(state.prices.values())
        depth = (state.reference - lowest) / state.reference * 100.0
        return depth >= self.rule.undercut_pct * (1 - _REL_TOL)

    def _check(self, product: str, state: _Product, now: datetime) -> TriggerFire | None:
        if product in self.fired or state.undercut_since is None:
            return None
        due = state.undercut_since + self.sustain
        # the state at an instant is the one after all its events: with no duration to
        # sustain, a fire due now waits until time has moved past it
        if due > now or (due == now and not self.sustain) or due >= self.spec.end:
            return None
        k = period_index(self.spec, due) + 1
        if k >= n_periods(self.spec):
            return None
        competitor = min(state.prices, key=lambda c: (state.prices[c], c))
        fire = TriggerFire(product, due, state.undercut_since, competitor, k)
        self.fired[product] = fire
        self.products.pop(product, None)  # a fired product needs no more state
        return fire

    @property
    def triggers(self) -> dict[str, int]:
        """product -> trigger period, ready for ``DesignContext(triggers=...)``."""
        return {p: f.period for p, f in self.fired.items()}

    # -------------------------------------------------------------- persistence
    def to_state(self) -> dict[str, Any]:
        """A small JSON-able snapshot (for the store)."""
        return {
            "watermark": self.watermark.isoformat() if self.watermark else None,
            "stale": self.stale,
            "fired": {p: f.to_dict() for p, f in self.fired.items()},
            "products": {p: self.product_state(p) for p in self.products},
        }

    def product_state(self, product: str) -> dict[str, Any] | None:
        """The JSON-able state of one product still being watched (None once fired/unknown);
        lets the store persist only what a batch of events touched."""
        s = self.products.get(product)
        if s is None:
            return None
        return {
            "reference": s.reference,
            "prices": dict(s.prices),
            "last_at": s.last_at.isoformat() if s.last_at else None,
            "undercut_since": s.undercut_since.isoformat() if s.undercut_since else None,
            "broken_at": s.broken_at.isoformat() if s.broken_at else None,
            "broken_since": s.broken_since.isoformat() if s.broken_since else None,
        }

    @classmethod
    def from_state(cls, spec: ExperimentSpec, state: dict[str, Any]) -> TriggerTracker:
        t = cls(spec)
        wm = state.get("watermark")
        t.watermark = datetime.fromisoformat(wm) if wm else None
        t.stale = int(state.get("stale", 0))
        t.fired = {p: TriggerFire.from_dict(f) for p, f in state.get("fired", {}).items()}
        for p, s in state.get("products", {}).items():
            t.products[p] = _Product(
                reference=s.get("reference"),
                prices={c: float(v) for c, v in s.get("prices", {}).items()},
                last_at=datetime.fromisoformat(s["last_at"]) if s.get("last_at") else None,
                undercut_since=_ts(s.get("undercut_since")),
                broken_at=_ts(s.get("broken_at")),
                broken_since=_ts(s.get("broken_since")),
            )
        t._due = [
            (s.undercut_since + t.sustain, p)
            for p, s in t.products.items()
            if s.undercut_since is not None
        ]
        heapq.heapify(t._due)
        return t
