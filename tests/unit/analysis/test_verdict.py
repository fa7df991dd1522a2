"""The verdict (analysis/verdict.py) and the analysis worker's verdict messages."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.verdict import (
    GuardrailReading,
    any_look_power,
    decide,
    decision_metric,
    decode_decision,
    encode_decision,
    latest,
    look_verdict,
    period_days,
    periods_for_power,
)
from analysis.worker import AnalysisWorker, ExperimentInfo, InMemorySequenceTuning
from controller.clock import ManualClock
from core.ports import EstimatorPlan
from streams.worker.schemas import VerdictMessage


def _g(lo: float | None, hi: float | None, drop: float = 2.0) -> GuardrailReading:
    mid = None if lo is None or hi is None else (lo + hi) / 2
    return GuardrailReading("units", drop, mid, lo, hi)


@pytest.mark.parametrize(
    ("cs", "guards", "word"),
    [
        ((0.5, 2.0), [], "ship"),
        ((-2.0, -0.5), [], "do_not_ship"),
        ((-0.5, 2.0), [], "keep_running"),
        ((None, None), [], "keep_running"),
        # up, and units shown not to drop more than 2%
        ((0.5, 2.0), [_g(-0.01, 0.03)], "ship"),
        # up, but units may still drop more than 2%: not yet
        ((0.5, 2.0), [_g(-0.05, 0.01)], "keep_running"),
        # a breached guardrail decides, whatever the decision metric says
        ((0.5, 2.0), [_g(-0.09, -0.03)], "do_not_ship"),
        ((-0.5, 2.0), [_g(-0.09, -0.03)], "do_not_ship"),
        # no bounded relative set for the guardrail: open
        ((0.5, 2.0), [_g(None, None)], "keep_running"),
    ],
)
def test_the_rule_at_one_look(cs, guards, word):
    assert look_verdict(cs[0], cs[1], guards) == word


def test_a_guardrail_is_breached_only_when_its_whole_set_lies_below_the_limit():
    assert _g(-0.05, -0.021).status == "breached"
    assert _g(-0.05, -0.019).status == "open"
    assert _g(-0.019, 0.01).status == "ok"
    assert _g(None, None).status == "open"


def test_the_decision_metric_is_profit_with_every_cost_else_revenue_unless_named():
    assert decision_metric({"products": ["a", "b"], "unit_costs": {"a": 1, "b": 2}}) == "profit"
    assert decision_metric({"products": ["a", "b"], "unit_costs": {"a": 1}}) == "revenue"
    assert decision_metric({"products": ["a"]}) == "revenue"
    assert decision_metric({"clusters": {"c": ["a"]}, "unit_costs": {"a": 1}}) == "profit"
    assert decision_metric({"products": ["a"], "decision_metric": "units"}) == "units"


def test_the_period_in_days_from_the_spec_json():
    assert period_days({"period": "P1D"}) == 1.0
    assert period_days({"period": "PT4H"}) == pytest.approx(4 / 24)
    assert period_days({}) == 1.0


def test_periods_for_power_with_a_fixed_multiplier_is_the_textbook_sample_size():
    """With radius q * se, power is Phi(delta/se_n - q); solving for 80% gives
    n = n0 ((q + z_0.8) se0 / delta)^2, rounded up (worked by hand, not by the code)."""
    q, se0, n0, delta = 2.5, 1.0, 7, 1.2
    need = n0 * ((q + stats.norm.ppf(0.8)) * se0 / delta) ** 2  # 7 * (3.3416/1.2)^2 = 54.28
    assert 54 < need < 55
    got = periods_for_power(delta, se0, n0, lambda se: q * se, max_periods=1000)
    assert got == 55
    # not reachable within the cap: None
    assert periods_for_power(delta, se0, n0, lambda se: q * se, max_periods=40) is None
    # already powered: the look itself
    assert periods_for_power(10.0, se0, n0, lambda se: q * se, max_periods=100) == n0


def _fields(effect: float, se: float, q: float = 2.5, n_periods: int = 7, cm: float = 100.0):
    return {
        "estimator": "fe",
        "effect": effect,
        "se": se,
        "cs_low": effect - q * se,
        "cs_high": effect + q * se,
        "control_mean": cm,
        "relative_effect": effect / cm,
        "relative_cs_low": (effect - q * se) / cm,
        "relative_cs_high": (effect + q * se) / cm,
        "n_units": 40,
        "n_periods": n_periods,
    }


def test_keep_running_says_how_many_more_days_reach_80pct_power_at_the_mde():
    # MDE 2% of a control mean of 100 = 2.0; se 1.0 after 7 daily periods; q = 2.5:
    # n = 7 (3.3416 / 2)^2 = 19.54 -> 20 periods, 13 more days (4-hour periods: 13/6 days)
    v = decide(
        metric="profit",
        fields=_fields(1.0, 1.0),
        mde_pct=2.0,
        planned_periods=14,
        radius=lambda se: 2.5 * se,
    )
    assert v.verdict == "keep_running" and v.more_days == 13.0 and v.more_days_note is None
    assert "still includes 0" in v.reason
    v4h = decide(
        metric="profit",
        fields=_fields(1.0, 1.0),
        mde_pct=2.0,
        planned_periods=14,
        days_per_period=4 / 24,
        radius=lambda se: 2.5 * se,
    )
    assert v4h.more_days == pytest.approx(13 * 4 / 24)
    # no MDE in the spec: no number, and a sentence that says what to give
    none = decide(metric="profit", fields=_fields(1.0, 1.0), radius=lambda se: 2.5 * se)
    assert none.more_days is None and "mde_pct" in (none.more_days_note or "")


def test_a_decisive_look_names_its_figures_and_an_earlier_decision_is_kept():
    v = decide(metric="profit", fields=_fields(-8.0, 1.0), radius=lambda se: 2.5 * se)
    assert v.verdict == "do_not_ship" and v.decided_at == 7 and v.more_days is None
    assert v.reason == "profit -8.0% [-10.5%, -5.5%] lies wholly below 0"
    # a later look whose set includes 0 again repeats the first decisive verdict
    later = decide(
        metric="profit",
        fields=_fields(-1.0, 1.0, n_periods=9),
        decided="do_not_ship",
        decided_at=7,
        radius=lambda se: 2.5 * se,
    )
    assert later.verdict == "do_not_ship" and later.decided_at == 7
    assert "decided after 7 periods" in later.reason
    assert decode_decision(encode_decision("ship", 12)) == ("ship", 12)
    assert decode_decision(encode_decision("do_not_ship", 3)) == ("do_not_ship", 3)
    assert decode_decision(None) == (None, None)


def test_the_message_carries_the_verdict_as_the_contract_says():
    v = decide(
        metric="profit",
        fields=_fields(5.0, 1.0),
        guardrails=[_g(-0.01, 0.04)],
        radius=lambda se: 2.5 * se,
    )
    assert v.verdict == "ship"
    msg = VerdictMessage(experiment="e1", as_of=datetime(2026, 1, 1, tzinfo=UTC), **v.to_dict())
    doc = msg.model_dump(mode="json")
    assert doc["kind"] == "verdict" and doc["guardrails"][0]["status"] == "ok"
    assert "units not below -2%" in doc["rule"]


# ------------------------------------------------------------------ the worker's verdicts
def _cells(effect_pct: float, t: int, n: int = 60, seed: int = 0) -> pd.DataFrame:
    """Random days with revenue and profit (unit cost 4 at a price of 10): a treated cell's
    units change by ``effect_pct`` percent, at the same price."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        base = rng.uniform(20, 60)
        for k in range(t):
            treated = int(rng.random() < 0.5)
            units = float(rng.poisson(base * (1 + effect_pct / 100 * treated)))
            rows.append(
                {
                    "product": f"p{i}",
                    "period": k,
                    "units": units,
                    "revenue": 10.0 * units,
                    "profit": 6.0 * units,
                    "treated": treated,
                    "probability": 0.5,
                    "blackout": False,
                }
            )
    return pd.DataFrame(rows)


class _Source:
    def __init__(self, df: pd.DataFrame, params: dict):
        self.df = df
        self.info = ExperimentInfo("e1", "random-days", "running", params, planned_periods=20)

    async def experiments(self):
        return [self.info]

    async def panel(self, exp_id, as_of):
        return self.df


class _Sink:
    def __init__(self):
        self.estimates = []
        self.verdicts = []

    async def publish(self, experiment, result, as_of, cs):
        self.estimates.append((result, cs))

    async def publish_verdict(self, experiment, verdict, as_of):
        self.verdicts.append(verdict)


def _params(**over):
    products = [f"p{i}" for i in range(60)]
    return {
        "products": products,
        "unit_costs": dict.fromkeys(products, 4.0),
        "period": "P1D",
        "n_periods": 20,
    } | over


async def _look(df, params, tuning=None):
    sink = _Sink()
    w = AnalysisWorker(
        _Source(df, params),
        sink,
        ManualClock(datetime(2026, 1, 1, tzinfo=UTC)),
        verdicts=sink,
        tuning=tuning or InMemorySequenceTuning(),
    )
    await w.run_once()
    return sink


async def test_the_worker_publishes_one_verdict_per_look_on_profit_from_its_primary_estimate():
    sink = await _look(_cells(20.0, t=20), _params())
    (v,) = sink.verdicts
    assert v["metric"] == "profit" and v["verdict"] == "ship"
    # it rests on the profit estimate the worker published first, with its sequence
    primary, cs = next((r, cs) for r, cs in sink.estimates if r.metric == "profit")
    assert v["estimator"] == primary.method and (v["cs_low"], v["cs_high"]) == cs
    assert v["cs_low"] > 0
    VerdictMessage(experiment="e1", as_of=datetime(2026, 1, 1, tzinfo=UTC), **v)


async def test_no_effect_keeps_running_with_the_days_to_power_and_a_harm_is_do_not_ship():
    sink = await _look(_cells(0.0, t=6, seed=3), _params(mde_pct=5.0))
    (v,) = sink.verdicts
    assert v["verdict"] == "keep_running"
    assert v["more_days"] is not None and v["more_days"] > 0
    sink = await _look(_cells(-25.0, t=8, seed=4), _params())
    assert sink.verdicts[0]["verdict"] == "do_not_ship"


def _rise(units_pct: float, n: int, seed: int, t: int = 20) -> pd.DataFrame:
    """A price rise from 10 to 13 (unit cost 4): profit per unit 6 -> 9, units down
    ``units_pct`` percent."""
    df = _cells(units_pct, t=t, n=n, seed=seed)
    treated = df["treated"] == 1
    df.loc[treated, "revenue"] = 13.0 * df.loc[treated, "units"]
    df.loc[treated, "profit"] = 9.0 * df.loc[treated, "units"]
    return df


async def test_a_units_guardrail_decides_against_a_profit_ship_when_it_is_breached():
    """Profit up 38%, units down 10%: with units not allowed below -2% the units' set lies
    wholly below -2% (breached): do not ship; allowed down to -20%, it is shown to hold: ship."""
    df = _rise(-10.0, n=200, seed=5)
    sink = await _look(df, _params(guardrails=[{"metric": "units", "max_drop_pct": 2.0}]))
    (v,) = sink.verdicts
    assert v["verdict"] == "do_not_ship" and v["guardrails"][0]["status"] == "breached"
    assert v["reason"].startswith("guardrail units breached")
    assert v["relative_cs_low"] > 0  # profit alone would have shipped
    loose = await _look(df, _params(guardrails=[{"metric": "units", "max_drop_pct": 20.0}]))
    assert loose.verdicts[0]["verdict"] == "ship"
    assert loose.verdicts[0]["guardrails"][0]["status"] == "ok"


async def test_an_open_guardrail_holds_back_a_ship_and_says_so():
    """Units down 2% on 60 products: the units' set straddles -2% (open); profit is up, but
    the verdict keeps running and says what it waits for."""
    df = _rise(-2.0, n=60, seed=6)
    sink = await _look(df, _params(guardrails=[{"metric": "units", "max_drop_pct": 2.0}]))
    (v,) = sink.verdicts
    g = v["guardrails"][0]
    assert g["relative_cs_low"] < -0.02 < g["relative_cs_high"] and g["status"] == "open"
    assert v["relative_cs_low"] > 0 and v["verdict"] == "keep_running"
    assert "not yet shown: units" in v["reason"]
    assert v["more_days"] is None and "guardrails" in v["more_days_note"]


def test_a_guardrail_breached_after_ship_overrules_it():
    breach = GuardrailReading("units", 2.0, -0.06, -0.09, -0.03)
    v = decide(
        metric="profit",
        fields=_fields(5.0, 1.0, n_periods=12),
        guardrails=[breach],
        decided="ship",
        decided_at=8,
        radius=lambda se: 2.5 * se,
    )
    assert v.verdict == "do_not_ship" and v.decided_at == 12
    assert v.reason.startswith("guardrail units breached after ship was decided (8 periods)")


async def test_more_days_uses_the_sequence_at_the_estimates_own_t_reference():
    """A design clustered on 5 classes: the estimate's df is 4, and its published sequence is
    the t(4) one. ``more_days`` must plan with that sequence: at least
    n0 ((q + z_0.8) se / delta)^2 periods in all, with q the t(4) quantile of the normal
    mixture's narrowest tail (3.035 on the normal): the plain normal multiplier would need
    far fewer."""
    df = _cells(0.0, t=6, n=60, seed=3)
    df["class"] = df["product"].map(lambda p: f"c{int(p[1:]) % 5}")
    params = _params(mde_pct=20.0)
    source = _Source(df, params)
    source.info = ExperimentInfo(
        "e1",
        "cluster",
        "running",
        params,
        estimators=(EstimatorPlan("dm", {"cluster": "class"}),),
        planned_periods=20,
    )
    sink = _Sink()
    worker = AnalysisWorker(
        source, sink, ManualClock(datetime(2026, 1, 1, tzinfo=UTC)), verdicts=sink
    )
    await worker.run_once()
    (v,) = sink.verdicts
    primary = next(r for r, _ in sink.estimates if r.metric == "profit")
    assert primary.df == pytest.approx(4.0, abs=0.01)
    delta = 0.20 * df.loc[df["treated"] == 0, "profit"].mean()
    q_t = stats.t.isf(stats.norm.sf(3.035122), primary.df)  # about 7.1
    at_least = 5 * ((q_t + stats.norm.ppf(0.8)) * primary.se / delta) ** 2 - 5
    plain = 5 * ((3.035122 + stats.norm.ppf(0.8)) * primary.se / delta) ** 2 - 5
    assert plain < 0.5 * at_least
    assert v["more_days"] is not None and v["more_days"] >= at_least - 1


def test_the_latest_verdict_is_the_latest_look_whatever_the_order_read():
    a = {"as_of": "2026-03-02T00:00:00+00:00", "verdict": "keep_running"}
    b = {"as_of": "2026-03-03T00:00:00Z", "verdict": "ship"}
    c = {"as_of": "2026-03-01T00:00:00.500000+00:00", "verdict": "keep_running"}
    assert latest([a, b, c]) == b and latest([b, a]) == b and latest([]) is None
    # two messages of one look: the last given
    assert latest([b, b | {"verdict": "do_not_ship"}])["verdict"] == "do_not_ship"


async def test_the_first_decisive_verdict_is_kept_by_a_second_worker_sharing_the_store():
    tuning = InMemorySequenceTuning()
    first = await _look(_cells(-25.0, t=8, seed=4), _params(), tuning)
    assert first.verdicts[0]["verdict"] == "do_not_ship"
    # a later look on data that no longer decides (no effect) repeats the decision
    later = await _look(_cells(0.0, t=12, seed=9), _params(), tuning)
    (v,) = later.verdicts
    assert v["verdict"] == "do_not_ship" and v["decided_at"] == 8
    assert math.isfinite(v["effect"])


def test_any_look_power_at_the_end_alone_is_the_horizon_criterion():
    """With one look (the end), the path is its end: decided iff |effect| exceeds the
    sequence's radius at its own target, 3.035 SE."""
    assert any_look_power(3.1, 1.0, 28, first_look=28) == 1.0
    assert any_look_power(-3.1, 1.0, 28, first_look=28) == 1.0
    assert any_look_power(3.0, 1.0, 28, first_look=28) == 0.0


def test_any_look_power_keeps_the_error_rate_and_adds_to_the_end_alone():
    """Ends drawn as the planner's simulations give them: with no effect (ends ~ N(0, 1)) the
    verdict decides at some look in at most alpha = 5% (the sequence's guarantee); with an
    effect of 3 SE at the end, more often than at the end alone (P(|N(3, 1)| > 3.035) = 0.486)."""
    rng = np.random.default_rng(1)
    ends = rng.standard_normal(2000)
    aa = np.mean([any_look_power(x, 1.0, 28, draws=50, rng=rng) for x in ends])
    assert aa <= 0.05
    ends = rng.standard_normal(2000) + 3.0
    end_alone = np.mean(np.abs(ends) > 3.035122)
    assert end_alone == pytest.approx(0.486, abs=0.03)
    power = np.mean([any_look_power(x, 1.0, 28, draws=50, rng=rng) for x in ends])
    assert power > end_alone + 0.05


def test_any_look_power_equals_whole_paths_simulated_directly():
    """An independent reference: whole drifted paths X(I) = theta I + W(I) at the looks (no
    bridge), decided when |X(I_t) / I_t| exceeds the sequence's radius at SE 1/sqrt(I_t). The
    bridges to ends drawn from the paths' own end distribution must give the same share."""
    from analysis.confseq import ConfidenceSequence

    rng = np.random.default_rng(7)
    periods, se_end, n = 28, 1.0, 20_000
    looks = np.arange(2, periods + 1, dtype=float)
    info = looks / periods / se_end**2
    radius = ConfidenceSequence(target_se=se_end).radius(se_end * np.sqrt(periods / looks))
    for theta in (1.0, 2.0):
        steps = np.diff(np.concatenate([[0.0], info]))
        x = np.cumsum(rng.standard_normal((n, len(looks))) * np.sqrt(steps), axis=1)
        x += theta * info[None, :]
        direct = float((np.abs(x / info[None, :]) > radius[None, :]).any(axis=1).mean())
        ends = theta + se_end * rng.standard_normal(4000)
        bridged = float(
            np.mean([any_look_power(e, se_end, periods, draws=20, rng=rng) for e in ends])
        )
        mc = np.sqrt(direct * (1 - direct) / n) + np.sqrt(direct * (1 - direct) / 4000)
        assert bridged == pytest.approx(direct, abs=4 * mc), (theta, direct, bridged)


async def test_a_later_breach_overrules_a_kept_ship_once_and_says_so():
    """Worker level: a ship decided at one look, then a look whose units guardrail is
    breached: do not ship, kept; a later look without the breach repeats it with the reason
    naming the breach, not a 'first decisive look'."""
    tuning = InMemorySequenceTuning()
    guard = [{"metric": "units", "max_drop_pct": 2.0}]
    ship = await _look(_rise(5.0, n=200, seed=5, t=10), _params(guardrails=guard), tuning)
    assert ship.verdicts[0]["verdict"] == "ship"
    breach = await _look(_rise(-10.0, n=200, seed=8, t=15), _params(guardrails=guard), tuning)
    (v,) = breach.verdicts
    assert v["verdict"] == "do_not_ship" and v["reason"].startswith("guardrail units breached")
    assert v["decided_at"] == 15
    calm = await _look(_rise(5.0, n=200, seed=9, t=20), _params(guardrails=guard), tuning)
    (w,) = calm.verdicts
    assert w["verdict"] == "do_not_ship" and w["decided_at"] == 15
    assert w["reason"].startswith("a guardrail was breached after 15 periods")


async def test_an_unreadable_kept_decision_does_not_loop():
    """A store whose first-writer-wins answer cannot be read back (NaN) gives the look's own
    verdict after one retry, never a RecursionError that would stop every experiment."""

    class Broken(InMemorySequenceTuning):
        async def fix(self, experiment: str, key: str, target_se: float) -> float:
            return float("nan") if key.startswith("verdict:") else target_se

    sink = await _look(_cells(-25.0, t=8, seed=4), _params(), Broken())
    assert sink.verdicts[0]["verdict"] == "do_not_ship"
