"""Experiment specs: what an operator writes (YAML or JSON) to launch an experiment.

A spec is validated completely before anything is published. ``load_spec`` turns every
validation failure into a :class:`~controller.errors.SpecError` whose message names the
field and the rule it breaks, e.g. ``washout: must be shorter than the period (1 day)``.
"""

from __future__ import annotations

import json
import math
import numbers
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, Self, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from controller import design_registry
from controller.adaptive import (
    ADAPTIVE_DESIGNS,
    AdaptiveAllocation,
    check_floor,
    check_held,
    warn_held,
    window_draws,
)
from controller.arms import (
    ALLOCATION_SUM_TOLERANCE,
    LIVE_GUARDRAILS,
    MAX_ARMS,
    MIN_ARMS,
    NO_ARM_GUARDRAILS,
    SHORTHAND,
    ArmSpec,
    check_arms,
)
from controller.durations import parse_duration
from controller.errors import SpecError
from controller.ids import check_id

_SEED = re.compile(r"[+-]?[0-9]+", re.ASCII)
_M = TypeVar("_M", bound=BaseModel)


__all__ = [
    "ALLOCATION_SUM_TOLERANCE",
    "AdaptiveAllocation",
    "LIVE_GUARDRAILS",
    "NO_ARM_GUARDRAILS",
    "MAX_ARMS",
    "MIN_ARMS",
    "SHORTHAND",
    "Arm",
    "ArmSpec",
    "ExperimentSpec",
    "check_id",
    "load_model",
    "load_spec",
    "load_spec_file",
    "load_spec_text",
    "spec_error",
]


class Arm(StrEnum):
    """An arm's role: the control arm, or one of the others (all "treatment")."""

    TREATMENT = "treatment"
    CONTROL = "control"


class _Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TimeBoundSettings(_Settings):
    """Time-bound: a fixed random share of units is treated from ``start_period`` on."""

    start_period: int = Field(
        default=0, ge=0, description="First treated period; earlier periods are all control."
    )


class TriggerRule(_Settings):
    """Triggered: a competitor undercut starts a product's own treatment-or-control window.

    The rule fires for a product when the lowest price among ``competitors`` (all when empty)
    is at least ``undercut_pct`` percent below our reference price, continuously for at least
    ``sustained_minutes``. Only the first fire counts. The window opens at the next period
    boundary and lasts ``window_periods`` periods; its arm is drawn at trigger time with
    P(treatment) = ``allocation``.
    """

    undercut_pct: float = Field(gt=0, lt=100, description="Minimum undercut, percent.")
    sustained_minutes: float = Field(default=0, ge=0, description="Minimum duration, minutes.")
    window_periods: int = Field(ge=1, description="Length of the treatment or control window.")
    competitors: tuple[str, ...] = Field(
        default=(), description="Competitors that count; all if empty."
    )
    matched_control: bool = Field(
        default=False,
        description="When a product is treated, hold a not-yet-triggered product of its class "
        "in control for the same window (needs clusters).",
    )
    reference_prices: dict[str, float] = Field(
        default_factory=dict,
        description="Our reference price per product; a product without one never triggers.",
    )

    @field_validator("reference_prices")
    @classmethod
    def _positive_prices(cls, v: dict[str, float]) -> dict[str, float]:
        bad = [p for p, x in v.items() if not (x > 0 and x < float("inf"))]
        if bad:
            raise ValueError(f"must be positive finite prices; bad for {sorted(bad)[:3]}")
        return v


class CrossoverSettings(_Settings):
    """Crossover: groups A and B swap arms every ``phase_periods``; each phase opens in blackout."""

    phase_periods: int = Field(ge=1, description="Length of one phase, in periods.")
    blackout_periods: int = Field(
        default=0, ge=0, description="Periods at the start of every phase whose data is discarded."
    )


class ClusterMode(StrEnum):
    SWITCHBACK = "switchback"
    FIXED = "fixed"


class ClusterSettings(_Settings):
    """Cluster-randomised: each class is one unit; its products always share an arm."""

    mode: ClusterMode = Field(
        default=ClusterMode.SWITCHBACK,
        description="'switchback': each class is redrawn every period; 'fixed': drawn once.",
    )


class OptimalSwitchbackSettings(_Settings):
    """Optimal switchback (Bojinov, Simchi-Levi & Zhao 2023) for carryover order m."""

    carryover_order: int = Field(ge=0, description="m: outcomes depend on at most m past periods.")


#: the spec's design settings blocks; each belongs to the design whose ``settings_field`` names it
SETTINGS_BLOCKS = ("time_bound", "triggered", "crossover", "cluster", "optimal_switchback")


class Guardrail(_Settings):
    """Stop the experiment when the treatment is confidently harmful on ``metric``.

    The analysis worker evaluates it at every run with the anytime-valid confidence sequence of
    the difference in means (so looking at every run keeps its error rate): it trips when the
    whole sequence set of the relative effect (Fieller's, with the control mean's own
    uncertainty) lies below ``-max_drop_pct`` percent. ``profit`` needs every product's unit
    cost.
    """

    metric: Literal["units", "revenue", "profit"] = "revenue"
    max_drop_pct: float = Field(gt=0, lt=100, description="Largest tolerated drop, percent.")


class ExperimentSpec(BaseModel):
    """One price experiment on a set of products over a time range."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(description="Experiment id: letters, digits, '_', '.', '-'; at most 64.")
    design: str = Field(
        default="random-days", description="A registered design (see `pricelab schedule`)."
    )
    products: tuple[str, ...] = Field(default=(), description="Units, when not given as clusters.")
    clusters: dict[str, tuple[str, ...]] = Field(
        default_factory=dict, description="Product classes assigned together (cluster design)."
    )
    treatment_policy: str | None = Field(
        default=None,
        min_length=1,
        description="Pricing policy of treated products (the pricing system's name); required "
        "unless arms is given: with control_policy, allocation and price_ratio, the shorthand "
        "for two arms.",
    )
    control_policy: str | None = Field(
        default=None,
        min_length=1,
        description="Pricing policy of control products (usually today's); required unless "
        "arms is given.",
    )
    arms: tuple[ArmSpec, ...] = Field(
        default=(),
        description="2 to 8 arms, each {name, policy, allocation, price_ratio (optional), "
        "control (true on one)}, in place of the two-arm shorthand (docs/designs.md); with "
        "more than two, the analysis worker estimates each arm against the control live, "
        "gives a verdict that names an arm, and checks each guardrail on each arm (the "
        "optimal-switchback design: no verdict, and guardrails refused; docs/decision.md).",
    )
    price_ratio: float | None = Field(
        default=None,
        description="The treatment's price relative to control's (1.10: a 10% rise; 0.95: a "
        "5% cut): the price change that `pricelab simulate` and `compare-designs` model.",
    )
    start: datetime = Field(
        description="When the experiment starts, ISO 8601, e.g. 2026-03-23T00:00:00+01:00."
    )
    end: datetime = Field(description="When the experiment ends, written like start.")
    timezone: str = Field(
        default="UTC", description="IANA time zone of the periods' calendar, e.g. Europe/Berlin."
    )
    period: timedelta = Field(
        default=timedelta(days=1), description="Length of a period, ISO 8601: P1D or hours (PT6H)."
    )
    allocation: float = Field(default=0.5, description="Share of units (or periods) treated.")
    seed: int = Field(default=0, description="Seed of the design's draws (same seed, same arms).")
    washout: timedelta = Field(
        default=timedelta(0),
        description="Time after each switch whose sales are discarded, ISO 8601 (e.g. PT2H).",
    )
    time_bound: TimeBoundSettings | None = Field(
        default=None, description="Settings of the time-bound design (docs/designs.md)."
    )
    triggered: TriggerRule | None = Field(
        default=None, description="The triggered design's rule (docs/designs.md)."
    )
    crossover: CrossoverSettings | None = Field(
        default=None, description="Settings of the crossover design (docs/designs.md)."
    )
    cluster: ClusterSettings | None = Field(
        default=None, description="Settings of the cluster design (docs/designs.md)."
    )
    optimal_switchback: OptimalSwitchbackSettings | None = Field(
        default=None, description="Settings of the optimal switchback design (docs/designs.md)."
    )
    guardrails: tuple[Guardrail, ...] = Field(
        default=(),
        description="Metrics the decision must not hurt, e.g. [{metric: units, max_drop_pct: "
        "2}]: a breach stops the experiment and makes the verdict 'do not ship'; 'ship' needs "
        "each shown to hold (docs/decision.md). With k arms, each arm is checked against the "
        "control.",
    )
    decision_metric: Literal["units", "revenue", "profit"] | None = Field(
        default=None,
        description="The metric the verdict (ship, do not ship, keep running) hangs on; by "
        "default profit when every product has a unit cost, else revenue (docs/decision.md).",
    )
    mde_pct: float | None = Field(
        default=None,
        gt=0,
        lt=100,
        description="The smallest relative effect on the decision metric worth detecting, in "
        "percent (e.g. the MDE `pricelab plan` reports): a 'keep running' verdict then says "
        "how many more days reach 80% power at it, and the verdict is 'no difference' (keep "
        "the control) once every arm's sequence lies within +-mde_pct of the control.",
    )
    substitutes: tuple[tuple[str, str, float], ...] = Field(
        default=(),
        description="Substitutable-items graph among the experiment's products as (a, b, weight) "
        "edges (see `pricelab graph build`); the analysis worker then publishes "
        "spillover-adjusted estimates next to the naive ones.",
    )
    unit_costs: dict[str, float] = Field(
        default_factory=dict,
        description="Cost of one unit of each product, in the currency of its price: profit "
        "(revenue - units x unit cost) is estimated when every product has one; a product "
        "without a cost leaves profit unpublished, never computed from a made-up cost.",
    )
    currency: str | None = Field(
        default=None,
        description="ISO 4217 code of the experiment's prices and revenue (e.g. EUR): a live "
        "sale that names another currency is dead-lettered with reason 'currency' (one "
        "without a currency is taken to be in this one).",
    )
    adaptive: AdaptiveAllocation | None = Field(
        default=None,
        description="An adaptive price ladder (`allocation: adaptive` is the same with every "
        "setting at its default): after a warmup at the arms' allocations, each period's arm "
        "probabilities follow the latest look (Thompson or top-two on the decision metric, a "
        "floor, a decaying uniform share), recorded per cell before the period starts; only "
        "with an arms: list on a design drawn per product-period (random-days, "
        "optimal-switchback, cluster switchback); docs/adaptive.md.",
    )
    segments: dict[str, tuple[str, ...]] = Field(
        default_factory=dict,
        description="Named product segments (category, brand, price band), disjoint: the "
        "analysis worker then also publishes the primary estimate of each segment, with the "
        "segment in the message and Benjamini-Hochberg adjusted p-values across segments.",
    )

    # memo of derived values (period count, group draws); never serialised
    _memo: dict[Any, Any] = PrivateAttr(default_factory=dict)

    @field_validator("id")
    @classmethod
    def _id_ok(cls, v: str) -> str:
        return check_id(v)

    @field_validator("design")
    @classmethod
    def _design_ok(cls, v: str) -> str:
        try:
            design_registry.lookup(v)
        except KeyError as exc:
            raise ValueError(str(exc.args[0])) from None
        return v

    @field_validator("currency")
    @classmethod
    def _currency_ok(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Z]{3}", v):
            raise ValueError(f"{v!r} is not an ISO 4217 code (three capital letters, e.g. EUR)")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz_ok(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{v!r} is not an IANA time zone (e.g. 'Europe/Berlin')") from None
        return v

    @model_validator(mode="before")
    @classmethod
    def _allocation_adaptive(cls, data: Any) -> Any:
        """``allocation: adaptive`` is ``adaptive:`` with its defaults (a block given beside
        it keeps its settings)."""
        if isinstance(data, Mapping) and data.get("allocation") == "adaptive":
            out = dict(data)
            del out["allocation"]
            if out.get("adaptive") is None:
                out["adaptive"] = {}
            return out
        return data

    @model_validator(mode="before")
    @classmethod
    def _local_times(cls, data: Any) -> Any:
        """A start or end written without a UTC offset (a date, ``2026-12-07``, or a local
        date-time) is read in the spec's time zone: a date is its midnight there. A wall time
        that a clock change skips or repeats there is refused, naming the offset to write."""
        if not isinstance(data, Mapping):
            return data
        try:
            zone = ZoneInfo(str(data.get("timezone", "UTC")))
        except (ZoneInfoNotFoundError, ValueError):
            return data  # the timezone field's own validator says what is wrong with it
        out = dict(data)
        for name in ("start", "end"):
            if name in out:
                out[name] = _in_zone(out[name], zone, name)
        return out

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        if v.tzinfo is None or v.utcoffset() is None:
            raise ValueError(
                "must carry a UTC offset (e.g. 2026-11-23T00:00:00+01:00) unless the spec's "
                "timezone is a valid IANA name to read it in"
            )
        return v

    @field_validator("period", "washout", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        # ISO 8601 (PT2H) or a short form (2h, 30m, 1d); else one sentence naming both
        return parse_duration(v)

    @field_validator("seed", mode="before")
    @classmethod
    def _seed_ok(cls, v: Any) -> Any:
        # the seed fixes every assignment: refuse what pydantic's lax int would round or
        # reinterpret ("0.0", 3.0, True, "1_000") instead of guessing what was meant
        if isinstance(v, bool) or not isinstance(v, numbers.Integral | str):
            raise ValueError(f"must be a whole number, not {v!r}")
        if isinstance(v, str) and not _SEED.fullmatch(v.strip()):
            raise ValueError(f"must be a whole number written in digits, not {v!r}")
        return v

    @field_validator("allocation")
    @classmethod
    def _alloc_ok(cls, v: float) -> float:
        if not 0.0 < v < 1.0:
            raise ValueError("must be strictly between 0 and 1")
        return v

    @field_validator("price_ratio", mode="before")
    @classmethod
    def _price_ratio_ok(cls, v: Any) -> Any:
        # a ratio, not a flag or a percentage: refuse what float() would read as something else
        if v is None:
            return v
        ok = isinstance(v, numbers.Real) and not isinstance(v, bool)
        if not ok or not (math.isfinite(v) and v > 0):
            raise ValueError(
                f"must be a finite number above 0, the treatment's price over control's "
                f"(1.10 for a 10% rise, 0.95 for a 5% cut), not {v!r}"
            )
        return float(v)

    @field_validator("period")
    @classmethod
    def _period_ok(cls, v: timedelta) -> timedelta:
        hour = timedelta(hours=1)
        day = timedelta(days=1)
        if v < hour or v % hour:
            raise ValueError("must be a whole number of hours, at least one")
        if v < day and day % v:
            raise ValueError(
                "must divide a day evenly when shorter than a day (1, 2, 3, 4, 6, 8, 12 h)"
            )
        if v > day and v % day:
            raise ValueError("must be a whole number of days when longer than a day")
        return v

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> ExperimentSpec:
        if self.end <= self.start:
            raise SpecError("end", "must be after start")
        if self.washout < timedelta(0):
            raise SpecError("washout", "must not be negative")
        if self.washout >= self.period:
            raise SpecError("washout", f"must be shorter than the period ({self.period})")
        if self.products and self.clusters:
            raise SpecError("products", "give either products or clusters, not both")
        units = self.all_products()
        if not units:
            raise SpecError("products", "at least one product is required (or clusters)")
        if len(set(units)) != len(units):
            dup = sorted({p for p in units if units.count(p) > 1})[:3]
            raise SpecError("products", f"each product may appear once; repeated: {dup}")
        if any(not p for p in units):
            raise SpecError("products", "product ids must be non-empty")
        if self.substitutes:
            known = set(units)
            stray = sorted({x for a, b, _ in self.substitutes for x in (a, b)} - known)[:3]
            if stray:
                raise SpecError(
                    "substitutes", f"edges must join products of the experiment; not in it: {stray}"
                )
        if self.segments:
            self._check_segments(set(units))
        if self.unit_costs:
            self._check_costs(set(units))
        if any(g.metric == "profit" for g in self.guardrails) and not self.costs_all_products():
            raise SpecError("guardrails", "a profit guardrail needs unit_costs for every product")
        if self.decision_metric == "profit" and not self.costs_all_products():
            raise SpecError(
                "decision_metric", "profit needs unit_costs for every product of the experiment"
            )
        self._check_arms()
        self._check_adaptive()  # first: its refusal of a design says more than the design's
        self._check_design_settings()
        if not (info.context or {}).get(STORED):  # a refusal at creation (load_spec's docstring)
            self._check_adaptive_held()  # last: the optimal switchback's blocks are valid by now
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # a shorthand spec dumps exactly as before arms existed (stored specs are compared by
        # their JSON, and older workers refuse an unknown key); an arms spec without the
        # shorthand's fields, which it fills in only as views
        out: dict[str, Any] = handler(self)
        if self.arms:
            for name in SHORTHAND:
                out.pop(name, None)
        else:
            out.pop("arms", None)
        if out.get("currency", 0) is None:  # a spec without one dumps as before it existed
            del out["currency"]
        if out.get("adaptive", 0) is None:  # likewise a fixed allocation
            del out["adaptive"]
        return out

    def _check_arms(self) -> None:
        """The arm list's rules, one SpecError sentence each; a two-arm ``arms:`` list fills
        the shorthand's fields (treatment = the other arm) so two-arm readers see its values,
        a longer one sets ``allocation`` to P(not control) and leaves the policies None."""
        if not self.arms:
            if self.treatment_policy is None:
                raise SpecError("treatment_policy", "is required (or give an arms: list)")
            if self.control_policy is None:
                raise SpecError("control_policy", "is required (or give an arms: list)")
            if self.treatment_policy == self.control_policy:
                raise SpecError("treatment_policy", "must differ from control_policy")
            return
        given = [
            f for f in SHORTHAND if f in self.model_fields_set and getattr(self, f) is not None
        ]
        if given:
            raise SpecError(
                "arms",
                f"give either arms or the two-arm shorthand ({', '.join(SHORTHAND)}), not "
                f"both; {given[0]} is given too",
            )
        arms = self.arms
        check_arms(arms)
        k = len(arms)
        control = next(a for a in arms if a.control)
        others = [a for a in arms if not a.control]
        fill: dict[str, Any] = {"allocation": 1.0 - control.allocation}
        if k == 2:
            fill |= {
                "treatment_policy": others[0].policy,
                "control_policy": control.policy,
                "allocation": others[0].allocation,
                "price_ratio": others[0].price_ratio,
            }
        for name, value in fill.items():
            object.__setattr__(self, name, value)

    def _check_adaptive(self) -> None:
        """An adaptive allocation's rules, one SpecError sentence naming ``adaptive``."""
        a = self.adaptive
        if a is None:
            return
        if not self.arms:
            raise SpecError(
                "adaptive",
                "needs an arms: list (the two-arm shorthand fixes one share for the whole "
                "experiment); list the arms with their starting allocations",
            )
        if self.design not in ADAPTIVE_DESIGNS:
            raise SpecError(
                "adaptive",
                f"the {self.design} design does not draw a new arm for each product-period, "
                f"so its probabilities cannot follow the looks; use one of "
                f"{', '.join(sorted(ADAPTIVE_DESIGNS))}",
            )
        if self.cluster is not None and self.cluster.mode != "switchback":
            raise SpecError(
                "adaptive",
                "the cluster design's fixed mode draws each class's arm once; use mode "
                "switchback to adapt",
            )
        why = check_floor(a, self.n_arms)
        if why:
            raise SpecError("adaptive.floor", why)
        if a.floor == 0 and a.uniform_mix.start == 0:
            raise SpecError(
                "adaptive.uniform_mix",
                "with no uniform share and no floor an arm's probability may reach 0, and the "
                "sequences' validity needs some in every period (MAD's delta_t); give "
                "uniform_mix.start or floor above 0",
            )
        if a.metric == "profit" and not self.costs_all_products():
            raise SpecError(
                "adaptive.metric", "profit needs unit_costs for every product of the experiment"
            )

    def _check_adaptive_held(self) -> None:
        """An adaptive floor keeps every arm :data:`controller.adaptive.MIN_HELD_DRAWS`
        expected draws a period whose carryover window held it (docs/adaptive.md, "The floor
        against the products and the carryover"): the draws are products, or a cluster
        design's classes; the window spans two draws on an optimal switchback with carryover."""
        if self.adaptive is None:
            return
        from controller.periods import n_periods

        units, unit, draws = self.held_terms()
        why = check_held(self.adaptive, self.n_arms, units, unit, draws, n_periods(self))
        if why:
            raise SpecError("adaptive.floor", why)

    def held_warning(self) -> str | None:
        """One sentence when the adaptive floor is accepted but leaves some arm fewer than
        :data:`controller.adaptive.WIDE_HELD_DRAWS` expected held draws a period (valid, but
        wide sequences), naming the floor that keeps that many; None otherwise. The CLI
        prints it on stderr (``experiment create``, ``schedule``, ``simulate --spec``)."""
        if self.adaptive is None:
            return None
        from controller.periods import n_periods

        units, unit, draws = self.held_terms()
        return warn_held(self.adaptive, self.n_arms, units, unit, draws, n_periods(self))

    def held_terms(self) -> tuple[int, tuple[str, str], int]:
        """What the adaptive floor's check counts (docs/adaptive.md, "The floor against the
        products and the carryover"): the independent draws of a period (products, or a
        cluster design's classes), their name (singular, plural), and the fresh draws a
        carryover window spans (two on an optimal switchback with carryover, else one)."""
        clustered = self.design == "cluster"
        units = len(self.clusters) if clustered else len(self.all_products())
        order = self.optimal_switchback.carryover_order if self.optimal_switchback else 0
        unit = ("class", "classes") if clustered else ("product", "products")
        return units, unit, window_draws(order)

    def adaptive_metric(self) -> str | None:
        """The metric an adaptive allocation seeks the best arm on (None: not adaptive)."""
        if self.adaptive is None:
            return None
        if self.adaptive.metric is not None:
            return self.adaptive.metric
        if self.decision_metric is not None:
            return self.decision_metric
        return "profit" if self.costs_all_products() else "revenue"

    def _check_costs(self, known: set[str]) -> None:
        stray = sorted(set(self.unit_costs) - known)[:3]
        if stray:
            raise SpecError("unit_costs", f"names products not in the experiment: {stray}")
        bad = sorted(p for p, c in self.unit_costs.items() if not (math.isfinite(c) and c >= 0))
        if bad:
            p = bad[0]
            raise SpecError(
                "unit_costs",
                f"product {p!r} has unit cost {self.unit_costs[p]}: a cost must be a finite "
                "number of at least 0",
            )

    def costs_all_products(self) -> bool:
        """Whether every product has a unit cost (profit is estimated only then)."""
        return bool(self.unit_costs) and len(self.unit_costs) == len(self.all_products())

    def costs_of(self, products: Sequence[str]) -> list[float] | None:
        """The unit costs of ``products`` in their order; None unless every product of the
        experiment has one (profit is then not estimated)."""
        if not self.costs_all_products():
            return None
        return [self.unit_costs[p] for p in products]

    def _check_segments(self, known: set[str]) -> None:
        seen: dict[str, str] = {}
        for name, members in self.segments.items():
            if not name.strip():
                raise SpecError("segments", "segment names must be non-empty")
            if not members:
                raise SpecError("segments", f"segment {name!r} has no products")
            stray = sorted(set(members) - known)[:3]
            if stray:
                raise SpecError(
                    "segments", f"segment {name!r} names products not in the experiment: {stray}"
                )
            if self.clusters and len({self.class_of(p) for p in members}) < 2:
                raise SpecError(
                    "segments",
                    f"segment {name!r} lies in one class; the cluster design's estimate "
                    "clusters by class and needs products of at least two classes",
                )
            for p in members:
                if p in seen:
                    raise SpecError(
                        "segments",
                        f"product {p!r} is in segments {seen[p]!r} and {name!r}; "
                        "segments must not overlap",
                    )
                seen[p] = name

    def _check_design_settings(self) -> None:
        """A settings block only with its own design; the design's default block filled in when
        optional and absent; then the design's own rules (:meth:`Design.validate`)."""
        design = design_registry.lookup(self.design)
        for name in SETTINGS_BLOCKS:
            if getattr(self, name) is not None and name != design.settings_field:
                owner = next(
                    (d.name for d in design_registry.load_all() if d.settings_field == name),
                    name.replace("_", "-"),
                )
                raise SpecError(
                    name, f"only allowed with design '{owner}' (design is '{self.design}')"
                )
        field_name = design.settings_field
        if field_name is not None and getattr(self, field_name) is None:
            if design.settings_required:
                raise SpecError(field_name, f"is required for design '{self.design}'")
            object.__setattr__(self, field_name, design.default_settings())
        design.validate(self)

    def __eq__(self, other: object) -> bool:
        # the memo of derived values is not part of the spec's identity
        if not isinstance(other, ExperimentSpec):
            return NotImplemented
        return self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]  # holds a dict of clusters

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy with a fresh memo (derived values of the original may not hold for it)."""
        copy = super().model_copy(update=update, deep=deep)
        private = dict(copy.__pydantic_private__ or {})
        private["_memo"] = {}
        object.__setattr__(copy, "__pydantic_private__", private)
        return copy

    # ------------------------------------------------------------------ views
    def all_products(self) -> list[str]:
        if self.clusters:
            return [p for members in self.clusters.values() for p in members]
        return list(self.products)

    def units(self) -> frozenset[str]:
        """All products, as a set (memoised)."""
        units: frozenset[str] = self._memo.get("units") or frozenset(self.all_products())
        self._memo["units"] = units
        return units

    def class_of(self, product: str) -> str | None:
        """The class (cluster) a product belongs to, or None when units are a plain list."""
        return self.class_map().get(product)

    def class_map(self) -> Mapping[str, str]:
        """product -> its class (empty when units are a plain list), memoised: for loops over
        many products, where a ``class_of`` call per product costs more than the lookup."""
        memo = self._memo
        classes: dict[str, str] | None = memo.get("class_of")
        if classes is None:
            classes = {p: c for c, members in self.clusters.items() for p in members}
            memo["class_of"] = classes
        return classes

    def strata(self) -> dict[str, tuple[str, ...]]:
        """Groups of products randomised together or within: classes, else one stratum."""
        return dict(self.clusters) if self.clusters else {"": tuple(self.products)}

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def arm_list(self) -> tuple[ArmSpec, ...]:
        """The experiment's arms in draw order: the ``arms:`` list, or the shorthand's two,
        [treatment, control] (memoised)."""
        memo = self._memo
        arms: tuple[ArmSpec, ...] | None = memo.get("arms")
        if arms is None:
            if self.arms:
                arms = self.arms
            else:
                assert self.treatment_policy is not None and self.control_policy is not None
                a, r = self.allocation, self.price_ratio
                arms = (
                    ArmSpec(
                        name="treatment", policy=self.treatment_policy, price_ratio=r, allocation=a
                    ),
                    ArmSpec(
                        name="control",
                        policy=self.control_policy,
                        price_ratio=None if r is None else 1.0,
                        allocation=1.0 - a,
                        control=True,
                    ),
                )
            memo["arms"] = arms
        return arms

    @property
    def n_arms(self) -> int:
        return len(self.arm_list())

    @property
    def control_index(self) -> int:
        """The control arm's place in :meth:`arm_list` (1 for the shorthand)."""
        memo = self._memo
        i: int | None = memo.get("control_index")
        if i is None:
            i = memo["control_index"] = next(j for j, a in enumerate(self.arm_list()) if a.control)
        return i

    def allocations(self) -> tuple[float, ...]:
        """Each arm's allocation, in :meth:`arm_list` order (the shorthand: a, 1 - a)."""
        memo = self._memo
        alloc: tuple[float, ...] | None = memo.get("allocations")
        if alloc is None:
            alloc = memo["allocations"] = tuple(a.allocation for a in self.arm_list())
        return alloc

    def role(self, index: int) -> Arm:
        """The role of arm ``index``: CONTROL for the control arm, TREATMENT for any other."""
        return Arm.CONTROL if index == self.control_index else Arm.TREATMENT

    def index_of(self, arm: Arm | str | int) -> int:
        """An arm's index: an int as it is; a role of a two-arm spec (TREATMENT: the one arm
        that is not control); with more arms a role names no single arm (ValueError)."""
        if not isinstance(arm, str):
            if not 0 <= arm < self.n_arms:
                raise ValueError(f"arm index {arm} outside 0..{self.n_arms - 1}")
            return int(arm)
        role = Arm(arm)
        if role == Arm.CONTROL:
            return self.control_index
        if self.n_arms != 2:
            raise ValueError(
                f"'treatment' names no single arm of the {self.n_arms}-arm experiment {self.id!r}"
            )
        return 1 - self.control_index

    def policy(self, arm: Arm | str | int) -> str:
        """The policy of an arm, given by index or (two arms) by role."""
        return self.arm_list()[self.index_of(arm)].policy

    @property
    def control_arm(self) -> ArmSpec:
        return self.arm_list()[self.control_index]

    def two_arm_only(self, what: str) -> None:
        """A SpecError naming ``arms`` when the spec has more than two arms: ``what`` (a
        command, the live path) reads experiments as treatment against control only."""
        if self.n_arms > 2:
            raise SpecError("arms", f"{self.n_arms}-arm experiments {what}")

    def check_live(self) -> None:
        """What the live path (``experiment create``, the controller's create) refuses of a
        valid spec, one SpecError sentence: guardrails on more than two arms of a design whose
        guardrails the analysis worker cannot check per arm (it checks each arm against the
        control on every other design)."""
        if self.n_arms > 2 and self.guardrails and self.design in NO_ARM_GUARDRAILS:
            raise SpecError("guardrails", LIVE_GUARDRAILS.format(k=self.n_arms, design=self.design))

    def live_support(self) -> str | None:
        """What the live path gives an experiment of more than two arms, in one sentence
        (None for two arms): what ``pricelab schedule`` says beside the table."""
        if self.n_arms <= 2:
            return None
        try:
            self.check_live()
        except SpecError as exc:
            return f"experiment create refuses this spec: {exc}"
        if self.design in NO_ARM_GUARDRAILS:
            return (
                f"{self.n_arms} arms of the {self.design} design: the analysis worker publishes "
                "the estimates it can fit per arm, but no verdict yet (its estimators need each "
                "cell's probability per arm)"
            )
        guarded = ", and checks each guardrail on each arm" if self.guardrails else ""
        return (
            f"{self.n_arms} arms: the analysis worker estimates each arm against the control "
            f"live, with a verdict that names an arm{guarded} (docs/decision.md, 'k arms')"
        )

    def to_json(self) -> str:
        return self.model_dump_json()


def _in_zone(value: Any, zone: ZoneInfo, name: str) -> Any:
    """``value`` made aware in ``zone`` when it is a date or a date-time without an offset
    (as YAML gives them, or as ISO text); anything else as it is, for the field to judge.
    A SpecError naming ``name`` when that wall time does not exist in ``zone`` or exists
    twice (a daylight-saving change): which instant was meant is not guessed."""
    shown = value.strip() if isinstance(value, str) else None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            return value
        if parsed.tzinfo is not None:
            return value
        value = parsed
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            return value
        local = value
    elif isinstance(value, date):
        local = datetime.combine(value, time(0))
    else:
        return value
    _refuse_clock_change(local, zone, name, shown or value.isoformat())
    return local.replace(tzinfo=zone)


def _refuse_clock_change(local: datetime, zone: ZoneInfo, name: str, shown: str) -> None:
    """A SpecError when the wall time ``local`` is skipped or repeated by a clock change in
    ``zone``: the two readings of the wall time (``fold``) then have different offsets."""
    first, second = local.replace(tzinfo=zone, fold=0), local.replace(tzinfo=zone, fold=1)
    if first.utcoffset() == second.utcoffset():
        return
    if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != local:
        after = first.astimezone(zone)
        raise SpecError(
            name,
            f"{shown!r} does not exist in {zone.key} (a clock change skips it); write the "
            f"instant with its UTC offset, e.g. {first.isoformat()} ({after:%H:%M} local "
            "after the change)",
        )
    raise SpecError(
        name,
        f"{shown!r} happens twice in {zone.key} (the clocks go back over it); write which "
        f"with its UTC offset: {first.isoformat()} (the first) or {second.isoformat()} "
        "(the second)",
    )


#: the validation context of a spec read back from the store (:func:`load_spec` ``stored``)
STORED = "stored"


def load_spec(data: dict[str, Any] | str | bytes, *, stored: bool = False) -> ExperimentSpec:
    """Validate a spec given as a mapping or JSON text; raise SpecError naming the field.

    ``stored``: the spec of an experiment already created, read back from the store. The
    checks that refuse a spec at creation without making it unreadable (the adaptive floor
    against the products and the carryover, added after adaptive ladders could be created)
    are left out: a spec is immutable once created, and one accepted then must still load,
    or every read of the fleet (the list, the controller's tick) fails on it."""
    return load_model(ExperimentSpec, data, {STORED: True} if stored else None)


def load_model(
    model: type[_M], data: dict[str, Any] | str | bytes, context: dict[str, Any] | None = None
) -> _M:
    """Validate ``model`` (a spec, a freeze) given as a mapping or JSON text; raise SpecError
    naming the field."""
    try:
        if isinstance(data, str | bytes):
            return model.model_validate_json(data, context=context)
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        raise spec_error(exc, _absent_required(model, data)) from None


def _absent_required(model: type[BaseModel], data: Any) -> list[str]:
    """The shorthand's policies absent from a spec without ``arms`` (required then, though
    the model cannot say so field by field): to name them beside a misspelt field."""
    if model is not ExperimentSpec:
        return []
    if isinstance(data, str | bytes):
        try:
            data = json.loads(data)
        except ValueError:
            return []
    if not isinstance(data, Mapping) or data.get("arms"):
        return []
    return [f for f in ("treatment_policy", "control_policy") if data.get(f) is None]


def load_spec_file(path: str | Path) -> ExperimentSpec:
    """Read a YAML or JSON spec file."""
    p = Path(path)
    return load_spec_text(p.read_bytes(), p.name)


def load_spec_text(data: str | bytes, name: str) -> ExperimentSpec:
    """A spec written as a file holds it: JSON when ``name`` ends in ``.json``, YAML otherwise;
    ``name`` (the file's, or what a pasted spec is called) names it in the sentences. The one
    reader of a spec's text: ``pricelab experiment create`` reads its file through it, and the
    console a pasted or uploaded spec."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise SpecError("(file)", f"{name} is not a UTF-8 text file") from None
    else:
        text = data
    try:
        raw = json.loads(text) if name.endswith(".json") else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise SpecError(
            "(file)", f"{name} is not valid JSON: {exc.msg} at line {exc.lineno}"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError("(file)", f"{name} is not valid YAML: {problem}{where}") from None
    if not isinstance(raw, dict):
        raise SpecError("(file)", f"{name} must hold a mapping of spec fields")
    return load_spec(raw)


def spec_error(exc: ValidationError, absent: Sequence[str] = ()) -> SpecError:
    """The first validation failure as a SpecError naming its field. A required field that is
    missing beside an unknown one (a misspelling: ``treatmnt_policy``) names both; ``absent``:
    fields required by a rule across fields (a spec's policies, without ``arms``)."""
    errors = exc.errors()
    missing = [e for e in errors if e["type"] == "missing"]
    unknown = [e for e in errors if e["type"] == "extra_forbidden"]
    if unknown and (missing or absent):
        # the policies come before every other required field, as they did when required
        need = absent[0] if absent else ".".join(str(x) for x in missing[0]["loc"])
        extra = ", ".join(repr(".".join(str(x) for x in e["loc"])) for e in unknown)
        return SpecError(
            need,
            f"is required, and {extra} {'is' if len(unknown) == 1 else 'are'} not a known spec "
            "field (misspelt?)",
        )
    err = errors[0]
    ctx_err = (err.get("ctx") or {}).get("error")
    if isinstance(ctx_err, SpecError):
        return ctx_err
    field = ".".join(str(x) for x in err["loc"]) or "(spec)"
    msg = str(err["msg"])
    msg = msg.removeprefix("Value error, ")
    if err["type"] == "missing":
        msg = "is required"
    elif err["type"] == "extra_forbidden":
        msg = "is not a known spec field"
    elif err["type"] == "string_type" and isinstance(err.get("input"), int | float):
        # YAML reads an unquoted 00001 as the number 1 (00010 as 8): ids are text
        msg += f" (got the number {err['input']!r}): quote ids in YAML, e.g. '00001'"
    return SpecError(field, msg)
