"""The ``Design`` interface, the draws designs share, and the keyed randomness they draw from.

A design is one module: a subclass of :class:`Design` registered with
:func:`controller.design_registry.register`. It answers, for an experiment spec:

- ``draw``: the arm (its index in the spec's arm list and its role), P(not control) and
  window state of one unit in one period;
- ``period_draws``: the same for every product of a period at once (the flip's vectorised
  path; the default asks ``draw`` product by product);
- ``path_probability``: P(a unit's arms in periods k-lag..k are all one arm, given by its
  index), the weight denominator of the Horvitz-Thompson switchback estimator;
- ``phase_blackout``: whether a whole period is blacked out by the design itself;
- ``estimators``: its default estimators, primary first, with the level they cluster at;
- ``periods_share_draws``: whether one draw fixes a unit's arm in several periods;
- ``spillover``: how the analysis worker may estimate spillover for it (per period, as a
  block, or not at all);
- ``example_spec`` and ``uses_triggers``: what the market simulator needs to run it.

Everything else - ``schedule``, the flip, the simulator, ``compare-designs`` and the
analysis worker's choice of estimators - goes through this interface
(:mod:`controller.designs.assignments`).

Randomisation is deterministic: a keyed hash of (seed, experiment, unit, period or block)
gives each draw, so any process, at any time, recomputes the same schedule (flips are
idempotent, catch-up after downtime needs no stored RNG state, and ``pricelab schedule``
shows exactly what will run).

Arms: a spec has 2 to 8 arms (``ExperimentSpec.arm_list``; the two-arm shorthand is
[treatment, control]). Every design draws an arm index from the shared draws below: a keyed
categorical draw by allocation (:func:`categorical`) or a k-way complete randomisation
within strata (:func:`complete_split`). With two arms both are bit for bit the coin and
the share that two-arm experiments always drew (``u < allocation`` is arm 0, treatment).
"""

from __future__ import annotations

import hashlib
import itertools
import math
import struct
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, cast

import numpy as np

from controller import design_registry
from controller.spec import Arm, ExperimentSpec
from core.ports import EstimatorPlan

_TWO64 = float(2**64)


def uniform(*key: object) -> float:
    """A deterministic U[0, 1) draw keyed by ``key`` (stable across processes and versions)."""
    h = hashlib.blake2b("\x1f".join(map(str, key)).encode(), digest_size=8).digest()
    return struct.unpack(">Q", h)[0] / _TWO64


def uniforms(
    prefix: Sequence[object], units: Sequence[str], suffix: Sequence[object] = ()
) -> np.ndarray:
    """``uniform(*prefix, u, *suffix)`` for every ``u`` in ``units``, as one float array.

    Bit for bit the scalar draws: the same keyed hash per unit (a hash cannot be vectorised
    without changing every schedule). The key's common head is hashed once and its state
    copied for each unit (a hash of head + unit + tail is the same in one update or three;
    1.9 -> 1.5 ms for 5,000 units, against hashing each key whole), and the 64-bit to float conversion (round to
    nearest, then an exact division by 2**64) is done by numpy.
    """
    head = hashlib.blake2b("".join(str(x) + "\x1f" for x in prefix).encode(), digest_size=8)
    tail = "".join("\x1f" + str(x) for x in suffix).encode()
    out = []
    for u in units:
        h = head.copy()
        h.update(str(u).encode())
        h.update(tail)
        out.append(h.digest())
    return np.frombuffer(b"".join(out), dtype=">u8").astype(np.float64) / _TWO64


class Window(StrEnum):
    """Where a cell stands relative to its unit's randomised window.

    A cell whose arm was drawn by the design is ``RANDOMISED`` and its probability is the
    design P(not control) (two arms: P(treatment)). A cell outside the unit's randomised window (time-bound periods before
    ``start_period``, triggered products before their trigger or after their window) is
    ``PENDING`` or ``ENDED``: it runs the control policy, its probability is 0 and it is not
    part of any randomised comparison. A product held in control as the matched control of
    another product's treated window is ``MATCHED`` (probability 0).
    """

    RANDOMISED = "randomised"
    PENDING = "pending"
    ENDED = "ended"
    MATCHED = "matched-control"


@dataclass(frozen=True)
class Draw:
    """What a design says about one cell: arm, P(not control) and window state.

    ``arm`` is the arm's role (CONTROL iff it is the control arm); ``index`` its place in the
    spec's arm list. A draw made without an index (a two-arm design written before arms had
    one) names its arm by role: :func:`arm_index` resolves it against the spec. ``probability``
    is P(the cell is not in the control arm) under the design (two arms: P(treatment)).
    """

    arm: Arm
    probability: float
    window: Window = Window.RANDOMISED
    matched_to: str | None = None
    index: int | None = None


def arm_draw(
    spec: ExperimentSpec,
    index: int,
    probability: float,
    window: Window = Window.RANDOMISED,
    matched_to: str | None = None,
) -> Draw:
    """The draw of arm ``index`` of ``spec`` (its role from the spec)."""
    return Draw(spec.role(index), probability, window, matched_to, index)


def control_draw(spec: ExperimentSpec, window: Window, matched_to: str | None = None) -> Draw:
    """A cell on the control arm outside the randomised comparison (probability 0)."""
    return arm_draw(spec, spec.control_index, 0.0, window, matched_to)


def arm_index(spec: ExperimentSpec, d: Draw) -> int:
    """The index of a draw's arm: its own, else the arm its role names (two arms only)."""
    return d.index if d.index is not None else spec.index_of(d.arm)


#: why spillover is not identified with more than two arms (every design)
K_ARM_SPILLOVER_NOTE = (
    "the spillover exposures are defined for one treated arm against control; with more than "
    "two arms no exposure variance has been derived, so no valid interval exists"
)


@dataclass(frozen=True)
class DesignContext:
    """Run-time facts a design may need beyond the spec (e.g. trigger times from events).

    ``triggers`` is read as an immutable snapshot: what a design derives from it (the trigger
    plan) is kept with the context (``plan``, or built on first use in ``derived``), so keep
    one context per snapshot.
    """

    # product -> trigger period: the first period of the product's window (see triggers.py)
    triggers: Mapping[str, int] = field(default_factory=dict)
    # what the caller derived from exactly these triggers and keeps up to date (live path)
    plan: Any = field(default=None, compare=False, repr=False)
    # an adaptive ladder's arm probabilities by period (spec arm order), as the flip recorded
    # them (docs/adaptive.md); a period absent here is drawn at the arms' allocations
    probabilities: Mapping[int, tuple[float, ...]] = field(default_factory=dict)
    derived: dict[Any, Any] = field(default_factory=dict, init=False, compare=False, repr=False)

    @classmethod
    def of(cls, plan: Any) -> DesignContext:
        """A context over a live plan's triggers (valid until the plan next changes)."""
        return cls(triggers=plan.triggers, plan=plan)


@dataclass(frozen=True)
class MarketFacts:
    """What the market simulator tells a design when it builds an example spec for it.

    ``categories`` and ``classes`` group the products (market categories; substitute classes
    from the substitutes graph); ``reference_prices`` are our prices; ``competitors`` the
    competitors whose prices the simulator emits; ``days`` the experiment's length in periods
    (days for daily periods); ``carryover_order`` the market's carryover in periods.
    """

    products: tuple[str, ...]
    categories: Mapping[str, tuple[str, ...]]
    classes: Mapping[str, tuple[str, ...]]
    reference_prices: Mapping[str, float]
    competitors: tuple[str, ...]
    days: int
    carryover_order: int = 0


class Design(ABC):
    """One experiment design (see the module docstring for what each method answers)."""

    #: the ``design`` value of a spec that runs this design
    name: ClassVar[str]
    #: the spec's settings block this design reads (``ExperimentSpec.<field>``), if any
    settings_field: ClassVar[str | None] = None
    #: whether a spec of this design must give that block (else ``default_settings`` fills it)
    settings_required: ClassVar[bool] = False
    #: whether the simulator must feed it the competitor undercuts of its market
    uses_triggers: ClassVar[bool] = False

    # ------------------------------------------------------------------ the spec
    def default_settings(self) -> Any:
        """The settings block filled in when an optional block is absent."""
        return None

    def validate(self, spec: ExperimentSpec) -> None:  # noqa: B027 - optional hook
        """Raise :class:`controller.errors.SpecError` for rules beyond the spec's own fields."""

    # ------------------------------------------------------------------ randomisation
    @abstractmethod
    def draw(self, spec: ExperimentSpec, product: str, k: int, ctx: DesignContext) -> Draw:
        """Arm, P(not control) and window state of ``product`` in period ``k``."""

    def period_draws(
        self, spec: ExperimentSpec, products: Sequence[str], k: int, ctx: DesignContext
    ) -> tuple[np.ndarray, list[Draw]]:
        """Every product's draw in period k, as (index into the distinct draws, distinct draws).

        Equal to ``draw`` product by product; designs with a faster path override it.
        """
        index: dict[Draw, int] = {}
        draws: list[Draw] = []
        codes = np.empty(len(products), dtype=np.int64)
        for i, p in enumerate(products):
            d = self.draw(spec, p, k, ctx)
            c = index.get(d)
            if c is None:
                c = index[d] = len(draws)
                draws.append(d)
            codes[i] = c
        return codes, draws

    @abstractmethod
    def path_probability(
        self,
        spec: ExperimentSpec,
        product: str,
        window: range,
        target: int,
        ctx: DesignContext,
    ) -> float:
        """P(product's arm in every period of ``window`` is arm ``target`` (an index into the
        spec's arm list)) under the design."""

    def phase_blackout(self, spec: ExperimentSpec, k: int) -> bool:
        """True when the design blacks out the whole of period k for every unit."""
        return False

    @abstractmethod
    def periods_share_draws(self, spec: ExperimentSpec) -> bool:
        """True when one draw fixes a unit's arm in more than one period."""

    def spillover(self, spec: ExperimentSpec) -> str | None:
        """How spillover may be estimated: ``"per-period"`` (each period an independent draw:
        per-period estimates whose design variances add), ``"block"`` (one assignment from a
        common start, after a pre-period), or None (periods share draws: the per-period
        variances cannot be added: the worker says so, with :meth:`spillover_note`; or more
        than two arms: see :data:`K_ARM_SPILLOVER_NOTE`)."""
        if spec.n_arms > 2:
            return None
        return None if self.periods_share_draws(spec) else "per-period"

    def spillover_note(self, spec: ExperimentSpec) -> str | None:
        """Why spillover is not identified for ``spec`` (None where :meth:`spillover` says how
        it is): the reason the estimates topic gives an analyst."""
        if spec.n_arms > 2:
            return K_ARM_SPILLOVER_NOTE
        if self.spillover(spec) is not None:
            return None
        return (
            "its periods share one draw of the assignment, so the per-period design variances "
            "cannot be added and no valid interval exists"
        )

    # ------------------------------------------------------------------ analysis
    @abstractmethod
    def estimators(self, spec: ExperimentSpec) -> tuple[EstimatorPlan, ...]:
        """The estimators published for an experiment of this design, primary first."""

    # ------------------------------------------------------------------ simulation
    @abstractmethod
    def example_spec(self, base: Mapping[str, Any], market: MarketFacts) -> ExperimentSpec:
        """The experiment ``compare-designs`` runs for this design on a simulated market.

        ``base`` holds the fields every design shares (id, policies, start, end, time zone,
        allocation, seed); the design adds its units and settings.
        """


def register(design: Design) -> Design:
    """Register ``design`` under its name (see :mod:`controller.design_registry`)."""
    design_registry.register(design)
    return design


def get_design(name: str) -> Design:
    """The design registered as ``name`` (KeyError naming the known designs otherwise)."""
    return cast(Design, design_registry.lookup(name))


def design_of(spec: ExperimentSpec) -> Design:
    """The design an experiment runs."""
    return get_design(spec.design)


# ----------------------------------------------------------------------------- shared draws
def cumulative(shares: Sequence[float]) -> tuple[float, ...]:
    """Cumulative shares, summed left to right (the first is the first share exactly)."""
    return tuple(itertools.accumulate(shares))


def _cum_allocations(spec: ExperimentSpec) -> tuple[float, ...]:
    memo = spec._memo
    cum: tuple[float, ...] | None = memo.get("cum-allocations")
    if cum is None:
        cum = memo["cum-allocations"] = cumulative(spec.allocations())
    return cum


def pick(cum: Sequence[float], u: float) -> int:
    """The first category i with ``u < cum[i]`` (the last one when rounding leaves u above
    every boundary): a U[0, 1) draw made categorical."""
    for i, c in enumerate(cum[:-1]):
        if u < c:
            return i
    return len(cum) - 1


def pick_many(cum: Sequence[float], u: np.ndarray) -> np.ndarray:
    """:func:`pick` of every element of ``u``, as int64 indices."""
    if len(cum) == 2:  # one comparison, as two-arm flips always made
        return (u >= cum[0]).astype(np.int64)
    return np.searchsorted(np.asarray(cum[:-1]), u, side="right").astype(np.int64)


def categorical(spec: ExperimentSpec, *key: object, shares: Sequence[float] | None = None) -> int:
    """A keyed draw of an arm index with P(arm i) = its allocation (``u < cumsum(alloc)``),
    or its share in ``shares`` (an adaptive period's probabilities: the same uniform).

    Two arms: arm 0 (treatment) iff ``u < allocation``, the coin of :func:`bernoulli`.
    """
    cum = _cum_allocations(spec) if shares is None else cumulative(shares)
    return pick(cum, uniform(spec.seed, spec.id, *key))


def categorical_many(
    spec: ExperimentSpec,
    units: Sequence[str],
    suffix: Sequence[object] = (),
    prefix: Sequence[object] = (),
    shares: Sequence[float] | None = None,
) -> np.ndarray:
    """``categorical(spec, *prefix, u, *suffix, shares=shares)`` for every ``u`` in
    ``units``, bit for bit."""
    head = (spec.seed, spec.id, *prefix)
    cum = _cum_allocations(spec) if shares is None else cumulative(shares)
    return pick_many(cum, uniforms(head, units, suffix))


def period_shares(spec: ExperimentSpec, k: int, ctx: DesignContext) -> tuple[float, ...] | None:
    """The arm probabilities period ``k`` is drawn with when they are not the allocations (an
    adaptive ladder's, recorded in ``ctx``); None: the allocations, the fixed draw itself."""
    p = ctx.probabilities.get(k)
    if p is None or tuple(p) == spec.allocations():
        return None
    return tuple(p)


def not_control(spec: ExperimentSpec, shares: Sequence[float] | None) -> float:
    """P(not control) of a draw with ``shares`` (None: the allocations, ``spec.allocation``)."""
    if shares is None:
        return spec.allocation
    return float(sum(p for i, p in enumerate(shares) if i != spec.control_index))


def bernoulli(spec: ExperimentSpec, *key: object) -> Arm:
    """The role of :func:`categorical`'s arm (two arms: P(treatment) = ``spec.allocation``)."""
    return spec.role(categorical(spec, *key))


def complete_split(
    spec: ExperimentSpec,
    strata: Mapping[str, tuple[str, ...]],
    salt: str,
    shares: Sequence[float],
) -> dict[str, int]:
    """Complete randomisation of each stratum into ``len(shares)`` groups, with systematic
    randomised rounding: unit -> its group's index.

    The units of a stratum of n are ranked by their own keyed draw, one keyed U is drawn for
    the stratum, and the unit at rank r joins the first group g with ``r + U < n * c_g``
    (``c`` the cumulative shares). So each group holds ``ceil(n c_g - U) - ceil(n c_{g-1}
    - U)`` units, within 1 of ``n * share_g``, and ``r + U`` is uniform on [0, n): every
    unit is in group g with probability exactly ``share_g``. With two groups the first takes
    ``floor(a n)`` units plus one with probability ``frac(a n)``: the two-arm share.
    """
    key = ("split", salt, tuple(shares))
    memo = spec._memo
    if key in memo:
        return memo[key]  # type: ignore[no-any-return]
    cum = cumulative(shares)
    out: dict[str, int] = {}
    for name, units in strata.items():
        n = len(units)
        u = uniform(spec.seed, spec.id, salt, name, "round")
        # the number of ranks in groups 0..g: floor(x) + 1{U < frac(x)} = ceil(x - U), x = n c_g
        ends = []
        for c in cum[:-1]:
            x = c * n
            ends.append(min(n, math.floor(x) + (1 if u < x % 1 else 0)))
        ends.append(n)
        ranked = sorted(units, key=lambda v: (uniform(spec.seed, spec.id, salt, v), v))
        g = 0
        for r, unit in enumerate(ranked):
            while r >= ends[g]:
                g += 1
            out[unit] = g
    memo[key] = out
    return out


def complete_arms(
    spec: ExperimentSpec, strata: Mapping[str, tuple[str, ...]], salt: str
) -> dict[str, int]:
    """Complete randomisation of each stratum into the spec's arms by allocation: unit ->
    arm index (see :func:`complete_split`)."""
    return complete_split(spec, strata, salt, spec.allocations())


def complete_share(
    spec: ExperimentSpec, strata: Mapping[str, tuple[str, ...]], salt: str
) -> frozenset[str]:
    """The units that :func:`complete_arms` puts in an arm other than control (two arms:
    the treated share, floor(a n) units plus one with probability frac(a n))."""
    key = ("share", salt)
    memo = spec._memo
    if key in memo:
        return memo[key]  # type: ignore[no-any-return]
    control = spec.control_index
    result = frozenset(u for u, i in complete_arms(spec, strata, salt).items() if i != control)
    memo[key] = result
    return result


def split_codes(
    spec: ExperimentSpec, products: Sequence[str], groups: Mapping[str, int], salt: str
) -> np.ndarray:
    """Each product's group in ``groups``, as an int64 array; the array for all the spec's
    products is kept with the spec (a flip maps a million products once)."""
    whole = len(products) == len(spec.all_products()) and list(products) == spec.all_products()
    key = ("split-codes", salt)
    if whole:
        cached = spec._memo.get(key)
        if cached is not None:
            return cached  # type: ignore[no-any-return]
    codes = np.fromiter((groups[p] for p in products), dtype=np.int64, count=len(products))
    if whole:
        spec._memo[key] = codes
    return codes


def member_draws(
    products: Sequence[str], members: frozenset[str], inside: Draw, outside: Draw
) -> tuple[np.ndarray, list[Draw]]:
    """``Design.period_draws`` of a period in which a product's draw depends only on whether
    it is in ``members`` (a share drawn once): codes into [inside, outside]."""
    if inside == outside:
        return np.zeros(len(products), dtype=np.int64), [inside]
    mask = np.fromiter((p in members for p in products), dtype=np.bool_, count=len(products))
    return (~mask).astype(np.int64), [inside, outside]


def arm_draws(
    spec: ExperimentSpec, index: np.ndarray, probability: float
) -> tuple[np.ndarray, list[Draw]]:
    """``Design.period_draws`` from each product's arm index: codes into one draw per arm,
    the control arm's first (codes ``(index - control) mod k``: with two arms, the order of
    [control, treatment] that two-arm flips always had)."""
    k, control = spec.n_arms, spec.control_index
    draws = [arm_draw(spec, (c + control) % k, probability) for c in range(k)]
    if not control:
        return index, draws
    if k == 2:
        return index ^ 1, draws
    codes = index - control
    codes %= k
    return codes, draws


def fixed_path(
    p_first: float, first: Sequence[Arm | int], second: Sequence[Arm | int], target: Arm | int
) -> float:
    """P(all arms in the window == target) for a design with one coin per unit: with
    probability ``p_first`` the unit follows ``first``, else ``second``."""
    return p_first * all(a == target for a in first) + (1 - p_first) * all(
        a == target for a in second
    )


def group_path(shares: Sequence[float], paths: Sequence[Sequence[int]], target: int) -> float:
    """P(all arms in the window are arm ``target``) for a unit that follows path g (its arms
    over the window) with probability ``shares[g]``."""
    # summed in group order from 0.0: with two groups exactly fixed_path's a*x + (1-a)*y
    total = 0.0
    for share, path in zip(shares, paths, strict=True):
        total += share * all(a == target for a in path)
    return total


def p_arm(spec: ExperimentSpec, target: Arm | int) -> float:
    """P(one draw of the design gives arm ``target``): its allocation (a role names an arm of a
    two-arm spec)."""
    return spec.allocations()[spec.index_of(target)]


def arm_paths(
    spec: ExperimentSpec, window: range, inside: Callable[[int], bool], target: int
) -> float:
    """P(all arms in ``window`` are ``target``) for a unit that draws one arm by allocation
    and holds it in the periods where ``inside`` is true, the control arm elsewhere."""
    control = spec.control_index
    paths = [[i if inside(s) else control for s in window] for i in range(spec.n_arms)]
    return group_path(spec.allocations(), paths, target)
