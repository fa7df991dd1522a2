"""What the live analysis worker publishes, through real worker processes on the embedded stack:
intervals that follow from their own effect, se and df, and confidence sequences that a
restarted worker continues unchanged."""

from __future__ import annotations

import math
import signal
from typing import Any

import numpy as np
import pytest
from scipy import stats

from controller.store import Store
from streams.live.driver import LiveDriver, LiveRun
from streams.live.launcher import ANALYSIS_GLIBC_TUNABLES, CONTROLLER_GLIBC_TUNABLES
from tests.integration.conftest import make_settings
from tests.integration.live import drive as _drive
from tests.integration.live import live_run as _run

pytestmark = pytest.mark.integration


async def test_every_published_interval_is_effect_plus_minus_q_se(stack) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(stack)
    rd = _run("random-days", 16, 6, 1, "iq-rd")
    products = list(rd.spec.all_products())
    segments = {"first": tuple(products[:8]), "second": tuple(products[8:])}
    rd = LiveRun(rd.spec.model_copy(update={"segments": segments}), rd.market, rd.sales_seed)
    runs = [
        rd,
        _run("crossover", 16, 6, 2, "iq-xo"),
        _run("cluster", 16, 6, 3, "iq-cl"),
    ]
    used = await _drive(settings, runs)
    # the analysis worker runs with the malloc settings its cycles were measured with
    # (streams/live/launcher.py); the controller with its own. /proc shows the variable as
    # glibc left it after parsing (it rewrites the value in place, up to the first ':')
    tunables = used["environ"]["analysis"][b"GLIBC_TUNABLES"]
    assert tunables and ANALYSIS_GLIBC_TUNABLES.encode().startswith(tunables), tunables
    tunables = used["environ"]["controller"][b"GLIBC_TUNABLES"]
    assert tunables and CONTROLLER_GLIBC_TUNABLES.encode().startswith(tunables), tunables
    checked: dict[tuple[str, bool], int] = {}
    for run in runs:
        assert run.estimates, f"{run.id}: nothing published"
        for e in run.estimates:
            df = e["df"]
            if e["metric"] == "elasticity":  # Fieller's interval of a ratio, not +- q se
                if e["identified"]:
                    assert e["ci_low"] < e["effect"] < e["ci_high"], e
                else:
                    assert e["effect"] is None and e["ci_low"] is None and e["note"], e
                key = ("elasticity", bool(e["identified"]))
                checked[key] = checked.get(key, 0) + 1
                continue
            q = stats.t.ppf(0.975, df) if df is not None else stats.norm.ppf(0.975)
            assert abs(e["ci_low"] - (e["effect"] - q * e["se"])) <= 1e-9, e
            assert abs(e["ci_high"] - (e["effect"] + q * e["se"])) <= 1e-9, e
            checked[(e["estimator"], df is not None)] = (
                checked.get((e["estimator"], df is not None), 0) + 1
            )
            # the relative form: from the arm means (Fieller) for dm, fe and crossover, never
            # NaN; a note says which set is unbounded; none for ht
            if e["estimator"] in ("dm", "fe", "crossover"):
                assert e["relative_effect"] == pytest.approx(e["effect"] / e["control_mean"])
                if e["relative_ci_low"] is not None:
                    assert e["relative_ci_low"] < e["relative_effect"] < e["relative_ci_high"]
                else:
                    assert "Fieller" in e["relative_note"], e
                if e["relative_cs_low"] is not None:
                    rel = (e["relative_cs_low"], e["relative_effect"], e["relative_cs_high"])
                    assert rel[0] < rel[1] < rel[2], e
                    # the same multiplier as the absolute sequence: where that is clearly
                    # wider than the interval (not with few clusters' t), so is this
                    if e["cs_high"] - e["effect"] > 1.5 * (e["ci_high"] - e["effect"]):
                        assert rel[0] < e["relative_ci_low"] and rel[2] > e["relative_ci_high"]
                elif e["cs_low"] is not None:  # a sequence, but no bounded relative one
                    assert "Fieller" in e["relative_note"], e
                checked[("relative", True)] = checked.get(("relative", True), 0) + 1
            elif e["estimator"] == "ht":
                assert e["relative_effect"] is None and "no relative form" in e["relative_note"]
    # the spec's segments: each look publishes the design's primary (fe) on each segment,
    # tagged, BH-adjusted
    for name in segments:
        looks = rd.looks("fe", name)
        assert list(looks) == list(range(2, 7)), (name, list(looks))
        for e in looks.values():
            assert e["n_units"] == 8 and e["cs_low"] < e["ci_low"]
    for k in range(2, 7):
        p = sorted(rd.looks("fe", n)[k]["pvalue"] for n in segments)
        adjusted = sorted(rd.looks("fe", n)[k]["pvalue_bh"] for n in segments)
        assert adjusted == pytest.approx([min(2 * p[0], p[1]), p[1]], rel=1e-9)
    assert rd.looks("dm") and all(e.get("segment") is None for e in rd.looks("dm").values())
    # both references were exercised: t intervals (dm, fe, crossover) and normal ones (ht)
    assert checked.get(("dm", True), 0) > 0 and checked.get(("crossover", True), 0) > 0
    assert checked.get(("fe", True), 0) > 0 and checked.get(("elasticity", True), 0) > 0
    assert checked.get(("ht", False), 0) > 0 and checked.get(("relative", True), 0) > 0
    # the cluster design's estimators cluster by class, fe's by class x period, the draws
    # the switchback makes independently (the elasticity compares products; fe's price
    # paid, a ratio of products' arm means, by class)
    cl = runs[2]
    n_classes = len(cl.spec.clusters)
    per_cell = [e for e in cl.estimates if e["metric"] != "elasticity"]
    dms = [e for e in per_cell if e["estimator"] == "dm"]
    fes = [e for e in per_cell if e["estimator"] == "fe" and e["metric"] != "price"]
    fe_price = [e for e in per_cell if e["estimator"] == "fe" and e["metric"] == "price"]
    assert {e["se_method"] for e in dms} == {"cluster_class"}
    assert {e["se_method"] for e in fes} == {"cluster_class_period"}
    assert {e["se_method"] for e in fe_price} == {"cluster_class"}
    # dm: CR2's Satterthwaite df (at most the number of classes), not CR1's exact G - 1;
    # fe: CR1 on its class-periods, t on min(C, K(T - 1)) - 1 (the classes' K - 1 at the
    # first look, of two periods; more than the classes once there are three), its price on
    # the classes
    assert dms and all(0 < e["df"] <= n_classes and e["df"] != n_classes - 1 for e in dms)
    assert fes and all(e["df"] >= n_classes - 1 and e["df"] == int(e["df"]) for e in fes)
    assert max(e["df"] for e in fes) > n_classes
    assert fe_price and all(e["df"] == n_classes - 1 for e in fe_price)


async def test_a_killed_and_restarted_analysis_worker_continues_the_same_sequences(stack) -> None:  # type: ignore[no-untyped-def]
    days = 8
    # seeded kill timing, after the first look with estimates (the look at the end of period 2
    # sees 2 completed periods) and before the last
    kill_at = int(np.random.default_rng(14).integers(3, days - 1))
    uninterrupted = [_run("random-days", 24, days, 7, "cs")]
    await _drive(make_settings(stack), uninterrupted)

    restarted = [_run("random-days", 24, days, 7, "cs")]
    state: dict[str, Any] = {}

    def kill(driver: LiveDriver, used: dict[str, Any]):  # type: ignore[no-untyped-def]
        async def hook(d: int) -> None:
            if d != kill_at:
                return
            store: Store = used["store"]
            state["stored_before"] = await store.redis.hgetall(f"{store.exp(restarted[0].id)}:cs")
            new, state["returncode"] = await driver.restart_analysis()
            used["analysis"].append(new)

        return hook

    used = await _drive(make_settings(stack), restarted, before_look=kill)
    # the fault happened: the worker died of SIGKILL mid-experiment, after the sequences were
    # tuned, and a new process published the looks that followed
    assert state["returncode"] == -signal.SIGKILL
    assert set(state["stored_before"]) >= {"dm", "ht"}
    assert len(used["analysis"]) == 2
    a, b = uninterrupted[0], restarted[0]
    for name in ("dm", "ht"):
        seq_a, seq_b = a.looks(name), b.looks(name)
        assert list(seq_a) == list(range(2, days + 1)) == list(seq_b)
        assert any(k > kill_at for k in seq_b)
        for k in seq_a:
            for field in ("effect", "se", "cs_low", "cs_high"):
                assert seq_b[k][field] == seq_a[k][field], (name, k, field)
            assert math.isfinite(seq_a[k]["cs_low"])
    assert used["cs"][b.id] == state["stored_before"]
