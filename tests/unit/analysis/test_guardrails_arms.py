"""Guardrails on k arms (issue #54, item 5): the analysis worker checks every guardrail on each
arm against the control, each arm's set at alpha / (k - 1) as the verdict's sequences are; an
arm that breaks one is flagged (and trips the guardrail) by name, the other arms are not; a
two-arm experiment's guardrails are read as before."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from analysis.verdict import GuardrailReading, arm_look, decide_arms
from analysis.worker import AnalysisWorker, ExperimentInfo, InMemorySequenceTuning
from controller.clock import ManualClock
from controller.designs import design_of
from controller.spec import ExperimentSpec
from streams.worker.schemas import VerdictMessage

AS_OF = datetime(2026, 1, 1, tzinfo=UTC)
ARMS = [
    {"name": "list", "policy": "list", "allocation": 0.4, "control": True},
    {"name": "harm", "policy": "harm", "allocation": 0.3},
    {"name": "fine", "policy": "fine", "allocation": 0.3},
]


def _info(arms: list[dict] | None, guardrails: list[dict], periods: int = 20) -> ExperimentInfo:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    kw = dict(
        id="e1",
        products=tuple(f"p{i}" for i in range(60)),
        start=start,
        end=start + timedelta(days=periods),
        guardrails=guardrails,
    )
    spec = (
        ExperimentSpec(arms=arms, **kw)
        if arms
        else ExperimentSpec(treatment_policy="t", control_policy="c", **kw)
    )
    design = design_of(spec)
    return ExperimentInfo(
        spec.id,
        spec.design,
        "running",
        spec.model_dump(mode="json") | {"n_periods": periods},
        estimators=design.estimators(spec),
        planned_periods=periods,
        periods_share_draws=design.periods_share_draws(spec),
        arms=spec.n_arms,
    )


def _cells(units_pct: dict[str, float], seed: int = 0, n: int = 60, t: int = 20) -> pd.DataFrame:
    """Random days over the arms of ``units_pct`` (arm -> units change in %, the control's
    first), each drawn with equal probability per product-period; one price for every arm,
    so revenue moves with units."""
    rng = np.random.default_rng(seed)
    names = list(units_pct)
    rows = []
    for i in range(n):
        base, price = rng.uniform(20, 60), rng.uniform(5, 20)
        for k in range(t):
            j = int(rng.integers(len(names)))
            units = float(rng.poisson(base * (1 + units_pct[names[j]] / 100)))
            rows.append(
                {
                    "product": f"p{i}", "period": k, "units": units, "revenue": price * units,
                    "treated": int(j != 0), "probability": 1 - 1 / len(names),
                    "blackout": False, "arm": names[j],
                }
            )  # fmt: skip
    return pd.DataFrame(rows)


class _Source:
    def __init__(self, df: pd.DataFrame, info: ExperimentInfo) -> None:
        self.df, self.info = df, info

    async def experiments(self) -> list[ExperimentInfo]:
        return [self.info]

    async def panel(self, exp_id: str, as_of: datetime) -> pd.DataFrame:
        return self.df


class _Sink:
    def __init__(self) -> None:
        self.trips: list[tuple[str, str, dict]] = []
        self.verdicts: list[dict] = []

    async def publish(self, *args: object) -> None:
        return None

    async def trip(self, experiment: str, metric: str, detail: dict) -> None:
        self.trips.append((experiment, metric, detail))

    async def publish_verdict(self, experiment: str, verdict: dict, as_of: datetime) -> None:
        self.verdicts.append(verdict)


async def _look(df: pd.DataFrame, info: ExperimentInfo) -> _Sink:
    sink = _Sink()
    w = AnalysisWorker(
        _Source(df, info), sink, ManualClock(AS_OF), guardrails=sink, verdicts=sink,
        tuning=InMemorySequenceTuning(),
    )  # fmt: skip
    await w.run_once()
    return sink


async def test_the_arm_that_breaks_a_guardrail_is_flagged_and_the_other_is_not() -> None:
    """Arm ``harm`` sells 30% fewer units, ``fine`` as many as the control: the units
    guardrail (not below -5%) is breached for ``harm`` alone; the trip names it; the verdict
    carries one reading per arm and guardrail and never ships ``harm``."""
    guards = [{"metric": "units", "max_drop_pct": 5}, {"metric": "revenue", "max_drop_pct": 5}]
    info = _info(ARMS, guards)
    sink = await _look(_cells({"list": 0.0, "harm": -30.0, "fine": 0.0}, seed=1), info)
    assert [(m, d["arm"]) for _, m, d in sink.trips] == [("units", "harm")]
    assert sink.trips[0][2]["relative_effect_pct"] < -20
    (v,) = sink.verdicts
    VerdictMessage(experiment="e1", as_of=AS_OF, **v)
    status = {(g["arm"], g["metric"]): g["status"] for g in v["guardrails"]}
    assert status[("harm", "units")] == "breached" and status[("harm", "revenue")] == "breached"
    assert status[("fine", "units")] != "breached" and status[("fine", "revenue")] != "breached"
    assert v["verdict"] != "ship" or v["arm"] != "harm"
    assert "arm harm's guardrail units" in v["reason"]


async def test_no_arm_is_flagged_when_none_breaks_a_guardrail() -> None:
    info = _info(ARMS, [{"metric": "units", "max_drop_pct": 5}])
    sink = await _look(_cells({"list": 0.0, "harm": 0.0, "fine": 0.0}, seed=2), info)
    assert sink.trips == []
    (v,) = sink.verdicts
    assert {g["arm"] for g in v["guardrails"]} == {"harm", "fine"}
    assert all(g["status"] != "breached" for g in v["guardrails"])


async def test_two_arms_are_read_as_before_with_no_arm_in_the_guardrail() -> None:
    info = _info(None, [{"metric": "units", "max_drop_pct": 5}])
    df = _cells({"c": 0.0, "t": -30.0}, seed=1).drop(columns="arm")
    sink = await _look(df, info)
    assert [m for _, m, _ in sink.trips] == ["units"] and "arm" not in sink.trips[0][2]
    (v,) = sink.verdicts
    assert v["verdict"] == "do_not_ship" and "arm" not in v
    assert [sorted(g) for g in v["guardrails"]] == [
        sorted(["metric", "max_drop_pct", "relative_effect", "relative_cs_low",
                "relative_cs_high", "note", "status"])
    ]  # fmt: skip
    wire = VerdictMessage(experiment="e1", as_of=AS_OF, **v).model_dump(mode="json")
    assert "arm" not in wire["guardrails"][0]


def _g(arm: str, low: float, high: float) -> GuardrailReading:
    return GuardrailReading("units", 2.0, (low + high) / 2, low, high, arm=arm)


def _fields(effect: float, low: float, high: float, periods: int = 7) -> dict:
    return {
        "estimator": "fe", "effect": effect, "se": 1.0, "cs_low": low, "cs_high": high,
        "n_units": 40, "n_periods": periods, "control_mean": 100.0,
        "relative_effect": effect / 100.0, "relative_cs_low": low / 100.0,
        "relative_cs_high": high / 100.0,
    }  # fmt: skip


def test_a_breached_arm_is_never_shipped_and_an_open_one_waits() -> None:
    cs = {"a": (1.0, 5.0), "b": (-1.0, 0.5)}
    ok, open_, breached = (-0.01, 0.02), (-0.03, 0.01), (-0.09, -0.03)
    assert arm_look(cs, guardrails={"a": [_g("a", *ok)], "b": [_g("b", *ok)]}) == ("ship", "a")
    assert arm_look(cs, guardrails={"a": [_g("a", *open_)]}) == ("keep_running", None)
    assert arm_look(cs, guardrails={"a": [_g("a", *breached)]}) == ("keep_running", None)
    # a barred arm is out of the others' way: b above 0 and above every unbarred arm
    both = {"a": (1.0, 5.0), "b": (0.5, 0.9)}
    assert arm_look(both, guardrails={"a": [_g("a", *breached)]}) == ("ship", "b")
    # every arm barred or below 0: keep control
    down = {"a": (1.0, 5.0), "b": (-2.0, -0.5)}
    assert arm_look(down, guardrails={"a": [_g("a", *breached)]}) == ("do_not_ship", None)


def test_a_breach_of_the_shipped_arm_after_the_ship_overrules_it_and_only_that_arm() -> None:
    now = {"p95": _fields(3.0, 1.0, 5.0, 9), "p105": _fields(-1.0, -3.0, 0.5, 9)}
    breach = {"p95": [_g("p95", -0.09, -0.03)], "p105": [_g("p105", -0.01, 0.02)]}
    v = decide_arms(
        metric="profit", fields=now, decided="ship", decided_at=7, decided_arm="p95",
        guardrails=breach,
    )  # fmt: skip
    assert (v.verdict, v.arm, v.decided_at) == ("do_not_ship", "p95", 9)
    assert "arm p95's guardrail units" in v.reason
    other = {"p95": [_g("p95", -0.01, 0.02)], "p105": [_g("p105", -0.09, -0.03)]}
    kept = decide_arms(
        metric="profit", fields=now, decided="ship", decided_at=7, decided_arm="p95",
        guardrails=other,
    )  # fmt: skip
    assert (kept.verdict, kept.arm, kept.decided_at) == ("ship", "p95", 7)
