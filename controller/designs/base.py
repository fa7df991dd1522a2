"""The ``Design`` interface, the draws designs share, and the keyed randomness they draw from.

A design is one module: a subclass of :class:`Design` registered with
:func:`controller.design_registry.register`. It answers, for an experiment spec:

- ``draw``: the arm, P(treatment) and window state of one unit in one period;
- ``period_draws``: the same for every product of a period at once (the flip's vectorised
  path; the default asks ``draw`` product by product);
- ``path_probability``: P(a unit's arms in periods k-lag..k are all one arm), the weight
  denominator of the Horvitz-Thompson switchback estimator;
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
"""

from __future__ import annotations

import hashlib
import math
import struct
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
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
    without changing every schedule), with the key text built once and the 64-bit to float
    conversion (round to nearest, then an exact division by 2**64) done by numpy.
    """
    head = "".join(str(x) + "\x1f" for x in prefix)
    tail = "".join("\x1f" + str(x) for x in suffix)
    b2 = hashlib.blake2b
    raw = b"".join([b2(f"{head}{u}{tail}".encode(), digest_size=8).digest() for u in units])
    return np.frombuffer(raw, dtype=">u8").astype(np.float64) / _TWO64


class Window(StrEnum):
    """Where a cell stands relative to its unit's randomised window.

    A cell whose arm was drawn by the design is ``RANDOMISED`` and its probability is the
    design P(treatment). A cell outside the unit's randomised window (time-bound periods before
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
    """What a design says about one cell: arm, P(treatment) and window state."""

    arm: Arm
    probability: float
    window: Window = Window.RANDOMISED
    matched_to: str | None = None


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
        """Arm, P(treatment) and window state of ``product`` in period ``k``."""

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
        target: Arm,
        ctx: DesignContext,
    ) -> float:
        """P(product's arms in every period of ``window`` are ``target``) under the design."""

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
        variances cannot be added: the worker says so, with :meth:`spillover_note`)."""
        return None if self.periods_share_draws(spec) else "per-period"

    def spillover_note(self, spec: ExperimentSpec) -> str | None:
        """Why spillover is not identified for ``spec`` (None where :meth:`spillover` says how
        it is): the reason the estimates topic gives an analyst."""
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
def bernoulli(spec: ExperimentSpec, *key: object) -> Arm:
    """A keyed coin with P(treatment) = ``spec.allocation``."""
    return Arm.TREATMENT if uniform(spec.seed, spec.id, *key) < spec.allocation else Arm.CONTROL


def complete_share(
    spec: ExperimentSpec, strata: Mapping[str, tuple[str, ...]], salt: str
) -> frozenset[str]:
    """Complete randomisation within each stratum, with randomised rounding.

    A stratum of n units treats floor(a*n) units, plus one more with probability
    frac(a*n); the units are ranked by their own keyed draw. Every unit's marginal
    probability is therefore exactly ``a = spec.allocation``, and each stratum's share is
    within 1/n of it.
    """
    key = ("share", salt)
    memo = spec._memo
    if key in memo:
        return memo[key]  # type: ignore[no-any-return]
    chosen: set[str] = set()
    for name, units in strata.items():
        x = spec.allocation * len(units)
        m = math.floor(x) + (1 if uniform(spec.seed, spec.id, salt, name, "round") < x % 1 else 0)
        ranked = sorted(units, key=lambda u: (uniform(spec.seed, spec.id, salt, u), u))
        chosen.update(ranked[:m])
    result = frozenset(chosen)
    memo[key] = result
    return result


def member_draws(
    products: Sequence[str], members: frozenset[str], inside: Draw, outside: Draw
) -> tuple[np.ndarray, list[Draw]]:
    """``Design.period_draws`` of a period in which a product's draw depends only on whether
    it is in ``members`` (a share drawn once): codes into [inside, outside]."""
    if inside == outside:
        return np.zeros(len(products), dtype=np.int64), [inside]
    mask = np.fromiter((p in members for p in products), dtype=np.bool_, count=len(products))
    return (~mask).astype(np.int64), [inside, outside]


def fixed_path(p_first: float, first: Sequence[Arm], second: Sequence[Arm], target: Arm) -> float:
    """P(all arms in the window == target) for a design with one coin per unit: with
    probability ``p_first`` the unit follows ``first``, else ``second``."""
    return p_first * all(a == target for a in first) + (1 - p_first) * all(
        a == target for a in second
    )


def p_arm(spec: ExperimentSpec, target: Arm) -> float:
    """P(one coin of the design gives ``target``)."""
    return spec.allocation if target == Arm.TREATMENT else 1.0 - spec.allocation
