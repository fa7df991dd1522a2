"""The decisive "no meaningful difference" (issue #54, item 1): when the decision metric's
anytime-valid relative sequence lies wholly within +-mde_pct of the control (every arm's, with
k arms), the verdict is ``no_difference``: keep the control. Ship and do not ship come first;
the first decisive look is final, as for them. docs/decision.md, "No difference"."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest

from analysis.confseq import ConfidenceSequence
from analysis.verdict import (
    GuardrailReading,
    arm_look,
    decide,
    decide_arms,
    decode_decision,
    encode_decision,
    look_verdict,
)
from streams.worker.schemas import VerdictMessage

AS_OF = datetime(2026, 1, 1, tzinfo=UTC)


def _fields(effect: float, low: float, high: float, periods: int = 7) -> dict:
    """A decision estimate whose control mean is 100: the relative figures are the absolute
    ones over 100."""
    return {
        "estimator": "fe", "effect": effect, "se": 1.0, "cs_low": low, "cs_high": high,
        "n_units": 40, "n_periods": periods, "control_mean": 100.0,
        "relative_effect": effect / 100.0, "relative_cs_low": low / 100.0,
        "relative_cs_high": high / 100.0,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("rel", "guards", "word"),
    [
        ((-0.02, 0.03), (), "no_difference"),  # within +-5%, across 0
        ((-0.06, 0.03), (), "keep_running"),  # a loss of 6% not ruled out
        ((-0.02, 0.05), (), "keep_running"),  # the band's edge is not inside it
        ((0.01, 0.04), (), "ship"),  # a gain shown, if smaller than the MDE: ship first
        ((-0.04, -0.01), (), "do_not_ship"),  # a loss shown: do not ship first
        ((0.01, 0.04), ((-0.03, 0.02),), "keep_running"),  # up, a guardrail still open
        ((-0.02, 0.03), ((-0.03, 0.02),), "no_difference"),  # keeping control needs none
        ((-0.02, 0.03), ((-0.09, -0.03),), "do_not_ship"),  # a breach comes first
    ],
)
def test_the_rule_at_one_look(rel, guards, word) -> None:
    g = [GuardrailReading("units", 2.0, sum(x) / 2, *x) for x in guards]
    assert look_verdict(100 * rel[0], 100 * rel[1], g, rel, 5.0) == word


def test_without_an_mde_or_a_relative_sequence_nothing_is_called_no_difference() -> None:
    assert look_verdict(-2.0, 3.0, [], (-0.02, 0.03), None) == "keep_running"
    assert look_verdict(-2.0, 3.0, [], (None, None), 5.0) == "keep_running"


def test_the_verdict_says_no_difference_why_and_keeps_it() -> None:
    v = decide(metric="profit", fields=_fields(0.5, -2.0, 3.0), mde_pct=5.0)
    assert (v.verdict, v.decided_at) == ("no_difference", 7)
    assert "within +-5%" in v.reason and "keep the control" in v.reason
    assert "no difference (keep control)" in v.rule
    msg = VerdictMessage(experiment="e1", as_of=datetime(2026, 1, 1, tzinfo=UTC), **v.to_dict())
    assert msg.verdict == "no_difference"
    later = decide(
        metric="profit", fields=_fields(6.0, 1.0, 11.0, 9), mde_pct=5.0,
        decided="no_difference", decided_at=7,
    )  # fmt: skip
    assert (later.verdict, later.decided_at) == ("no_difference", 7)
    assert "kept" in later.reason
    shipped = decide(metric="profit", fields=_fields(2.0, 0.5, 3.5), mde_pct=5.0)
    assert shipped.verdict == "ship" and "smaller than the mde_pct of 5%" in shipped.reason


def test_a_kept_no_difference_is_one_value_that_an_older_worker_reads_as_keep_control() -> None:
    code = encode_decision("no_difference", 12)
    assert decode_decision(code) == ("no_difference", 12)
    assert decode_decision(encode_decision("do_not_ship", 12)) == ("do_not_ship", 12)
    assert decode_decision(encode_decision("ship", 12)) == ("ship", 12)
    # the reading before issue #54: negative is do not ship, the control kept either way
    assert code < 0 and int(abs(code)) == 12


def test_k_arms_say_no_difference_only_when_every_arm_is_within_the_band() -> None:
    cs = {"a": (-2.0, 3.0), "b": (-3.0, 2.0)}
    rel = {a: (lo / 100, hi / 100) for a, (lo, hi) in cs.items()}
    assert arm_look(cs, relative=rel, mde_pct=5.0) == ("no_difference", None)
    wide = dict(rel, b=(-0.03, 0.06))
    assert arm_look(cs, relative=wide, mde_pct=5.0) == ("keep_running", None)
    # an arm shown above 0 is not "no difference": it waits to be shipped
    up = {"a": (0.5, 3.0), "b": (-3.0, 3.5)}
    up_rel = {a: (lo / 100, hi / 100) for a, (lo, hi) in up.items()}
    assert arm_look(up, relative=up_rel, mde_pct=5.0) == ("keep_running", None)
    v = decide_arms(
        metric="profit",
        fields={"p95": _fields(0.5, -2.0, 3.0), "p105": _fields(-0.5, -3.0, 2.0)},
        mde_pct=5.0,
    )
    assert v.verdict == "no_difference" and "every arm's profit lies wholly within" in v.reason
    assert "no difference" in v.rule


def _paths(
    relative_effect: float, seeds: int, mde_pct: float | None, periods: int = 20
) -> dict[str, int]:
    """Seeded two-arm experiments looked at every period: the running mean of per-period
    differences (SE 1 per period) against a control mean of 100 known exactly, its
    sequence tuned to the planned horizon as the worker tunes it, the verdict of
    :func:`decide` at each look, the first decisive one kept. Returns how often each final
    verdict came."""
    rng = np.random.default_rng(11)
    target = 1.0 / np.sqrt(periods)
    seq = ConfidenceSequence(target_se=target, alpha=0.05, intersect=False)
    counts: dict[str, int] = {}
    scale = 100.0 * target  # the control mean: an MDE of 5% is 5 SEs of the planned end
    for _ in range(seeds):
        diffs = relative_effect * scale + rng.normal(0.0, 1.0, periods)
        decided, at = None, None
        for n in range(2, periods + 1):
            est, se = float(diffs[:n].mean()), 1.0 / np.sqrt(n)
            r = float(seq.radius(se))
            lo, hi = est - r, est + r
            fields = {
                "estimator": "fe", "effect": est, "se": se, "cs_low": lo, "cs_high": hi,
                "n_units": 40, "n_periods": n, "control_mean": scale,
                "relative_effect": est / scale, "relative_cs_low": lo / scale,
                "relative_cs_high": hi / scale,
            }  # fmt: skip
            v = decide(metric="profit", fields=fields, mde_pct=mde_pct, decided=decided,
                       decided_at=at)  # fmt: skip
            if decided is None and v.verdict != "keep_running":
                decided, at = v.verdict, v.decided_at
        key = decided or "keep_running"
        counts[key] = counts.get(key, 0) + 1
    return counts


@pytest.mark.slow  # a study over many seeds or runs: the slow suite (./run test -m slow)
def test_an_effect_as_large_as_the_mde_is_rarely_called_no_difference() -> None:
    """The true relative effect exactly at the MDE (the hardest case), either way: calling it
    "no difference" needs the sequence to miss the truth on one side, at most alpha / 2
    (measured: 0.2% of 1,000 experiments up, 0.5% down)."""
    seeds = 1000
    for sign in (1.0, -1.0):
        counts = _paths(sign * 0.05, seeds, mde_pct=5.0)
        wrong = counts.get("no_difference", 0) / seeds
        assert wrong <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / seeds), counts


@pytest.mark.slow  # a study over many seeds or runs: the slow suite (./run test -m slow)
def test_with_no_effect_no_difference_takes_nothing_from_the_false_ship_rate() -> None:
    """A/A: a path ships under the new rule only if it shipped under the old one (no
    difference can only end a path earlier, never add a ship); with an MDE of 5%, five
    SEs of the planned end here, most A/A experiments end "no difference" (measured: 96.2% of
    1,000; ship 0.5% and do not ship 0.3%, as without an MDE)."""
    seeds = 1000
    before = _paths(0.0, seeds, mde_pct=None)
    after = _paths(0.0, seeds, mde_pct=5.0)
    assert before.get("no_difference", 0) == 0
    assert after.get("ship", 0) <= before.get("ship", 0)
    assert after.get("do_not_ship", 0) <= before.get("do_not_ship", 0)
    assert after.get("no_difference", 0) / seeds > 0.5


async def test_the_worker_publishes_no_difference_and_a_second_worker_keeps_it() -> None:
    """Two arms with the same demand and an MDE of 20%: the worker's verdict on revenue is
    no difference, as a VerdictMessage; a second worker sharing the tuning store repeats it,
    with the look it was decided at, on a panel that no longer supports it."""
    from analysis.worker import AnalysisWorker, InMemorySequenceTuning
    from controller.clock import ManualClock
    from tests.unit.analysis.test_guardrails_arms import _cells, _info, _look, _Sink, _Source

    info = _info(None, [])
    info = replace(info, params=info.params | {"mde_pct": 20.0})
    same = _cells({"c": 0.0, "t": 0.0}, seed=4).drop(columns="arm")
    tuning = InMemorySequenceTuning()
    sink = _Sink()
    w = AnalysisWorker(_Source(same, info), sink, ManualClock(AS_OF), verdicts=sink,
                       tuning=tuning)  # fmt: skip
    await w.run_once()
    (v,) = sink.verdicts
    assert v["verdict"] == "no_difference", v["reason"]
    VerdictMessage(experiment="e1", as_of=AS_OF, **v)
    harm = _cells({"c": 0.0, "t": -40.0}, seed=4).drop(columns="arm")
    again = _Sink()
    w2 = AnalysisWorker(_Source(harm, info), again, ManualClock(AS_OF), verdicts=again,
                        tuning=tuning)  # fmt: skip
    await w2.run_once()
    (kept,) = again.verdicts
    assert (kept["verdict"], kept["decided_at"]) == ("no_difference", v["decided_at"])
    assert "kept" in kept["reason"]
    fresh = await _look(harm, info)
    assert fresh.verdicts[0]["verdict"] == "do_not_ship"


def _arm_paths(
    effects: tuple[float, ...], seeds: int, mde_pct: float | None, periods: int = 20
) -> dict[str, int]:
    """Seeded k-arm experiments looked at every period, as tests/unit/analysis/
    test_verdict_arms.py simulates them (the control's noise shared, each arm's sequence at
    alpha / (k - 1)), with a control mean that makes an MDE of 5% five SEs of the planned end;
    ``effects`` relative. Returns how often each final verdict came."""
    rng = np.random.default_rng(13)
    m = len(effects)
    names = [f"a{j}" for j in range(m)]
    target = 1.0 / np.sqrt(periods)
    seq = ConfidenceSequence(target_se=target, alpha=0.05 / m, intersect=False)
    scale = 100.0 * target
    counts: dict[str, int] = {}
    for _ in range(seeds):
        arm_noise = rng.normal(0, 1 / np.sqrt(2), (periods, m))
        control = rng.normal(0, 1 / np.sqrt(2), (periods, 1))
        diffs = np.asarray(effects) * scale + arm_noise - control
        decided, at, arm = None, None, None
        for n in range(2, periods + 1):
            est, se = diffs[:n].mean(axis=0), 1.0 / np.sqrt(n)
            r = float(seq.radius(se))
            fields = {
                a: {"estimator": "dm", "effect": float(e), "se": se, "cs_low": e - r,
                    "cs_high": e + r, "n_units": 10, "n_periods": n,
                    "relative_effect": e / scale, "relative_cs_low": (e - r) / scale,
                    "relative_cs_high": (e + r) / scale}
                for a, e in zip(names, est, strict=True)
            }  # fmt: skip
            v = decide_arms(metric="profit", fields=fields, decided=decided, decided_at=at,
                            decided_arm=arm, planned_periods=periods, mde_pct=mde_pct)  # fmt: skip
            if decided is None and v.verdict != "keep_running":
                decided, at, arm = v.verdict, v.decided_at, v.arm
        key = decided or "keep_running"
        counts[key] = counts.get(key, 0) + 1
    return counts


@pytest.mark.slow  # a study over many seeds or runs: the slow suite (./run test -m slow)
def test_k_arms_rarely_call_an_arm_at_the_mde_no_difference_and_add_no_false_ship() -> None:
    """Three arms, one at the MDE (+5% or -5%), the others at 0: "no difference" needs that
    arm's sequence to miss (measured: 0.2% up, 0.0% down, of 500). A/A: no ship the rule
    without an MDE would not make (ship 0.2% both ways), and do not ship within alpha: with
    an MDE, an arm shown below 0 beside arms within the band keeps the control as do not
    ship, which needs that arm's sequence to miss its truth (each at alpha / (k - 1); measured:
    500 experiments, 78.6% no difference, do not ship 0.2% against 0.0% without an MDE)."""
    seeds = 500
    for sign in (1.0, -1.0):
        counts = _arm_paths((sign * 0.05, 0.0, 0.0), seeds, mde_pct=5.0)
        assert counts.get("no_difference", 0) / seeds <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / seeds), (
            counts
        )
    before = _arm_paths((0.0, 0.0, 0.0), seeds, mde_pct=None)
    after = _arm_paths((0.0, 0.0, 0.0), seeds, mde_pct=5.0)
    assert after.get("ship", 0) <= before.get("ship", 0)
    assert after.get("do_not_ship", 0) / seeds <= 0.05
    assert after.get("no_difference", 0) / seeds > 0.5


def test_k_arms_keep_the_control_when_each_arm_is_worse_or_within_the_band() -> None:
    # the review's stall: p90 shown worse beyond the MDE (-9%...-6%), p105 within +-5%: no
    # arm can gain as much as the MDE, yet neither "every arm below 0" nor "every arm within
    # the band" held, so the rule kept running to the end and past it
    cs = {"p90": (-9.0, -6.0), "p105": (-2.0, 3.0)}
    rel = {a: (lo / 100, hi / 100) for a, (lo, hi) in cs.items()}
    assert arm_look(cs, relative=rel, mde_pct=5.0) == ("do_not_ship", None)
    # one arm still able to reach the MDE keeps it running
    wide = dict(rel, p105=(-0.02, 0.07))
    assert arm_look(cs, relative=wide, mde_pct=5.0) == ("keep_running", None)
    # without an MDE there is no band: keep running, as before
    assert arm_look(cs, relative=rel, mde_pct=None) == ("keep_running", None)
    v = decide_arms(
        metric="profit",
        fields={"p90": _fields(-7.5, -9.0, -6.0), "p105": _fields(0.5, -2.0, 3.0)},
        mde_pct=5.0,
    )
    assert v.verdict == "do_not_ship"
    assert "arm(s) p90 lie wholly below 0 and arm(s) p105 wholly within +-5%" in v.reason
    assert "keep control too when each lies wholly below 0 or within that band" in v.rule
