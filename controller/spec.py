"""Experiment specs: what an operator writes (YAML or JSON) to launch an experiment.

A spec is validated completely before anything is published. ``load_spec`` turns every
validation failure into a :class:`~controller.errors.SpecError` whose message names the
field and the rule it breaks, e.g. ``washout: must be shorter than the period (1 day)``.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from controller.errors import SpecError

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class Design(StrEnum):
    TIME_BOUND = "time-bound"
    TRIGGERED = "triggered"
    RANDOM_DAYS = "random-days"
    CROSSOVER = "crossover"
    CLUSTER = "cluster"
    OPTIMAL_SWITCHBACK = "optimal-switchback"


class Arm(StrEnum):
    TREATMENT = "treatment"
    CONTROL = "control"


class ExperimentSpec(BaseModel):
    """One price experiment on a set of products over a time range."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(description="Experiment id: letters, digits, '_', '.', '-'; at most 64.")
    design: Design = Design.RANDOM_DAYS
    products: tuple[str, ...] = Field(default=(), description="Units, when not given as clusters.")
    clusters: dict[str, tuple[str, ...]] = Field(
        default_factory=dict, description="Product classes assigned together (cluster design)."
    )
    treatment_policy: str = Field(min_length=1)
    control_policy: str = Field(min_length=1)
    start: datetime
    end: datetime
    timezone: str = "UTC"
    period: timedelta = timedelta(days=1)
    allocation: float = Field(default=0.5, description="Share of units (or periods) treated.")
    seed: int = 0
    washout: timedelta = timedelta(0)
    design_params: dict[str, Any] = Field(
        default_factory=dict, description="Design-specific settings (see controller/designs.py)."
    )

    @field_validator("id")
    @classmethod
    def _id_ok(cls, v: str) -> str:
        if not _ID.match(v):
            raise ValueError("must be 1-64 letters, digits, '_', '.' or '-', starting alphanumeric")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz_ok(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{v!r} is not an IANA time zone (e.g. 'Europe/Berlin')") from None
        return v

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        if v.tzinfo is None or v.utcoffset() is None:
            raise ValueError("must carry a UTC offset, e.g. 2026-11-23T00:00:00+01:00")
        return v

    @field_validator("allocation")
    @classmethod
    def _alloc_ok(cls, v: float) -> float:
        if not 0.0 < v < 1.0:
            raise ValueError("must be strictly between 0 and 1")
        return v

    @field_validator("period")
    @classmethod
    def _period_ok(cls, v: timedelta) -> timedelta:
        hour = timedelta(hours=1)
        day = timedelta(days=1)
        if v < hour or v % hour:
            raise ValueError("must be a whole number of hours, at least one")
        if v < day and day % v:
            raise ValueError("must divide a day evenly when shorter than a day (1, 2, 3, 4, 6, 8, 12 h)")
        if v > day and v % day:
            raise ValueError("must be a whole number of days when longer than a day")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentSpec:
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
        if self.design == Design.CLUSTER and not self.clusters:
            raise SpecError("clusters", "the cluster design needs product classes in 'clusters'")
        if self.treatment_policy == self.control_policy:
            raise SpecError("treatment_policy", "must differ from control_policy")
        return self

    # ------------------------------------------------------------------ views
    def all_products(self) -> list[str]:
        if self.clusters:
            return [p for members in self.clusters.values() for p in members]
        return list(self.products)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def policy(self, arm: Arm | str) -> str:
        return self.treatment_policy if Arm(arm) == Arm.TREATMENT else self.control_policy

    def to_json(self) -> str:
        return self.model_dump_json()


def load_spec(data: dict[str, Any] | str | bytes) -> ExperimentSpec:
    """Validate a spec given as a mapping or JSON text; raise SpecError naming the field."""
    try:
        if isinstance(data, str | bytes):
            return ExperimentSpec.model_validate_json(data)
        return ExperimentSpec.model_validate(data)
    except ValidationError as exc:
        raise _spec_error(exc) from None


def load_spec_file(path: str | Path) -> ExperimentSpec:
    """Read a YAML or JSON spec file."""
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    try:
        raw = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise SpecError("(file)", f"{p.name} is not valid {'JSON' if p.suffix == '.json' else 'YAML'}: {exc}") from None
    if not isinstance(raw, dict):
        raise SpecError("(file)", f"{p.name} must hold a mapping of spec fields")
    return load_spec(raw)


def _spec_error(exc: ValidationError) -> SpecError:
    err = exc.errors()[0]
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
    return SpecError(field, msg)
