"""The live adaptive study's pure parts (streams.live.coverage_adaptive and its tables): a run's
score from sequences and truths written down here, the held cells and the adaptation, the
kills' draw, the worlds' ladders and markets, the aggregation with its SEs worked out by hand,
the saved files and the rendered section, and the CLI's one-sentence refusals."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from controller.spec import ExperimentSpec
from lab.errors import LabError
from streams.live import coverage_adaptive as ca
from streams.live import coverage_adaptive_tables as tables
from streams.live.ladder import LADDER_ARMS

ARMS = ["p90", "p95"]
#: two arms' sequences at looks 3, 4 and 5 (5: the end)
SEQS = {
    3: {"p90": (-1.0, 2.0), "p95": (-2.0, 1.0)},
    4: {"p90": (0.6, 2.0), "p95": (-1.0, 1.0)},  # p90's lies above its truth 0.5
    5: {"p90": (0.1, 1.5), "p95": (-1.0, 0.9)},  # p90's excludes 0 and holds 0.5
}
TRUTHS = {k: {"p90": 0.5, "p95": 0.3} for k in (3, 4, 5)}


def test_a_runs_score_from_its_sequences_and_truths() -> None:
    s = ca.score_run(SEQS, TRUTHS, 5, ARMS)
    assert s["family"] == {3: True, 4: False, 5: True}
    assert s["family_end"] is True and s["final_published"] is True
    assert s["ever_missed"] is True and s["differs"] is True
    assert s["looks"] == 3 and s["missing"] == 0
    assert s["arms"]["p90"] == {"missed": True, "from_above": True, "excludes_zero": True}
    assert s["arms"]["p95"] == {"missed": False, "from_above": False, "excludes_zero": False}


def test_a_miss_from_below_a_bound_on_the_truth_and_a_truth_outside_at_the_end() -> None:
    truths = {3: {"p90": 2.5, "p95": -2.0}, 4: {"p90": 0.6, "p95": 0.3},
              5: {"p90": 0.5, "p95": 1.2}}  # fmt: skip
    s = ca.score_run(SEQS, truths, 5, ARMS)
    # look 3: 2.5 > 2.0 (p90 from below), -2.0 on p95's bound (held); look 4: 0.6 on the
    # bound (held); look 5: p95's 1.2 > 0.9
    assert s["family"] == {3: False, 4: True, 5: False}
    assert s["family_end"] is False and s["ever_missed"] is True
    assert s["arms"]["p90"]["missed"] is True and s["arms"]["p90"]["from_above"] is False
    assert s["arms"]["p95"]["missed"] is True and s["arms"]["p95"]["from_above"] is False


def test_an_aa_ladder_whose_sequences_all_hold_zero_does_not_differ() -> None:
    seqs = {k: {"a1": (-0.5, 0.4), "a2": (-0.1, 0.2)} for k in (3, 4)}
    truths = {k: {"a1": 0.0, "a2": 0.0} for k in (3, 4)}
    s = ca.score_run(seqs, truths, 4, ["a1", "a2"])
    assert s["differs"] is False and s["ever_missed"] is False and s["family_end"] is True
    # one sequence entirely below 0 at one look: a false decision, and a miss of the truth 0
    seqs[3]["a2"] = (-0.3, -0.01)
    s = ca.score_run(seqs, truths, 4, ["a1", "a2"])
    assert s["differs"] is True and s["ever_missed"] is True and s["family_end"] is True


def test_missing_sequences_are_counted_and_fail_the_family_but_are_no_miss() -> None:
    seqs = {3: {"p90": (-1.0, 2.0), "p95": (None, None)}, 4: {"p90": (-1.0, 2.0)}}
    s = ca.score_run(seqs, TRUTHS, 5, ARMS)
    assert s["missing"] == 2 and s["family"] == {3: False, 4: False}
    assert s["ever_missed"] is False
    assert s["final_published"] is False and s["family_end"] is False  # no look 5 at all


def test_held_cells_are_the_products_times_each_arms_lowest_probability() -> None:
    probs = {0: {"list": 0.25, "p90": 0.25}, 4: {"list": 0.1, "p90": 0.4}, 5: {"list": 0.3, "p90": 0.2}}  # fmt: skip
    assert ca.held_cells(probs, 40) == pytest.approx({"list": 4.0, "p90": 8.0})


def test_a_ladder_adapted_once_some_probability_moves_more_than_five_points() -> None:
    alloc = {"list": 0.25, "p90": 0.25, "p95": 0.25, "p105": 0.25}
    even = {d: dict(alloc) for d in range(4)}
    assert not ca.adapted(even, alloc)
    assert not ca.adapted({**even, 4: alloc | {"list": 0.2, "p95": 0.3}}, alloc)  # 0.05: not
    assert ca.adapted({**even, 4: alloc | {"list": 0.19, "p95": 0.31}}, alloc)


def test_the_kills_are_drawn_per_batch_from_one_seeded_stream() -> None:
    kills = ca.draw_kills(40)
    assert kills == ca.draw_kills(40)
    assert ca.draw_kills(5) == kills[:5]  # a batch's kill does not depend on how many run
    assert {k.period for k in kills} <= set(range(ca.FIRST_ADAPTED, ca.DAYS - 1))  # 4 .. 8
    assert {k.period for k in kills} == set(range(4, 9))  # 40 draws of 5 periods: all seen
    hit = [k.worker for k in kills]
    # either worker: 40 fair draws give 20 +- 3.2; 8 to 32 is beyond 3.5 SDs
    assert 8 <= hit.count("controller") <= 32 and set(hit) == {"controller", "analysis"}
    assert ca.draw_kills(40, seed=1) != kills
    with pytest.raises(ValueError, match="at least 6 days"):
        ca.draw_kills(1, days=5)


def test_the_worlds_are_the_lab_studys_ladders_at_equal_allocations() -> None:
    assert list(ca.WORLDS) == [
        "3 prices", "4 prices", "5 prices", "4 prices, best at the top", "A/A, 4 arms"
    ]  # fmt: skip
    five = ca.WORLDS["5 prices"].arms()
    assert [a.name for a in five] == ["list", "p070", "p085", "p115", "p130"]
    assert [a.price_ratio for a in five] == [1.0, 0.7, 0.85, 1.15, 1.3]
    assert [a.allocation for a in five] == [0.2] * 5 and five[0].control
    aa = ca.WORLDS["A/A, 4 arms"].arms()
    assert [a.name for a in aa] == ["list", "a1", "a2", "a3"]
    assert {a.price_ratio for a in aa} == {1.0} and len({a.policy for a in aa}) == 4
    assert ca.world_order(None) == list(ca.WORLDS)
    assert ca.world_order("top,aa") == ["4 prices, best at the top", "A/A, 4 arms"]
    with pytest.raises(ValueError, match="no world 'x'"):
        ca.world_order("4,x")


def test_a_worlds_batch_is_the_demos_adaptive_spec_with_the_worlds_prices() -> None:
    runs = ca.world_runs(ca.WORLDS["3 prices"], batch=2)
    assert len(runs) == ca.LADDERS == 16
    run = runs[3]
    spec: ExperimentSpec = run.spec
    assert (
        run.id == "ad-b2-r03"
        and spec.seed == ca.SEED + 3000 + 3
        and run.sales_seed == spec.seed + 1
    )
    assert spec.design == "random-days" and len(run.market.product_ids) == 40
    assert run.market.product_ids[0] == "b2r03-000"
    assert spec.adaptive is not None and spec.adaptive.rule == "thompson"
    assert spec.adaptive.floor == pytest.approx(0.10)  # max(0.05, 4 held cells / 40)
    assert spec.adaptive_metric() == "profit"
    assert [a.price_ratio for a in spec.arm_list()] == [1.0, 0.85, 1.15]
    assert len({r.id for r in runs}) == 16 and len({r.spec.seed for r in runs}) == 16
    # the slow test's batch: the demo's ladder, its seeds and ids, unchanged
    demo = ca.demo_runs()
    assert [r.spec.seed for r in demo] == list(range(100, 116))
    assert demo[0].id == "demo-adaptive-100" and demo[5].market.product_ids[0] == "c05-000"
    assert demo[0].spec.arm_list() == LADDER_ARMS
    assert float(demo[0].market.cfg.unit_cost_share) == 0.49


def _optimum(world: ca.World, run: Any) -> float:
    """The market's profit-maximising listed ratio, every product at it, between 0.5 and 2."""
    m = run.market
    return m.optimal_ratio(np.ones(len(m.product_ids)), m.unit_cost, 0.5, 2.0)


def test_the_worlds_optimum_is_near_1_1_or_above_the_top_price() -> None:
    """Without carryover the market's elasticity of about -2 puts each market's profit
    optimum near twice the unit cost share: near 1.1 times the list price at 0.55 (inside the
    4- and 5-price ladders' range, near the top of the 3-price one's; 16 markets of a batch),
    near 1.35 at 0.675, so that the top price is the best arm (64 markets of four batches)."""
    world = ca.WORLDS["4 prices"]
    best = sorted(_optimum(world, r) for r in ca.world_runs(world, 0))
    assert 1.08 < float(np.median(best)) < 1.18, best
    assert sum(0.85 < b < 1.3 for b in best) == 16, best
    top = ca.WORLDS["4 prices, best at the top"]
    for b in range(4):
        for r in ca.world_runs(top, b):
            m = r.market
            profit = [m.expected_profit(x, np.ones(40), m.unit_cost) for x in top.ratios]
            assert int(np.argmax(profit)) == 3, (b, r.id, _optimum(top, r))


def test_published_reads_the_workers_adaptive_sequences_of_the_metric_by_look() -> None:
    run = ca.demo_runs(n=1)[0]
    base = {"estimator": "aipw_adaptive", "metric": "profit", "segment": None}
    run.estimates += [
        base | {"arm": "p90", "_look": 4, "sim_ci_low": -1.0, "sim_ci_high": 2.0},
        base | {"arm": "p95", "_look": 4, "sim_ci_low": -3.0, "sim_ci_high": 1.0},
        base | {"arm": "p90", "_look": None, "sim_ci_low": 9.0, "sim_ci_high": 9.5},  # no look
        base | {"arm": "p90", "_look": 5, "metric": "units", "sim_ci_low": 7.0, "sim_ci_high": 8.0},
        base | {"arm": "p90", "_look": 5, "estimator": "dm", "sim_ci_low": 7.0, "sim_ci_high": 8.0},
        base | {"arm": "p105", "_look": 5, "sim_ci_low": -2.0, "sim_ci_high": None},
    ]  # fmt: skip
    assert ca.published(run) == {
        4: {"p90": (-1.0, 2.0), "p95": (-3.0, 1.0)},
        5: {"p105": (-2.0, None)},
    }


# --------------------------------------------------------------------------- the tables
def _run(family_end: bool, ever: bool, differs: bool = False, **kw: Any) -> dict[str, Any]:
    return {
        "family_end": family_end, "ever_missed": ever, "differs": differs,
        "final_published": kw.get("published", True), "missing": kw.get("missing", 0),
        "units_sent": kw.get("sent", 100), "units_counted": kw.get("counted", 100),
        "adapted": kw.get("adapted", True), "lowest_probability": kw.get("low", 0.1),
        "family": kw.get("family", {"3": True, "4": True}),
        "arms": kw.get("arms", [{"arm": "p85", "ratio": 0.85, "missed": ever, "from_above": ever,
                                  "excludes_zero": differs, "held_cells": 4.0}]),
    }  # fmt: skip


def _batch(
    b: int, world: str, runs: list[dict[str, Any]], worker: str = "controller"
) -> dict[str, Any]:
    return {
        "batch": b, "world": world, "kill": {"worker": worker, "period": 6},
        "exit_status": -9, "started_utc": f"2026-11-28T22:{20 + 4 * b:02d}:00+00:00",
        "ended_utc": f"2026-11-28T22:{24 + 4 * b:02d}:00+00:00", "seconds": 240.0 + 6 * b,
        "load_start": 1.5 + b / 10, "load_end": 2.0, "runs": runs,
    }  # fmt: skip


def _batches() -> list[dict[str, Any]]:
    arm = {"arm": "p85", "ratio": 0.85, "excludes_zero": False}
    return [
        _batch(0, "4 prices", [
            _run(True, False, arms=[arm | {"missed": False, "from_above": False, "held_cells": 6.0}]),
            _run(False, True, family={"3": True, "4": False},
                 arms=[arm | {"missed": True, "from_above": True, "held_cells": 2.0}]),
        ]),
        _batch(1, "4 prices", [
            _run(True, True, family={"3": False, "4": True}, counted=101,
                 arms=[arm | {"missed": True, "from_above": False, "held_cells": 3.0}]),
            _run(True, False, sent=99, counted=98, low=0.08,
                 arms=[arm | {"missed": False, "from_above": False, "held_cells": 5.0}]),
        ], worker="analysis"),
        _batch(2, "A/A, 4 arms", [_run(True, False, differs=True), _run(True, False)]),
        {"batch": 3, "world": "A/A, 4 arms", "kill": {"worker": "analysis", "period": 5},
         "error": "look at ...: not within 120s"},
    ]  # fmt: skip


def test_the_one_sided_clopper_pearson_bounds() -> None:
    # at 0 of n the upper bound solves (1 - p)^n = 0.05; at n of n the lower one p^n = 0.05
    assert tables.bound(0, 96, upper=True) == pytest.approx(1 - 0.05 ** (1 / 96))  # 3.07%
    assert tables.bound(0, 96, upper=True) == pytest.approx(0.0307, abs=1e-4)
    assert tables.bound(16, 16, upper=False) == pytest.approx(0.05 ** (1 / 16))  # 82.9%
    # 1 of 2: the upper bound solves P(X <= 1) = 1 - p^2 = 0.05, p = sqrt(0.95); the lower
    # one P(X >= 1) = 1 - (1 - p)^2 = 0.05, p = 1 - sqrt(0.95)
    assert tables.bound(1, 2, upper=True) == pytest.approx(math.sqrt(0.95))
    assert tables.bound(1, 2, upper=False) == pytest.approx(1 - math.sqrt(0.95))
    assert tables.bound(2, 2, upper=True) == 1.0 and tables.bound(0, 2, upper=False) == 0.0
    assert math.isnan(tables.bound(0, 0, upper=True))


def test_a_worlds_figures_and_their_monte_carlo_ses() -> None:
    batches = _batches()
    four = tables.summarise("4 prices", batches[:2])
    assert (four["batches"], four["failed_batches"], four["runs"]) == (2, 0, 4)
    assert four["kills"] == {"controller": 1, "analysis": 1} and four["kills_confirmed"] == 2
    # family-wise at the end 3 of 4: 0.75, SE sqrt(0.75 x 0.25 / 4) = 0.2165
    assert four["family_end"] == 0.75 and four["family_end_se"] == pytest.approx(0.216506, abs=1e-6)
    # ever missed 2 of 4: 0.5, SE 0.25
    assert (four["ever_missed"], four["ever_missed_se"]) == (0.5, 0.25)
    assert (four["differs"], four["differs_se"]) == (0.0, 0.0)
    # looks: 3 held in 3 of 4 runs, 4 in 3 of 4: the worst is the earlier at a tie
    assert four["looks"] == {"3": 0.75, "4": 0.75} and four["worst_look"] == 3
    assert four["family_worst_look_se"] == pytest.approx(0.216506, abs=1e-6)
    # one run counted a unit more than sent, one a unit less
    assert (four["units_lost"], four["units_double"]) == (1, 1)
    assert four["lowest_probability"] == 0.08 and four["adapted"] == 1.0
    (arm,) = four["arms"]
    assert (arm["arm"], arm["missed"], arm["missed_runs"], arm["from_above"]) == (
        "p85",
        0.5,
        2,
        0.5,
    )
    assert (arm["held_median"], arm["held_least"]) == (4.0, 2.0)  # median of 6, 2, 3, 5
    aa = tables.summarise("A/A, 4 arms", batches[2:])
    assert (aa["batches"], aa["failed_batches"], aa["runs"]) == (1, 1, 2)
    # differs 1 of 2: 0.5, SE sqrt(0.25 / 2) = 0.3536
    assert aa["differs"] == 0.5 and aa["differs_se"] == pytest.approx(0.353553, abs=1e-6)


def test_the_saved_document_orders_the_worlds_and_pools_them() -> None:
    doc = tables.result(_batches(), {"worlds": {}}, ["3 prices", "A/A, 4 arms", "4 prices"])
    assert [c["world"] for c in doc["cases"]] == ["A/A, 4 arms", "4 prices"]  # 3 prices: none ran
    assert doc["all"]["runs"] == 6 and doc["all"]["failed_batches"] == 1
    assert doc["all"]["family_end"] == pytest.approx(5 / 6)
    assert [b["batch"] for b in doc["batches"]] == [0, 1, 2, 3]
    assert doc["batches"][3]["error"].startswith("look at") and doc["batches"][3]["runs"] == 0
    assert doc["batches"][1]["family_end"] == 2 and doc["batches"][1]["ever_missed"] == 1


def test_save_writes_the_json_and_a_row_per_run_and_render_fills_the_section(
    tmp_path: Path,
) -> None:
    out = tmp_path / "batches"
    out.mkdir()
    for b in _batches():
        (out / f"batch-{b['batch']:03d}.json").write_text(json.dumps(b))
    figures = tmp_path / "figures"
    js, csv = tables.save(out, figures, ca.meta())
    doc = json.loads(js.read_text())
    assert doc["products"] == 40 and doc["days"] == 10 and doc["ladders"] == 16
    assert [c["world"] for c in doc["cases"]] == ["4 prices", "A/A, 4 arms"]
    lines = csv.read_text().splitlines()
    assert len(lines) == 1 + 6
    assert "3:1;4:0" in lines[2] and ",p85," in lines[2]  # the second run's looks, its missed arm
    page = tmp_path / "adaptive.md"
    page.write_text(
        "# before\n\n<!-- adaptive-live-coverage:start -->\nOLD-TEXT\n<!-- adaptive-live-coverage:end -->\n\nafter\n"
    )
    tables.render(figures, page)
    text = page.read_text()
    assert (
        text.startswith("# before\n\n<!-- adaptive-live-coverage:start -->")
        and "OLD-TEXT" not in text
    )
    assert text.endswith("<!-- adaptive-live-coverage:end -->\n\nafter\n")
    assert "from the 4 batches in DIR (6 ladders of 40 products over 10 days, 16 a batch" in text
    assert "between 2026-11-28T22:20:00+00:00 and 2026-11-28T22:32:00+00:00 UTC" in text
    assert "4.0 to 4.2 minutes a batch" in text and "load average 1.50 to 2.00" in text
    assert "failed live, listed and not scored: 1 of the batches" in text
    assert (
        "| 4 prices | 2 | 4 | 1, 1; 2 | 75.0% (21.7%; >= 24.9%) | 75.0% (21.7%) at 3 "
        "| 50.0% (25.0%; <= 90.2%) | 0.0% (0.0%; <= 52.7%) | 100.0% | 1, 1 | 100.0% | 0.080 |"
    ) in text
    assert "| 4 prices | p85 (0.85) | 50.0% (2) | 50% | 0.0% | 4.0 | 2.0 |" in text
    assert "10: the end):\n\n| world | 3 | 4 |\n|---|---|---|\n| 4 prices | 75% | 75% |\n" in text
    assert (
        "| 3 | A/A, 4 arms | analysis 5 | - | - | - | -, - | failed: look at ...: not within 120s |"
        in text
    )
    assert (
        "| 1 | 4 prices | analysis 6 | -9 | 2026-11-28T22:24:00+00:00 | 4.1 | 1.60, 2.00 | 2/2 | 1/2 |"
        in text
    )
    # a page without the section is refused
    page.write_text("# no section\n")
    with pytest.raises(LabError, match="no <!-- adaptive-live-coverage:start -->"):
        tables.render(figures, page)


def test_the_cli_saves_and_renders_the_batches_done_and_refuses_in_one_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "b"
    assert ca.main(["--out", str(out), "--save", "--figures", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == f"coverage_adaptive: no batch-NNN.json in {out}: run some batches into it first\n"
    assert ca.main(["--out", str(out), "--worlds", "4,z", "--batches", "1"]) == 2
    assert "no world 'z'; the worlds are 3 (3 prices), 4 (4 prices)" in capsys.readouterr().err
    assert ca.main(["--out", str(out), "--render", "--figures", str(tmp_path / "none")]) == 2
    assert "run with --save first" in capsys.readouterr().err
    out.mkdir()
    (out / "batch-000.json").write_text(json.dumps(_batches()[0]))
    page = tmp_path / "adaptive.md"
    page.write_text("<!-- adaptive-live-coverage:start -->\n<!-- adaptive-live-coverage:end -->\n")
    args = ["--out", str(out), "--save", "--render", "--figures", str(tmp_path), "--doc", str(page)]
    assert ca.main(args) == 0
    assert "| 4 prices | 1 | 2 | 1, 0; 1 | 50.0% (35.4%; >= 2.5%)" in page.read_text()


def test_a_batch_file_of_another_world_is_refused_before_anything_runs(tmp_path: Path) -> None:
    (tmp_path / "batch-000.json").write_text(json.dumps(_batches()[0]))  # 4 prices
    with pytest.raises(ValueError, match="holds a batch of '4 prices', not '3 prices'"):
        ca.run_study(tmp_path, 1, ["3 prices"], 120.0)
    # the batches already there are not run again (no stack is started for them)
    assert ca.run_study(tmp_path, 1, ["4 prices"], 120.0) == 1


def test_nothing_to_do_and_a_broken_batch_file_are_refused_in_one_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ca.main(["--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        "coverage_adaptive: nothing to do: give --batches N to run, or --save or --render\n"
    )
    (tmp_path / "batch-000.json").write_text("{half a batch")
    assert ca.main(["--out", str(tmp_path), "--save", "--figures", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"coverage_adaptive: {tmp_path / 'batch-000.json'} is not a batch's JSON")
    assert err.endswith("remove it to run it again\n") and err.count("\n") == 1


def test_a_batch_that_failed_is_run_again_and_one_that_ran_is_not(tmp_path: Path) -> None:
    ran = _batches()[0] | {"batch": 0}
    failed = {"batch": 1, "world": "3 prices", "kill": None, "error": "TimeoutError"}
    (tmp_path / "batch-000.json").write_text(json.dumps(ran))  # 4 prices
    (tmp_path / "batch-001.json").write_text(json.dumps(failed))
    worlds = ["4 prices", "3 prices"]
    assert ca.batches_to_run(tmp_path, 3, worlds) == [(1, "3 prices"), (2, "4 prices")]
    assert ca.run_study(tmp_path, 1, worlds, 120.0) == 1  # batch 0 ran: no stack started
    (tmp_path / ".writable").mkdir()  # the probe cannot be written: refused before a stack
    with pytest.raises(OSError):
        ca.run_study(tmp_path, 2, worlds, 120.0)
