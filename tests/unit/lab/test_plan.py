"""``pricelab plan``: the planner's statistics against known answers, its refusals, and its
output contract (the JSON keys other tools script against).

The known answer: on a history of independent N(10, 2^2) cells, a random-days experiment of
N units x T days analysed by the difference in means has SD sigma * sqrt(1/n1 + 1/n0) with
n1 = n0 = N T / 2 cells, so its MDE at 80% power and 5% is (q + z_0.8) times that, with q
between the normal's 1.960 and t(N - 1)'s 2.023.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.reader import ReadPolicy
from controller.designs import design_matrices
from controller.spec import ExperimentSpec
from lab.errors import LabError
from lab.plan import (
    JSON_KEYS,
    PlanConfig,
    effect_pattern,
    mde,
    plan_spec_at,
    read_history,
    run_plan,
    summarise,
)
from streams.cli import main

N, T, DAYS, SIGMA = 40, 60, 20, 2.0
UNITS = tuple(f"u{i:02d}" for i in range(N))
START = datetime(2026, 3, 2, tzinfo=UTC)


def _history(seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "sku": np.repeat(UNITS, T),
            "day": np.tile(np.arange(T), N),
            "units": rng.normal(10.0, SIGMA, N * T),
        }
    )


def _spec(design: str = "random-days", days: int = DAYS, **extra: object) -> ExperimentSpec:
    fields: dict[str, object] = {
        "id": f"plan-{design}",
        "design": design,
        "treatment_policy": "new",
        "control_policy": "old",
        "start": START,
        "end": START + timedelta(days=days),
        "seed": 3,
    }
    if "clusters" not in extra:
        fields["products"] = UNITS
    return ExperimentSpec(**(fields | extra))


@pytest.fixture(scope="module")
def aa_and_mde() -> tuple[pd.DataFrame, float]:
    history = read_history(_history(), "sku", "day", "units")
    _, table, _ = run_plan([("rd", _spec())], history, PlanConfig(sims=400, seed=1))
    row = table[table["estimator"] == "dm"].iloc[0]
    return table, float(row["mde"])


def test_the_mde_of_random_days_is_the_textbook_one(aa_and_mde) -> None:
    table, found = aa_and_mde
    sd = SIGMA * math.sqrt(2 / (N * DAYS / 2))
    low, high = (1.960 + 0.8416) * sd, (2.023 + 0.8416) * sd
    # 400 simulations: the 20th percentile of |estimate| has a Monte-Carlo SD of about 3%
    assert 0.92 * low <= found <= 1.08 * high
    dm = table[table["estimator"] == "dm"].iloc[0]
    assert dm["se"] == pytest.approx(sd, rel=0.05)
    assert dm["n_units"] == N and dm["sims"] == 400 and dm["failed"] == 0


def test_a_and_a_rejects_at_the_nominal_rate(aa_and_mde) -> None:
    table, _ = aa_and_mde
    for est in ("dm", "ht"):
        # binomial(400, 0.05): SD 1.1 points; 3.5 SDs either side
        assert 0.012 <= table.loc[table["estimator"] == est, "type1"].iloc[0] <= 0.088, est


@pytest.mark.slow  # a study over many seeds or runs: the slow suite (./run test -m slow)
def test_planning_at_the_reported_mde_gives_80_percent_power(aa_and_mde) -> None:
    _, found = aa_and_mde
    history = read_history(_history(), "sku", "day", "units")
    cfg = PlanConfig(effect=found, sims=400, seed=2)  # fresh starts and draws
    _, table, _ = run_plan([("rd", _spec())], history, cfg)
    power = table.loc[table["estimator"] == "dm", "power"].iloc[0]
    assert abs(power - 0.8) <= 0.05


def test_a_large_effect_is_found_and_recovered() -> None:
    history = read_history(_history(), "sku", "day", "units")
    sims, table, _ = run_plan([("rd", _spec())], history, PlanConfig(effect=3.0, sims=40, seed=4))
    assert table.loc[table["estimator"] == "dm", "power"].iloc[0] == 1.0
    dm = sims[sims["estimator"] == "dm"]
    # the fit with the effect is the A/A fit shifted by the effect (additive, no carryover)
    assert np.allclose(dm["effect1"] - dm["effect0"], 3.0)
    assert np.allclose(dm["response"], 1.0)


def test_the_assignment_is_the_controllers() -> None:
    """The planner's draws are design_matrices' under the simulation's seed: a crossover's
    blacked-out phase openings are excluded, and the arms are the live ones."""
    classes = {"a": UNITS[:20], "b": UNITS[20:]}
    spec = _spec(
        "crossover", clusters=classes, crossover={"phase_periods": 5, "blackout_periods": 2}
    )
    history = read_history(_history(), "sku", "day", "units")
    planned = plan_spec_at(spec, history, DAYS)
    m = design_matrices(planned.spec.model_copy(update={"seed": 77}), planned.units)
    assert m.blackout[:, [0, 1, 5, 6, 10, 11, 15, 16]].all()
    assert not m.blackout[:, [2, 3, 4]].any()
    # half of each class treated in even phases, the other half in odd ones
    assert (m.treated[:, 2] != m.treated[:, 7]).all()
    sims, table, _ = run_plan([("xo", spec)], history, PlanConfig(sims=20, seed=0))
    assert set(table["estimator"]) == {"crossover", "dm"}
    assert (table["failed"] == 0).all()


def test_carryover_reaches_the_periods_after_a_switch_at_a_decaying_share() -> None:
    W = np.array([[1, 1, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 0, 0]], dtype=bool)
    got = effect_pattern(W, 2)
    expected = np.array([[1, 1, 2 / 3, 1 / 3, 0, 1, 2 / 3], [0, 0, 0, 0, 0, 0, 0]])
    assert np.allclose(got, expected)
    assert np.array_equal(effect_pattern(W, 0), W.astype(float))


def test_the_mde_is_where_the_share_of_rejections_reaches_80_percent() -> None:
    # every simulation: estimate 0, SE 1, q 2: each rejects once e > 2
    assert mde(np.zeros(10), np.ones(10), np.full(10, 2.0), np.ones(10)) == pytest.approx(2.0)
    # thresholds (q*se - a)/b = 2 - a: 1.5, 2, 2.5, 3, 3.5; the 4th of 5 (80%) is at 3
    a = np.array([0.5, 0.0, -0.5, -1.0, -1.5])
    assert mde(a, np.ones(5), np.full(5, 2.0), np.ones(5)) == pytest.approx(3.0)
    # an SE that grows by 0.25 per unit of effect: rejection needs e > 2 (1 + 0.25 e), e > 4
    assert mde(np.zeros(5), np.ones(5), np.full(5, 2.0), np.ones(5), np.full(5, 0.25)) == (
        pytest.approx(4.0)
    )
    # a weaker response (carryover into control) needs a proportionally larger effect
    assert mde(a, np.ones(5), np.full(5, 2.0), np.full(5, 0.5)) == pytest.approx(6.0)


def _scan_mde(a, s, q, b, d) -> float:
    """The MDE by brute force: the share of rejections just after every point where some
    simulation's |a + e b| meets q (s + e d), each checked against every simulation."""
    n = len(a)
    ok = np.isfinite(a) & np.isfinite(b) & np.isfinite(d) & np.isfinite(s)
    points = {0.0}
    for i in np.nonzero(ok)[0]:
        for sign in (1, -1):
            den = b[i] - sign * q[i] * d[i]
            if den != 0:
                e = (sign * q[i] * s[i] - a[i]) / den
                if e >= 0:
                    points.add(float(e))
    best = math.nan
    for e in sorted(points, reverse=True):  # the last point from which the share stays >= 0.8
        x = e + max(abs(e) * 1e-9, 1e-12)
        rejects = sum(
            bool(ok[i] and abs(a[i] + x * b[i]) > q[i] * max(s[i] + x * d[i], 0.0))
            for i in range(n)
        )
        if rejects / n < 0.8:
            break
        best = e
    return best


def test_the_mde_equals_a_scan_of_every_point_where_a_simulation_changes() -> None:
    # random simulations: responses of either sign, SEs that grow or shrink with the effect,
    # unequal critical values, a non-finite estimate, ties
    rng = np.random.default_rng(7)
    for trial in range(300):
        n = int(rng.integers(1, 40))
        a = rng.normal(0, 1, n)
        if trial % 5 == 0:
            a = np.round(a, 1)
        if trial % 7 == 0:
            a[0] = np.nan
        s = np.abs(rng.normal(1, 0.3, n))
        q = rng.uniform(1.5, 3.5, n)
        b = rng.choice([1.0, 0.5, -0.3, 2.0], n)
        d = rng.normal(0, 0.3, n) if trial % 2 else np.zeros(n)
        want = _scan_mde(a, s, q, b, d)
        got = mde(a, s, q, b, d)
        assert (math.isnan(want) and math.isnan(got)) or got == pytest.approx(want, rel=1e-9)


def test_the_history_must_be_long_enough_and_named_columns_must_exist() -> None:
    history = read_history(_history(), "sku", "day", "units")
    with pytest.raises(LabError, match="60 periods, too few for a duration of 61"):
        plan_spec_at(_spec(), history, 61)
    with pytest.raises(LabError, match=r"\['qty'\] not found"):
        read_history(_history(), "sku", "day", "qty")
    bad = _history().astype({"units": object})
    bad.loc[3, "units"] = "n/a"
    with pytest.raises(LabError, match="not numeric"):
        read_history(bad, "sku", "day", "units")


def test_units_without_history_are_left_out_and_an_unknown_list_uses_the_history() -> None:
    history = read_history(_history(), "sku", "day", "units")
    partial = _spec(products=UNITS[:10] + ("ghost",))
    planned = plan_spec_at(partial, history, 10)
    assert planned.units == UNITS[:10] and "1 of the spec's 11 products" in planned.note
    unknown = _spec(products=("ghost-1", "ghost-2"))
    planned = plan_spec_at(unknown, history, 10)
    assert planned.units == UNITS and "all 40 units of the history" in planned.note


def test_triggered_designs_are_refused_in_one_sentence() -> None:
    history = read_history(_history(), "sku", "day", "units")
    spec = _spec(
        "triggered",
        triggered={
            "undercut_pct": 5,
            "sustained_minutes": 30,
            "window_periods": 3,
            "reference_prices": dict.fromkeys(UNITS, 10.0),
        },
    )
    with pytest.raises(LabError, match="competitor undercuts"):
        plan_spec_at(spec, history, 10)


def test_json_has_exactly_the_documented_keys(tmp_path, capsys) -> None:
    panel = tmp_path / "history.csv"
    _history().to_csv(panel, index=False)
    spec = tmp_path / "rd.json"
    spec.write_text(_spec(days=7).to_json())
    argv = ["plan", str(spec), "--history", str(panel), "--unit", "sku", "--time", "day"]
    argv += ["--outcome", "units", "--sims", "20", "--durations", "7,14", "--json", "--jobs", "1"]
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 0
    rows = json.loads(capsys.readouterr().out)
    keys = ("spec", "design", "duration", "estimator", "n_units", "sims", "type1", "power")
    full = (*keys, "mde", "verdict_power", "verdict_mde", "se")
    assert [tuple(r) for r in rows] == [full] * 6 and full == JSON_KEYS
    assert all(r["verdict_mde"] > r["mde"] for r in rows)
    assert [(r["duration"], r["estimator"]) for r in rows] == [
        (7, "fe"), (7, "dm"), (7, "ht"), (14, "fe"), (14, "dm"), (14, "ht")
    ]  # fmt: skip
    assert all(r["power"] is None and r["sims"] == 20 and r["n_units"] == N for r in rows)
    assert {r["spec"] for r in rows} == {"rd"} and {r["design"] for r in rows} == {"random-days"}


def test_the_verdicts_mde_uses_the_sequences_multiplier_at_the_horizon() -> None:
    """A/A estimates spread N(0, 1) with SE 1 and a unit response: the fixed-horizon MDE is
    1.96 + z_0.8 = 2.80, and the verdict's, at the sequence's multiplier at its horizon
    (3.035 for alpha 0.05: the normal mixture's narrowest radius over the SE), 3.035 + 0.84 =
    3.88; both with the far side's share (below 1e-5) left out."""
    n = 20_000
    a = stats.norm.ppf((np.arange(n) + 0.5) / n)
    sims = pd.DataFrame(
        {
            "spec": "s", "design": "random-days", "duration": 14, "estimator": "dm",
            "n_units": 100, "error": "", "effect0": a, "se0": 1.0, "q0": 1.959964,
            "q_seq0": 3.035122, "reject0": np.abs(a) > 1.959964, "effect1": a + 1.0,
            "se1": 1.0, "reject1": False, "verdict1": np.abs(a + 1.0) > 3.035122,
            "response": 1.0, "se_slope": 0.0,
        }
    )  # fmt: skip
    (row,) = summarise(sims, 1.0).to_dict("records")
    assert row["mde"] == pytest.approx(1.959964 + 0.841621, abs=2e-3)
    assert row["verdict_mde"] == pytest.approx(3.035122 + 0.841621, abs=2e-3)
    # at an effect of 1 the verdict decides at the end alone with P(|N(1, 1)| > 3.035) =
    # Phi(-2.035) + Phi(-4.035) = 0.0210; its earlier looks can only add, and it stays far
    # below the fixed-horizon test's P(|N(1, 1)| > 1.96) = 0.170
    assert 0.0210 <= row["verdict_power"] < 0.170


def _one(history: pd.DataFrame, spec: ExperimentSpec, **cfg: object) -> pd.DataFrame:
    h = read_history(history, "sku", "day", "units")
    sims, _, _ = run_plan([("s", spec)], h, PlanConfig(**cfg))  # type: ignore[arg-type]
    assert (sims["error"] == "").all(), sims["error"].iloc[0]
    return sims


def test_a_relative_effect_scales_with_the_outcome() -> None:
    """Every cell sells 10: a 5% effect adds 0.5 to treated cells, so dm's response to one
    unit of relative effect is 10 (the outcome it multiplies)."""
    flat = _history().assign(units=10.0)
    sims = _one(flat, _spec(), effect=0.05, relative=True, sims=10, seed=1)
    dm = sims[sims["estimator"] == "dm"]
    assert np.allclose(dm["response"], 10.0) and np.allclose(dm["effect1"] - dm["effect0"], 0.5)


def test_carryover_into_control_weakens_random_days_but_not_a_crossover_whose_blackouts_cover_it() -> (
    None
):
    # random days, p = 0.5, M = 1: a control cell follows a treated one half the time and then
    # carries half the effect, so dm's response is 1 - 0.5 * 0.5 = 0.75 in expectation
    rd = _one(_history(), _spec(), carryover=1, effect=1.0, sims=100, seed=1)
    assert rd.loc[rd["estimator"] == "dm", "response"].mean() == pytest.approx(0.75, abs=0.03)
    # crossover: the carryover period after each switch is blacked out (2 of every 5)
    classes = {"a": UNITS[:20], "b": UNITS[20:]}
    xo_spec = _spec(
        "crossover", clusters=classes, crossover={"phase_periods": 5, "blackout_periods": 2}
    )
    xo = _one(_history(), xo_spec, carryover=1, effect=1.0, sims=20, seed=1)
    assert np.allclose(xo["response"], 1.0)


def test_power_at_effect_zero_is_the_type_one_error() -> None:
    h = read_history(_history(), "sku", "day", "units")
    _, table, _ = run_plan([("rd", _spec())], h, PlanConfig(effect=0.0, sims=60, seed=3))
    assert (table["power"] == table["type1"]).all()


def test_processes_give_the_same_simulations_as_one() -> None:
    h = read_history(_history(), "sku", "day", "units")
    one, _, _ = run_plan([("rd", _spec())], h, PlanConfig(sims=20, seed=3, jobs=1))
    two, _, _ = run_plan([("rd", _spec())], h, PlanConfig(sims=20, seed=3, jobs=2))
    cols = ["sim", "estimator", "start", "seed", "effect0", "se0", "response"]
    key = ["sim", "estimator"]
    pd.testing.assert_frame_equal(
        one[cols].sort_values(key).reset_index(drop=True),
        two[cols].sort_values(key).reset_index(drop=True),
    )


def test_dates_are_ordered_in_time_and_gaps_are_periods_without_data() -> None:
    days = pd.date_range("2026-08-01", periods=30, freq="D")
    rows = [
        {"sku": u, "day": d.strftime("%m/%d/%Y"), "units": 5.0}
        for u in UNITS[:4]
        for d in days
        if d != days[10]  # a day missing from the history
    ]
    # a day no product has a row for is not in the history (not a day of zero sales), with
    # either choice of --missing
    drop = read_history(pd.DataFrame(rows), "sku", "day", "units", policy=ReadPolicy("drop"))
    h = read_history(pd.DataFrame(rows), "sku", "day", "units")
    np.testing.assert_array_equal(drop.Y, h.Y)
    assert h.notes == ()
    assert h.n_periods == 30  # 09/.. sorts after 08/.. as a date, and the gap is kept
    assert pd.Timestamp(h.times[0]).month == 8 and pd.Timestamp(h.times[-1]).month == 8
    assert np.isnan(h.Y[:, 10]).all() and not np.isnan(h.Y[:, 11]).any()
    # a simulation over the gap excludes those cells and fits
    sims, _, _ = run_plan([("rd", _spec(products=UNITS[:4], days=25))], h, PlanConfig(sims=20))
    assert (sims["error"] == "").all()
    with pytest.raises(LabError, match="period numbers or dates"):
        read_history(
            pd.DataFrame({"sku": ["a", "b"], "day": ["x", "y"], "units": [1, 2]}),
            "sku",
            "day",
            "units",
        )


def test_planning_on_revenue_in_relative_terms_shows_what_comparing_products_with_themselves_buys(
    tmp_path, capsys
) -> None:
    """`plan --outcome revenue --relative`: a pricing team plans on money, in percent. On a
    simulated history whose products' revenue differs tenfold, the within-product difference
    (random days' primary) needs a smaller relative effect than the plain difference in means."""
    from lab.market import Market, MarketConfig

    market = Market(MarketConfig(n_products=30), seed=4)
    W = np.zeros((30, 56), dtype=bool)  # a history: no price test ran
    history = market.simulate_panel(W)[["product", "day", "units", "revenue"]]
    path = tmp_path / "history.csv"
    history.to_csv(path, index=False)
    spec = tmp_path / "rd.json"
    start = datetime(2026, 3, 2, tzinfo=UTC)
    spec.write_text(
        ExperimentSpec(
            id="rd", design="random-days", products=tuple(market.product_ids),
            treatment_policy="a", control_policy="b", start=start,
            end=start + timedelta(days=28),
        ).model_dump_json()
    )  # fmt: skip
    argv = ["plan", str(spec), "--history", str(path), "--unit", "product", "--time", "day"]
    argv += ["--outcome", "revenue", "--relative", "--effect", "0.1", "--sims", "60"]
    argv += ["--durations", "28", "--json", "--jobs", "1"]
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 0
    rows = {r["estimator"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"fe", "dm", "ht"}
    assert 0 < rows["fe"]["mde"] < rows["dm"]["mde"] < 1  # shares of the revenue
    assert rows["fe"]["power"] > rows["dm"]["power"]


def test_an_hourly_switchback_is_planned_on_an_hourly_history(tmp_path, capsys) -> None:
    """A pricing team with hourly sales plans an hourly optimal switchback: the history is the
    simulated market's hours (a week, timestamps), the plan's A/A rejects near 5%, and a
    four-hour spec on it is told to aggregate."""
    from lab.market import Market, MarketConfig
    from lab.simulate import experiment_slots

    start = datetime(2026, 4, 6, tzinfo=UTC)
    hourly = ExperimentSpec(
        id="osb-1h", design="optimal-switchback", products=UNITS[:20],
        treatment_policy="a", control_policy="b", start=start, end=start + timedelta(days=7),
        period=timedelta(hours=1), optimal_switchback={"carryover_order": 1},
    )  # fmt: skip
    market = Market(MarketConfig(n_products=20, start_date=start.date()), seed=2,
                    product_ids=UNITS[:20])  # fmt: skip
    slots = experiment_slots(hourly, market)
    outcomes = market.run_slots(np.zeros((20, len(slots)), dtype=bool), slots)
    history = pd.DataFrame(
        [
            {"sku": p, "hour": s.start.isoformat(), "units": int(o.units[i])}
            for s, o in zip(slots, outcomes, strict=True)
            for i, p in enumerate(UNITS[:20])
        ]
    )
    path = tmp_path / "hours.csv"
    history.to_csv(path, index=False)
    spec = tmp_path / "osb.json"
    short = hourly.model_copy(update={"end": start + timedelta(days=2)})
    spec.write_text(short.model_dump_json())
    argv = ["plan", str(spec), "--history", str(path), "--unit", "sku", "--time", "hour"]
    argv += ["--outcome", "units", "--sims", "200", "--json", "--jobs", "1"]
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 0
    rows = {r["estimator"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"ht", "hajek"} and rows["hajek"]["duration"] == 48
    assert rows["ht"]["type1"] <= 0.1 and 0 < rows["ht"]["mde"] < float("inf")
    assert rows["hajek"]["type1"] <= 0.1 and 0 < rows["hajek"]["mde"] < rows["ht"]["mde"]
    four = short.model_copy(update={"period": timedelta(hours=4)})
    spec.write_text(four.model_dump_json())
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2
    assert "aggregate the history to its periods" in capsys.readouterr().err
