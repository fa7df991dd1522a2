"""Wire schemas: JSON on every topic, versioned by a ``v`` field (currently 1).

Decoders never raise anything but :class:`DecodeError`, whose ``reason`` is a short label
used as the dead-letter reason and as a metric label, and whose message says what was wrong.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from core.units import UNITS_SCALE

SCHEMA_VERSION: Literal[1] = 1
#: the longest reason a command carries (a comment's text is its reason)
REASON_CHARS = 500
MAX_EVENT_BYTES = 64 * 1024
# fullmatch: ``$`` alone would let a trailing newline through ("abc\n")
_ID_RE = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")


def _id(v: str) -> str:
    if not _ID_RE.fullmatch(v):
        raise ValueError("must be 1-128 characters of letters, digits, '_', '.', ':' or '-'")
    return v


def _aware(v: datetime) -> datetime:
    if v.tzinfo is None or v.utcoffset() is None:
        raise ValueError("timestamp must carry a UTC offset")
    return v


def _finite_pos(v: float) -> float:
    if not math.isfinite(v) or v <= 0:
        raise ValueError("must be a finite number above 0")
    return v


Ident = Annotated[str, AfterValidator(_id)]


def is_ident(v: str) -> bool:
    """Whether ``v`` is a valid id (experiment, product, command)."""
    return bool(_ID_RE.fullmatch(v))


#: an actor: a name, or name@host, of letters, digits and ``_ . - + @ : /`` (no spaces)
_ACTOR_RE = re.compile(r"[A-Za-z0-9_.\-+:/]{1,100}(@[A-Za-z0-9_.\-]{1,155})?")


def actor_error(v: str) -> str | None:
    """Why ``v`` is not an actor, or None."""
    if not _ACTOR_RE.fullmatch(v):
        return (
            f"{v!r} is not an actor: a name or name@host of letters, digits and _ . - + : / "
            "(at most 256 characters, no spaces)"
        )
    return None


def _actor(v: str) -> str:
    err = actor_error(v)
    if err is not None:
        raise ValueError(err)
    return v


Actor = Annotated[str, AfterValidator(_actor)]


def actor_refusal(actor: str | None, allowed: str = "") -> str | None:
    """Why a command from ``actor`` is not accepted, or None: it has none, it is malformed, or
    ``allowed`` (comma-separated names, settings.actors) is set and does not name it."""
    if not actor:
        return "a command needs an actor (who issued it: --as or PRICELAB_ACTOR)"
    err = actor_error(actor)
    if err is not None:
        return err
    names = {a.strip() for a in allowed.split(",") if a.strip()}
    if names and actor not in names and actor.split("@", 1)[0] not in names:
        return f"actor {actor!r} is not one of the configured actors (PRICELAB_ACTORS)"
    return None


Instant = Annotated[datetime, AfterValidator(_aware)]
PositiveFinite = Annotated[float, AfterValidator(_finite_pos)]


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    v: Literal[1] = SCHEMA_VERSION


class CompetitorPrice(_Wire):
    product: Ident
    competitor: Ident
    price: PositiveFinite
    observed_at: Instant


#: an ISO 4217 currency code (three capital letters)
_CURRENCY_RE = re.compile(r"[A-Z]{3}")


def units_error(v: float) -> str | None:
    """Why ``v`` is not a sale's units, or None: a finite non-zero number within +-1,000,000
    (negative: a return) in whole thousandths."""
    if not math.isfinite(v) or v == 0 or abs(v) > 1_000_000:
        return "must be a finite number other than 0, within -1000000..1000000 (negative: a return)"
    if abs(v * UNITS_SCALE - round(v * UNITS_SCALE)) > 1e-6:
        return "has more than 3 decimals (the panel counts thousandths of a unit)"
    return None


def _plain_id(v: Any) -> Any:
    if isinstance(v, int | float) and not isinstance(v, bool):
        raise ValueError(
            f"is the number {v!r}: send the id as a JSON string (a number loses leading "
            'zeros: "00121" would read 121)'
        )
    return v


def _zoned(v: Any) -> Any:
    # said before pydantic's own check, which only says "should have timezone info"
    if isinstance(v, str) and _NAIVE_RE.fullmatch(v.strip()):
        raise ValueError(
            f"{v!r} has no time zone: send it with its UTC offset ('Z' or e.g. '+01:00')"
        )
    return v


#: an ISO date-time without a zone (what a shop's till often writes)
_NAIVE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?")

SaleId = Annotated[Ident, BeforeValidator(_plain_id)]


class Sale(_Wire):
    """One sale or return (version 2: v1 had whole positive units only, and no currency).

    ``units`` may be fractional (goods sold by weight; in whole thousandths) and negative (a
    return: ``revenue`` is then the refund, negative, still ``units x unit_price``). Ids are
    strings: a number is refused (its leading zeros are lost). ``occurred_at`` must carry its
    UTC offset. ``currency``, when given, must be the experiment's (the spec's ``currency:``).
    A v1 sale (``v: 1``) is read by the same rules: every v1 sale is a valid v2 sale.
    """

    v: Literal[1, 2] = 2  # type: ignore[assignment]
    event_id: SaleId
    product: SaleId
    units: float = Field(
        ge=-1_000_000,
        le=1_000_000,
        description="Units sold; negative for a return; fractional in whole thousandths (goods "
        "sold by weight). Not 0.",
        json_schema_extra={"not": {"const": 0}},
    )
    revenue: float = Field(
        ge=-1e9,
        le=1e9,
        description="units x unit_price (negative for a return); summed in whole millionths.",
    )
    unit_price: PositiveFinite
    occurred_at: Annotated[Instant, BeforeValidator(_zoned)]
    currency: str | None = Field(
        default=None,
        description="ISO 4217 code (e.g. 'EUR'); checked against the experiment's currency.",
        json_schema_extra={"pattern": "^[A-Z]{3}$"},
    )

    @field_validator("units")
    @classmethod
    def _units_ok(cls, v: float) -> float:
        err = units_error(v)
        if err is not None:
            raise ValueError(err)
        return v

    @field_validator("currency")
    @classmethod
    def _currency_ok(cls, v: str | None) -> str | None:
        if v is not None and not _CURRENCY_RE.fullmatch(v):
            raise ValueError(f"{v!r} is not an ISO 4217 currency code (three capital letters)")
        return v

    @field_validator("revenue")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("must be finite")
        return v

    @model_validator(mode="after")
    def _revenue_matches(self) -> Sale:
        expected = self.units * self.unit_price
        gap = abs(self.revenue - expected)
        if gap > 0.01 and gap > 1e-6 * abs(expected):  # beyond a cent and beyond 1e-6 relative
            raise ValueError(
                f"revenue {self.revenue} does not equal units x unit_price ({expected:.4f})"
            )
        return self

    @property
    def units_milli(self) -> int:
        """The units in whole thousandths, as the panel sums them."""
        return round(self.units * UNITS_SCALE)


class ArmName(StrEnum):
    TREATMENT = "treatment"
    CONTROL = "control"


class AssignmentMessage(_Wire):
    """What a pricing system reads: the policy for a product. Keyed by product.

    The contract (docs/operations.md, "The assignment contract"), per (experiment, product):

    - ``seq`` rises strictly with every message that changes what the pricing system must
      do: a flip, pause, resume, freeze start and end, stop (the guardrail's too), the end,
      and a trigger fire;
    - a copy of the same decision (a producer retry, a decision redone after its worker
      died) keeps its ``seq`` and its content;
    - the message in force is the one with the highest ``seq`` among those whose period has
      begun (``period_start`` not after now): only a trigger fire's is for a period ahead,
      announced, and it takes over at that boundary unless a higher ``seq`` came first;
    - ``status`` says why: ``running`` (the design's arm), ``frozen`` (an operator freeze:
      control), ``paused`` (control), ``stopped`` and ``ended`` (control; the product is
      released).

    ``arm`` is the arm's role. An experiment whose spec lists ``arms:`` (2 to 8 arms) also
    names the arm whose policy is ``policy`` in ``arm_name``, and its ``price_ratio`` (the
    price relative to the control arm's) where the spec gives one; a two-arm shorthand
    spec's messages carry neither key, byte for byte as before arms existed.

    An adaptive ladder's messages (docs/adaptive.md) carry ``probabilities``: each arm's
    probability, by name, that the period's cells were drawn with (recorded before the
    period's first message); every other experiment's messages carry no such key.
    """

    experiment: Ident
    product: Ident
    arm: ArmName = Field(
        description="The arm's role: 'control' for the control arm, 'treatment' for any other."
    )
    arm_name: Ident | None = Field(
        default=None,
        description="The arm's name in the spec's arms: list (absent for a two-arm shorthand "
        "spec); the control arm's while paused, frozen, stopped or ended.",
    )
    policy: str
    price_ratio: PositiveFinite | None = Field(
        default=None,
        description="The arm's price relative to the control arm's, where the spec's arms: "
        "list gives one (absent otherwise).",
    )
    probability: float
    probabilities: dict[Ident, Annotated[float, Field(ge=0.0, le=1.0)]] | None = Field(
        default=None,
        description="An adaptive ladder's only: each arm's probability, by arm name, that "
        "the period's cells were drawn with (docs/adaptive.md; absent otherwise).",
    )
    period: int
    period_start: Instant
    period_end: Instant
    blackout: bool
    blackout_until: Instant | None = None
    blackout_reason: str | None = None
    seq: int = Field(ge=0)
    status: Literal["running", "paused", "stopped", "ended", "frozen"] = "running"

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # the arms: fields are left out when absent, so a two-arm topic is byte-for-byte the
        # same as before they existed
        out: dict[str, Any] = handler(self)
        for name in _ARMS_ONLY:
            if out.get(name, 0) is None:
                del out[name]
        return out


#: the assignment message's keys that only an ``arms:`` spec's messages carry (and
#: ``probabilities``, only an adaptive ladder's)
_ARMS_ONLY = ("arm_name", "price_ratio", "probabilities")


#: what an estimate measures (analysis.metrics.ALL_METRICS: a test keeps the two equal)
Metric = Literal["units", "revenue", "profit", "price", "elasticity"]


class EstimateMessage(_Wire):
    """One running estimate of one metric by one estimator (and segment), keyed by experiment.

    Version 2 (v1 had no metric but units and made every estimate a number): ``metric`` is one
    of :data:`Metric`; an estimate that is not identified (an elasticity whose price change is
    not distinguishable from zero) has ``identified: false``, ``note`` saying why, and no
    effect, SE or interval. Otherwise the fields keep v1's meaning: ``effect`` is a number,
    and ``se`` and the interval are null where the estimator gives no SE (``se_method:
    none``).
    """

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        # what _identified_has_numbers checks, for readers of the JSON Schema
        json_schema_extra={
            "if": {"properties": {"identified": {"const": False}}, "required": ["identified"]},
            "then": {"properties": {"effect": {"type": "null"}}, "required": ["note"]},
            "else": {"properties": {"effect": {"type": "number"}}, "required": ["effect"]},
        },
    )

    v: Literal[2] = 2  # type: ignore[assignment]
    experiment: Ident
    estimator: str
    metric: Metric
    effect: float | None
    se: float | None
    ci_low: float | None
    ci_high: float | None
    alpha: float = 0.05
    pvalue: float | None = None
    se_method: str = "none"
    df: float | None = None  # set: ci and pvalue use Student t with df degrees of freedom
    cs_low: float | None = None
    cs_high: float | None = None
    n_units: int
    n_periods: int
    n_cells: int | None = None
    segment: str | None = None  # set: the estimate of one product segment named by the spec
    pvalue_bh: float | None = None  # with segment: Benjamini-Hochberg adjusted across segments
    as_of: Instant
    truth: float | None = None  # set only by simulations that know it
    identified: bool = True
    note: str | None = None  # set when not identified: why, in one sentence
    # the effect relative to the control mean (the counterfactual mean of the compared cells),
    # with Fieller's interval and the anytime-valid set, which carry the control mean's own
    # uncertainty and its covariance with the treated mean (analysis/ratio.py); all None with
    # relative_note saying why when there is no bounded interval or no relative form
    control_mean: float | None = None
    relative_effect: float | None = None
    relative_ci_low: float | None = None
    relative_ci_high: float | None = None
    relative_cs_low: float | None = None
    relative_cs_high: float | None = None
    relative_note: str | None = None
    # an experiment of more than two arms: one estimate per arm against the control
    arm: Ident | None = Field(
        default=None,
        description="The arm compared with the control, by its name in the spec's arms: list "
        "(absent for a two-arm experiment: treatment against control).",
    )
    sim_ci_low: float | None = Field(
        default=None,
        description="With arm: the interval that covers the k - 1 arms' effects at once with "
        "probability 1 - alpha (null without a finite SE; absent for two arms).",
    )
    sim_ci_high: float | None = Field(default=None, description="With arm: see sim_ci_low.")
    sim_method: Literal["dunnett-t", "dunnett-normal", "bonferroni"] | None = Field(
        default=None,
        description="With arm: how the simultaneous interval was made: Dunnett-type from the "
        "comparisons' joint distribution (t or normal), or Bonferroni at alpha / (k - 1).",
    )
    mcb_low: float | None = Field(
        default=None,
        description="With arm, on units, revenue and profit where the comparisons' joint "
        "distribution is known: Hsu's MCB interval for this arm's effect minus the best "
        "other arm's (the control included; higher is better).",
    )
    mcb_high: float | None = Field(default=None, description="With arm: see mcb_low.")
    in_best_set: bool | None = Field(
        default=None, description="With mcb: mcb_high > 0, the arm may be the best."
    )
    best_set: list[Ident] | None = Field(
        default=None,
        description="With mcb: every arm (the control included) that MCB cannot rule out as "
        "the best.",
    )
    cs_split: int | None = Field(
        default=None,
        ge=1,
        description="With arm: the anytime-valid sequence (cs_low/high) is at level alpha / "
        "cs_split (k - 1 comparisons), so that the k - 1 arms' sequences hold together.",
    )

    @model_validator(mode="after")
    def _identified_has_numbers(self) -> EstimateMessage:
        if self.identified and (self.effect is None or not math.isfinite(self.effect)):
            raise ValueError("an identified estimate needs a finite effect")
        if not self.identified and (self.note is None or self.effect is not None):
            raise ValueError("an estimate that is not identified has a note and no effect")
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # the k-arm fields are left out of a two-arm estimate (no arm), so a two-arm topic is
        # byte-for-byte the same as before they existed
        out: dict[str, Any] = handler(self)
        if out.get("arm") is None:
            for name in _ESTIMATE_ARMS_ONLY:
                out.pop(name, None)
        return out


#: the estimate message's keys that only a k-arm experiment's estimates carry
_ESTIMATE_ARMS_ONLY = (
    "arm", "sim_ci_low", "sim_ci_high", "sim_method", "cs_split", "mcb_low", "mcb_high",
    "in_best_set", "best_set",
)  # fmt: skip


#: the metrics a verdict may hang on (analysis.verdict.DECISION_METRICS)
DecisionMetric = Literal["units", "revenue", "profit"]


class GuardrailStatus(_Wire):
    """One guardrail at a verdict's look: the relative effect on its metric and its
    anytime-valid set (fractions), against the largest tolerated drop (percent).
    ``status``: ``breached`` (the set lies wholly below ``-max_drop_pct``), ``ok`` (wholly
    above it) or ``open``; ``note`` says why a set is missing. With k arms, one per arm and
    guardrail, ``arm`` naming the arm compared with the control."""

    metric: DecisionMetric
    max_drop_pct: float
    status: Literal["ok", "breached", "open"]
    relative_effect: float | None = None
    relative_cs_low: float | None = None
    relative_cs_high: float | None = None
    note: str | None = None
    arm: Ident | None = Field(
        default=None,
        description="k arms: the arm this reading compares with the control; absent for two arms.",
    )

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        out: dict[str, Any] = handler(self)
        if out.get("arm") is None:  # a two-arm guardrail: the message it always was
            out.pop("arm", None)
        return out


class ArmSequence(_Wire):
    """One arm of a k-arm verdict: its decision-metric effect against the control and its
    anytime-valid sequence (at alpha / (k - 1)), absolute and relative."""

    arm: Ident
    effect: float
    cs_low: float | None = None
    cs_high: float | None = None
    relative_effect: float | None = None
    relative_cs_low: float | None = None
    relative_cs_high: float | None = None


class VerdictMessage(_Wire):
    """The verdict of one look, on the estimates topic beside the estimates (``kind:
    verdict`` tells them apart; an estimate has no ``kind``), keyed by experiment.

    ``verdict`` is ``ship``, ``do_not_ship``, ``no_difference`` (keep the control: no effect as
    large as ``mde_pct``, either way) or ``keep_running`` on the decision ``metric``
    by the ``rule`` (one sentence; docs/decision.md), from the primary ``estimator``'s
    anytime-valid confidence sequence (``cs_low``/``cs_high``, and relative to the control
    mean) and the ``guardrails``. ``reason`` says why, in one sentence. ``decided_at``: the
    periods seen at the first decisive look, which later looks repeat. For ``keep_running``,
    ``more_days`` is the number of days still needed for 80% power at ``mde_pct``, or null
    with ``more_days_note`` saying why.

    v2: the word ``no_difference`` and a k-arm guardrail's ``arm`` (a v1 reader knows three
    words and guardrails without an arm).
    """

    v: Literal[2] = 2  # type: ignore[assignment]
    kind: Literal["verdict"] = "verdict"
    experiment: Ident
    as_of: Instant
    verdict: Literal["ship", "do_not_ship", "no_difference", "keep_running"]
    metric: DecisionMetric
    estimator: str
    rule: str
    reason: str
    effect: float
    cs_low: float | None = None
    cs_high: float | None = None
    relative_effect: float | None = None
    relative_cs_low: float | None = None
    relative_cs_high: float | None = None
    alpha: float = 0.05
    n_units: int
    n_periods: int
    guardrails: list[GuardrailStatus] = Field(default_factory=list)
    mde_pct: float | None = None
    more_days: float | None = Field(default=None, ge=0)
    more_days_note: str | None = None
    decided_at: int | None = None
    arm: Ident | None = Field(
        default=None,
        description="k arms: the arm the verdict names (to ship; else the leading arm, whose "
        "figures the message gives); absent for two arms.",
    )
    arms: list[ArmSequence] | None = Field(
        default=None,
        description="k arms: every non-control arm's sequence against the control; absent "
        "for two arms.",
    )

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # a two-arm verdict has no arm: the message it was before k arms
        out: dict[str, Any] = handler(self)
        if out.get("arm") is None:
            out.pop("arm", None)
            out.pop("arms", None)
        return out


class DemandPoint(_Wire):
    """One arm of a price ladder on the curves (analysis.demand.ArmPoint)."""

    arm: Ident
    price_ratio: float
    price_paid_ratio: float | None = None
    units_ratio: float | None = None
    units_ratio_ci_low: float | None = None
    units_ratio_ci_high: float | None = None
    revenue_per_cell: float | None = None
    revenue_per_cell_ci_low: float | None = None
    revenue_per_cell_ci_high: float | None = None
    profit_per_cell: float | None = None
    profit_per_cell_ci_low: float | None = None
    profit_per_cell_ci_high: float | None = None
    n_cells: int


class CurvePoint(_Wire):
    """The fitted curves at one listed price ratio."""

    price_ratio: float
    units_ratio: float | None = None
    revenue: float | None = None
    profit: float | None = None


class DemandReadingWire(_Wire):
    """How the recommended price reads beside the look's verdict (analysis.evidence): the
    verdict decides; the recommended price is evidence, ``headline`` and ``text`` say which."""

    decided: bool
    verdict: str | None = None
    ships: str | None = None
    leading: str | None = None
    tested: str | None = None
    between: list[str] | None = None
    test_next: float | None = None
    headline: str
    text: str


class DemandMessage(_Wire):
    """The demand and profit curves of an experiment whose arms are a price ladder (three
    prices or more), and the price that maximises profit, on the estimates topic beside the
    estimates (``kind: demand``), keyed by experiment (analysis.demand; docs/pricing-methods.md).

    ``elasticity`` is the within-product log-log slope of units on the price paid, with
    Fieller's interval; ``curvature_pvalue`` tests whether one elasticity fits every price.
    With unit costs, ``optimal_price_ratio`` (relative to the control's price) maximises
    expected profit per product-period within ``price_ratio_low``..``price_ratio_high``, with
    a product-bootstrap interval (``interval_method``); ``at_range_edge`` says it is an end of
    the tested range (the best price may lie outside it), ``p_edge`` how often a bootstrap
    replicate's was. ``points`` holds each arm, ``curve`` the fitted curves; ``notes`` say
    what the fit rests on. Without costs, the recommendation fields are null.
    ``profit_change_at_optimum`` is the change of expected profit per product-period at
    ``optimal_price_ratio`` against the control's price, its interval the replicates' curves
    at that same ratio. ``identified`` false (with ``reason``): no interval is published.
    The verdict decides; ``reading`` says how the recommended price reads beside it.
    """

    v: Literal[1] = 1
    kind: Literal["demand"] = "demand"
    experiment: Ident
    as_of: Instant
    estimator: Literal["demand"] = "demand"
    elasticity: float | None = None
    elasticity_ci_low: float | None = None
    elasticity_ci_high: float | None = None
    elasticity_se: float | None = None
    elasticity_df: float | None = None
    elasticity_identified: bool
    curvature: float | None = None
    curvature_se: float | None = None
    curvature_pvalue: float | None = None
    price_ratio_low: float
    price_ratio_high: float
    revenue_elasticity: float | None = None
    cost_elasticity: float | None = None
    control_revenue_per_cell: float | None = None
    control_cost_per_cell: float | None = None
    optimal_price_ratio: float | None = None
    optimal_price_ratio_ci_low: float | None = None
    optimal_price_ratio_ci_high: float | None = None
    optimal_price_ratio_bias: float | None = None
    at_range_edge: bool | None = None
    p_edge: float | None = None
    profit_change_at_optimum: float | None = None
    profit_change_at_optimum_ci_low: float | None = None
    profit_change_at_optimum_ci_high: float | None = None
    relative_profit_change_at_optimum: float | None = None
    #: whether the recommendation has intervals; false with ``reason`` (one sentence) when the
    #: look cannot place them (no costs, an elasticity not identified, the bootstrap's
    #: replicates all beyond one end of the range or too many without a curve)
    identified: bool = True
    reason: str | None = None
    #: the recommended price read beside the look's verdict: evidence, not a decision
    reading: DemandReadingWire | None = None
    interval_method: str
    alpha: float = 0.05
    n_units: int
    n_dropped: int = 0
    points: list[DemandPoint]
    curve: list[CurvePoint]
    notes: list[str] = Field(default_factory=list)


class AdaptiveArmWire(_Wire):
    """One arm of an adaptive ladder's look (analysis.adaptive_live): its mean of the metric
    and the mean's SE, its contrast with the control and the contrast's simultaneous
    anytime-valid sequence (0 and null for the control), whether the sequences leave it in
    the best set, and how many cells' windows held it."""

    arm: Ident
    control: bool = False
    mean: float | None = None
    mean_se: float | None = None
    effect: float | None = None
    effect_se: float | None = None
    cs_low: float | None = None
    cs_high: float | None = None
    in_best_set: bool
    n_cells: int | None = None


class AllocationPeriodWire(_Wire):
    """The probabilities one period's cells were drawn with, one per arm in the spec's
    order, as the controller recorded them before the period started."""

    period: int = Field(ge=0)
    probabilities: list[float]


class AdaptiveMessage(_Wire):
    """An adaptive price ladder's look (issue #57; docs/adaptive.md), on the estimates topic
    beside its estimates (``kind: adaptive``), keyed by experiment.

    The estimates (``estimator: aipw_adaptive``, one per metric and arm) are AIPW on the
    recorded probabilities with simultaneous anytime-valid sequences; this message adds, on
    the allocation's ``metric``, every arm's mean (``arms``), the ``best_set`` (the arms the
    sequences do not show worse than another) and the ``recommended`` arm (the largest mean),
    the probabilities of every period recorded so far (``allocation``: the allocation over
    time), the carryover ``lag`` and the planned ``horizon`` the sequences use, and ``note``:
    which methods are not published for an adaptive allocation, and why."""

    v: Literal[1] = 1
    kind: Literal["adaptive"] = "adaptive"
    experiment: Ident
    as_of: Instant
    estimator: Literal["aipw_adaptive"] = "aipw_adaptive"
    metric: DecisionMetric
    method: Literal["aipw", "ipw"] = "aipw"
    lag: int = Field(ge=0)
    horizon: int = Field(ge=0)
    alpha: float = 0.05
    n_units: int
    n_periods: int
    arms: list[AdaptiveArmWire]
    best_set: list[Ident]
    recommended: Ident
    allocation: list[AllocationPeriodWire]
    note: str


class CommandKind(StrEnum):
    CREATE = "create"
    STOP = "stop"
    PAUSE = "pause"
    RESUME = "resume"
    FREEZE = "freeze"
    UNFREEZE = "unfreeze"
    #: a recorded decision: ship ``arm`` or keep the control, with a reason; with ``stop``
    #: the experiment is stopped by the same command (controller.decision)
    DECISION = "decision"
    #: a comment on the experiment, kept in its audit trail: its text is the ``reason``
    COMMENT = "comment"
    #: save (or replace) a draft: a ``spec`` kept, not launched, under its id
    #: (controller.drafts); a ``create`` of that id launches it
    DRAFT = "draft"
    #: drop the draft ``experiment`` (its id), with a ``reason``
    DISCARD = "discard"


class Command(_Wire):
    """An operator's command. The controller answers each on the replies topic: ``ok`` with
    the state after it (``already`` when it found it so: the same command twice does it
    once), or ``ok: false`` with one sentence (controller.lifecycle).

    v2: the ``decision`` command, with its ``arm`` and ``stop``, and the ``comment`` command,
    whose text is its ``reason`` (a v1 reader knows neither).
    v3: the ``draft`` command (its ``spec``, kept under the spec's id, not launched) and the
    ``discard`` command (the draft's id as ``experiment``, with a ``reason``); a v2 reader
    knows neither.
    A v1 or v2 command is read by the same rules: every v1 or v2 command is a valid v3 one.
    A command is sent at the lowest version that carries its kind, v2 at least (``v`` left
    unset: 3 for a draft or a discard, 2 for the rest), so that a controller that reads only
    v2 still takes every command it knows while the controllers are rolled out."""

    v: Literal[1, 2, 3] = 2  # type: ignore[assignment]
    command_id: Ident
    kind: CommandKind
    experiment: Ident | None = None
    spec: dict[str, Any] | None = None
    freeze: dict[str, Any] | None = None
    freeze_id: Ident | None = None  # unfreeze: the freeze to cancel
    reason: str | None = Field(default=None, max_length=REASON_CHARS)
    backfill: bool = False  # create: a start before now begins in the period in force
    #: decision: the arm to ship, by name, or ``control`` (the control arm, whatever its
    #: name) to keep the control
    arm: Ident | None = None
    #: decision: what it does, when the sender says: true ships ``arm``, by its name exactly
    #: (an arm other than the control named ``control`` too); false keeps the control
    #: (``arm``: its name or ``control``). Absent: ``arm`` alone says (controller.decision)
    ship: bool | None = None
    #: decision: stop the experiment too, in the same command
    stop: bool = False
    #: who issued it (``--as``, PRICELAB_ACTOR, or the OS user at the host); the controller
    #: refuses a command without one, and writes it to the experiment's audit trail
    actor: Actor | None = None
    #: the Kafka principal the sending client authenticated as (its SASL user), where it did;
    #: Kafka does not stamp records with it, so this is what the client presented
    principal: str | None = Field(default=None, max_length=256)

    @model_validator(mode="after")
    def _needs(self) -> Command:
        if "v" not in self.model_fields_set and self.kind in (
            CommandKind.DRAFT,
            CommandKind.DISCARD,
        ):
            object.__setattr__(self, "v", 3)  # a v2 reader dead-letters it: it knows neither
        elif self.kind in (CommandKind.DRAFT, CommandKind.DISCARD) and self.v < 3:
            raise ValueError(
                f"a {self.kind.value} command is v 3: v {self.v} has no {self.kind.value}"
            )
        if self.kind in (CommandKind.CREATE, CommandKind.DRAFT) and self.spec is None:
            raise ValueError(f"a {self.kind.value} command needs a spec")
        if (
            self.kind
            in (
                CommandKind.STOP,
                CommandKind.PAUSE,
                CommandKind.RESUME,
                CommandKind.DECISION,
                CommandKind.COMMENT,
                CommandKind.DISCARD,
            )
            and not self.experiment
        ):
            raise ValueError(f"a {self.kind.value} command needs an experiment")
        if self.kind == CommandKind.FREEZE and self.freeze is None:
            raise ValueError("a freeze command needs a freeze")
        if self.kind == CommandKind.UNFREEZE and not self.freeze_id:
            raise ValueError("an unfreeze command needs a freeze_id")
        if self.kind == CommandKind.DECISION and not self.arm:
            raise ValueError("a decision command needs an arm (or 'control')")
        return self


class CommandReply(_Wire):
    command_id: str
    ok: bool
    experiment: str | None = None
    error: str | None = None
    detail: dict[str, Any] | None = None


class ExperimentEvent(_Wire):
    """The experiment's audit trail, one fact a record: ``command`` (every command the
    controller received, accepted or refused: its id, kind, actor, principal, reason and, for a
    refusal, the sentence), and what the controller did: created, started, flipped, paused,
    resumed, frozen, unfrozen, stopped, ended, backfill, missed_flips, triggered,
    guardrail_tripped, and an adaptive ladder's allocation (a flip whose arm probabilities
    differ from the last drawn period's: ``period``, ``arms``, ``probabilities``,
    ``previous``). Automatic decisions name the worker that took them (``worker``).
    Delivery is at least once: a reader drops a repeat of the same ``command_id`` (commands)
    or of the same kind and period (flips)."""

    experiment: Ident
    kind: str
    at: Instant
    detail: dict[str, Any] = Field(default_factory=dict)


class DeadLetter(_Wire):
    source_topic: str
    reason: str
    error: str
    original_b64: str
    partition: int | None = None
    offset: int | None = None
    at: Instant


class DecodeError(ValueError):
    """An event could not be accepted. ``reason`` is a short label for metrics and the DLQ."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


M = TypeVar("M", bound=_Wire)


def decode(model: type[M], raw: bytes | str, max_bytes: int = MAX_EVENT_BYTES) -> M:
    """Parse and validate one event, or raise DecodeError with a reason label."""
    if raw is None:
        raise DecodeError("empty", "message has no value")
    size = len(raw)
    if size > max_bytes:
        raise DecodeError("too_large", f"message is {size} bytes; the limit is {max_bytes}")
    if size == 0:
        raise DecodeError("empty", "message value is empty")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        # without its context: a validator's ValueError is in it, whose traceback runs back
        # (f_back) to this frame, which would then hold it (``err``) in a reference cycle,
        # and with this frame its callers': the consumer's whole batch (core.errors.kept)
        err = exc.errors(include_url=False, include_context=False, include_input=False)[0]
        kind = err["type"]
        loc = ".".join(str(x) for x in err["loc"]) or "(message)"
        if kind == "json_invalid" or kind == "json_type":
            reason = "malformed_json"
        elif kind == "missing":
            reason = "missing_field"
        elif kind == "extra_forbidden":
            reason = "unknown_field"
        elif kind == "literal_error" and loc == "v":
            reason = "unsupported_version"
        else:
            reason = "invalid_field"
        said = str(err["msg"]).removeprefix("Value error, ")
        if kind == "extra_forbidden":
            # the field by name, and where the fields a message may carry are listed
            said = f"{model.__name__} has no field {loc!r} (docs/contracts lists its fields)"
        return_msg = f"{loc}: {said}"
        raise DecodeError(reason, return_msg) from None
    except (UnicodeDecodeError, RecursionError) as exc:  # defensive: junk bytes, deep nesting
        raise DecodeError("malformed_json", str(exc)[:200]) from None


def encode(msg: BaseModel) -> bytes:
    return msg.model_dump_json().encode()


class AssignmentEncoder:
    """``encode(assignment_message(a, seq, status))`` for a whole flip, without building a
    pydantic model per product.

    One flip publishes up to millions of messages that differ only in the product (and the
    arm). The message is validated and serialised once per distinct rest-of-message; each
    product is spliced into that template. Products that are not plain ids (nothing to
    escape) take the full path. tests/unit/streams/worker/test_assignment_encoder.py checks byte equality
    with the model's own JSON.
    """

    _PLACEHOLDER = "pricelab-product-placeholder"

    def __init__(self, max_templates: int = 4096) -> None:
        self._templates: dict[tuple[Any, ...], tuple[bytes, bytes]] = {}
        self._max = max_templates

    def __len__(self) -> int:
        """The templates held."""
        return len(self._templates)

    def clear(self) -> None:
        """Forget every template (a caller whose keys are never met again, such as a publish
        whose keys hold its period and seq, clears after it)."""
        self._templates.clear()

    def encode(
        self, message: Callable[[str], AssignmentMessage], key: tuple[Any, ...], product: str
    ) -> bytes:
        """``message(product)`` builds the full model; ``key`` is everything else it depends on."""
        if not _ID_RE.fullmatch(product):
            return encode(message(product))
        tpl = self._templates.get(key)
        if tpl is None:
            raw = encode(message(self._PLACEHOLDER))
            marker = b'"product":"' + self._PLACEHOLDER.encode() + b'"'
            head, sep, tail = raw.partition(marker)
            if not sep or marker in tail:
                return encode(message(product))
            if len(self._templates) >= self._max:
                self._templates.clear()
            tpl = self._templates[key] = (head + b'"product":"', b'"' + tail)
        return tpl[0] + product.encode() + tpl[1]

    def template_for(
        self, message: Callable[[str], AssignmentMessage], key: tuple[Any, ...]
    ) -> tuple[bytes, bytes] | None:
        """The template's (head, tail): a plain id ``p`` is encoded ``head + p + tail``; None
        when the message cannot be split around its product."""
        self.encode(message, key, "p")  # builds the template (or finds it unsplittable)
        return self._templates.get(key)

    def encoder_for(
        self,
        message: Callable[[str], AssignmentMessage],
        key: tuple[Any, ...],
        *,
        plain_ids: bool = False,
    ) -> Callable[[str], bytes]:
        """``encode`` with ``message`` and ``key`` fixed, for many products of one template:
        a plain id is spliced in directly, without looking the template up each time.
        ``plain_ids``: the caller checked every product with :func:`all_plain_ids`."""
        tpl = self.template_for(message, key)
        if tpl is None:
            return lambda product: self.encode(message, key, product)
        head, tail = tpl
        if plain_ids:
            return lambda product: b"".join((head, product.encode(), tail))
        ok = _ID_RE.fullmatch

        def encode_one(product: str) -> bytes:
            if ok(product):
                return head + product.encode() + tail
            return encode(message(product))

        return encode_one


_IDS_RE = re.compile(r"[A-Za-z0-9_.:\-]{1,128}(?:\n[A-Za-z0-9_.:\-]{1,128})*")


def all_plain_ids(products: Sequence[str]) -> bool:
    """Whether every product is a plain id (what the assignment message accepts), in one pass."""
    if not products:
        return True
    joined = "\n".join(products)
    # a newline inside a product would pass for a separator
    return joined.count("\n") == len(products) - 1 and _IDS_RE.fullmatch(joined) is not None
