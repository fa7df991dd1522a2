"""The study harness (lab.studies.harness): seeds, the Monte-Carlo statistics, the runner's loop
and jobs, the saved results and the rendered pages."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from lab.compare import run_comparison, summarise
from lab.errors import LabError
from lab.studies import comparison
from lab.studies.__main__ import main
from lab.studies.harness import (
    Case,
    Page,
    Run,
    Study,
    coverage,
    coverage_clustered,
    error_summary,
    grid,
    interval_summary,
    load_results,
    mean_mcse,
    run_rows,
    run_seed,
    run_study,
)
from lab.studies.render import render_text, replace_section


def test_run_seed_is_the_comparisons_formula() -> None:
    # (seed * 1_000_003 + 7919 * (run + 1)) mod 2^31 - 1, worked by hand
    assert run_seed(0, 0) == 7919
    assert run_seed(1, 0) == 1_007_922
    assert run_seed(0, 999) == 7_919_000
    assert run_seed(2_000, 0) == (2_000_006_000 + 7919) % 2_147_483_647 == 2_000_013_919


def test_mean_and_its_monte_carlo_se() -> None:
    mean, mcse = mean_mcse([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5
    # SD (ddof 1) sqrt(5/3) = 1.2910, over sqrt(4)
    assert mcse == pytest.approx(0.6454972, abs=1e-7)
    assert math.isnan(mean_mcse([3.0])[1])


def test_coverage_and_its_binomial_se() -> None:
    share, mcse = coverage([True, True, False, True])
    assert share == 0.75
    assert mcse == pytest.approx(math.sqrt(0.75 * 0.25 / 4))


def test_clustered_coverage_counts_clusters_not_rows() -> None:
    # cluster a: 2 of 2 covered, b: 1 of 2; p = 3/4;
    # var = ((2 - 1.5)^2 + (1 - 1.5)^2) / 4^2 * 2 / 1 = 0.0625
    share, mcse = coverage_clustered([True, True, False, True], ["a", "a", "b", "b"])
    assert share == 0.75
    assert mcse == pytest.approx(0.25)


def test_error_summary_against_hand_figures() -> None:
    s = error_summary(
        effect=[1.0, 3.0, 2.0, math.nan], se=[1.0, 1.0, 0.1, 1.0], target=[2.0, 2.0, 2.0, 2.0]
    )
    assert s["runs"] == 3  # the NaN estimate is left out
    assert s["bias"] == 0.0
    assert s["emp_sd"] == pytest.approx(1.0)  # errors -1, 1, 0
    assert s["mean_se"] == pytest.approx(0.7)
    assert s["se_ratio"] == pytest.approx(0.7)
    assert s["rmse"] == pytest.approx(math.sqrt(2 / 3))
    # intervals +-1.96 SE: 1 +- 1.96 and 3 +- 1.96 cover 2, 2 +- 0.196 does too
    assert s["coverage"] == 1.0


def test_interval_summary_against_hand_figures() -> None:
    # errors 1, -1, 3: bias 1, SD 2; SEs 1, 2, 3; two of three intervals covered
    s = interval_summary([3.0, 1.0, 5.0], [2.0, 2.0, 2.0], [1.0, 2.0, 3.0], [True, True, False])
    assert s["bias"] == pytest.approx(1.0)
    assert s["emp_sd"] == pytest.approx(2.0)
    assert s["mean_se"] == pytest.approx(2.0)
    assert s["coverage"] == pytest.approx(2 / 3)
    assert s["coverage_mcse"] == pytest.approx(math.sqrt(2 / 9 / 3))
    one = interval_summary([3.0], [2.0], [1.0], [True])
    assert one["bias"] == 1.0 and math.isnan(one["emp_sd"]) and math.isnan(one["coverage_mcse"])
    none = interval_summary([], [], [], [])
    assert all(math.isnan(v) for v in none.values())


def test_grid_is_the_cartesian_product_last_fastest() -> None:
    assert grid(design=("a", "b"), period=("P1D", "PT4H")) == (
        {"design": "a", "period": "P1D"},
        {"design": "a", "period": "PT4H"},
        {"design": "b", "period": "P1D"},
        {"design": "b", "period": "PT4H"},
    )


# --------------------------------------------------------------------------- a toy study
def toy_run(case: Case, run: int, settings: Mapping[str, Any]) -> dict[str, Any]:
    # a known "estimate": the run's seed mod 10 plus the world's shift
    return {
        "effect": run_seed(settings["seed"], run) % 10 + case["shift"],
        "scale": settings["scale"],
    }


def toy_summary(rows: pd.DataFrame, run: Run) -> pd.DataFrame:
    return rows.groupby("world", sort=False)["effect"].mean().reset_index()


TOY = Study(
    name="toy",
    cases=({"world": "aa", "shift": 0}, {"world": "effect", "shift": 100, "runs": "extra"}),
    run_one=toy_run,
    summarise=toy_summary,
    results="toy.csv",
    runs=4,
    options={"scale": 1, "extra": 2},
    page=Page("page.md", "unused.md.j2"),
)


def test_rows_come_in_case_then_run_order_whatever_the_jobs() -> None:
    one, meta = run_rows(TOY, jobs=1)
    two, _ = run_rows(TOY, jobs=2)
    pd.testing.assert_frame_equal(one, two)
    assert one[["world", "run"]].values.tolist() == [
        ["aa", 0], ["aa", 1], ["aa", 2], ["aa", 3], ["effect", 0], ["effect", 1],
    ]  # fmt: skip
    # run_seed(0, r) = 7919 (r + 1): 7919, 15838, 23757, 31676 -> mod 10: 9, 8, 7, 6
    assert one["effect"].tolist() == [9, 8, 7, 6, 109, 108]
    assert len(meta.seconds) == 2 and all(s >= 0 for s in meta.seconds)


def test_options_and_runs_are_overridden_by_name_only() -> None:
    study = TOY.with_options(runs=2, scale=5, extra=1)
    rows, meta = run_rows(study)
    assert rows["run"].tolist() == [0, 1, 0]
    assert set(rows["scale"]) == {5}
    assert meta.options == {"scale": 5, "extra": 1}
    with pytest.raises(LabError, match="no option seeds"):
        TOY.with_options(seeds=3)


def test_run_study_saves_the_summary(tmp_path: Path) -> None:
    study = Study("toy", TOY.cases, toy_run, toy_summary, "toy.csv", 4, options=TOY.options)
    run_study(study, figures=tmp_path, root=tmp_path)
    saved = load_results(study, tmp_path)
    assert isinstance(saved, pd.DataFrame)
    assert saved.to_dict("records") == [
        {"world": "aa", "effect": 7.5},
        {"world": "effect", "effect": 108.5},
    ]


REFRESHED: list[str] = []


def test_a_study_without_a_page_refreshes_the_page_that_composes_it(tmp_path: Path) -> None:
    # e.g. the studies feeding docs/validation.md: no page of their own, that page re-rendered
    # from docs/figures once they saved there, never after a run saved elsewhere
    from lab.studies.harness import ROOT, render

    study = Study(
        "toy", TOY.cases, toy_run, toy_summary, "toy.csv", 4, options=TOY.options,
        refresh=lambda: REFRESHED.append("validation.md"),
    )  # fmt: skip
    run_study(study, figures=tmp_path, root=tmp_path)
    assert REFRESHED == []
    assert render(study, load_results(study, tmp_path), root=tmp_path) is None
    assert REFRESHED == []
    assert render(study, load_results(study, tmp_path), root=ROOT) is None  # --render-only
    assert REFRESHED == ["validation.md"]


def test_missing_results_say_how_to_make_them(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="run `python -m lab.studies toy` first"):
        load_results(TOY, tmp_path)


def test_replace_section_keeps_the_rest_of_the_page() -> None:
    doc = "head\n<!-- s:start -->\nold\n<!-- s:end -->\ntail\n"
    new = "<!-- s:start -->\nnew 1.00\n<!-- s:end -->\n"
    assert replace_section(doc, "s", new) == "head\n" + new + "tail\n"
    with pytest.raises(LabError, match="no <!-- t:start -->"):
        replace_section(doc, "t", new)


def test_the_runner_lists_studies_and_refuses_an_unknown_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main([]) == 0
    listed = capsys.readouterr().out
    assert "hpte-unit-effects" in listed and "ht-random-days" in listed
    assert main(["no-such-study"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no study 'no-such-study'; the studies are ")
    assert main(["dm-timebound", "--set", "paths=3"]) == 2
    assert "has no option paths" in capsys.readouterr().err
    assert main(["ht-random-days", "--set", "paths"]) == 2
    assert capsys.readouterr().err == "error: --set takes KEY=VALUE, not 'paths'\n"


def test_templates_print_values_and_the_trace_records_them() -> None:
    trace: list[str] = []
    text = render_text(
        "dm_timebound.md.j2",
        {"seconds": 84.4, "runs": 400, "study_mean": 0.1039, "study_mcse": 0.0664,
         "fresh_draws": 4000, "fresh_mean": 0.0219, "fresh_mcse": 0.0212},
        trace,
    )  # fmt: skip
    assert "(84 s)" in text and "differ by +0.104" in text and "(MC SE 0.066)" in text
    assert {"84", "400", "+0.104", "0.066", "4000", "+0.022", "0.021"} <= set(trace)
    # a figure missing from the results is an error, not an empty string
    with pytest.raises(Exception, match="'runs' is undefined"):
        render_text("dm_timebound.md.j2", {"seconds": 1.0}, [])


def test_the_saved_toy_json_round_trips(tmp_path: Path) -> None:
    study = Study("toy", TOY.cases, toy_run, lambda rows, run: {"n": len(rows)}, "toy.json", 4,
                  options=TOY.options)  # fmt: skip
    run_study(study, figures=tmp_path, root=tmp_path)
    assert json.loads((tmp_path / "toy.json").read_text()) == {"n": 6}


def test_a_saved_tsv_table_round_trips_with_tabs(tmp_path: Path) -> None:
    # a table named .tsv is saved and read back tab-separated (text with commas stays whole)
    table = pd.DataFrame({"label": ["a, b", "c"], "x": [1.5, float("nan")]})
    study = Study("toy", TOY.cases, toy_run, lambda rows, run: table, "toy.tsv", 4,
                  options=TOY.options)  # fmt: skip
    run_study(study, figures=tmp_path, root=tmp_path)
    assert (tmp_path / "toy.tsv").read_text().splitlines()[:2] == ["label\tx", "a, b\t1.5"]
    pd.testing.assert_frame_equal(load_results(study, tmp_path), table)


def toy_follow_up(rows: pd.DataFrame, run: Run) -> Study | None:
    # a second stage for the worlds whose mean is odd: 2 more runs each, from run `runs` on
    means = rows.groupby("world", sort=False)["effect"].mean()
    odd = [w for w, m in means.items() if int(m) % 2]
    cases = tuple({"world": w, "shift": 0, "stage": 2, "first": run.runs} for w in odd)
    more = Study("toy-more", cases, toy_run, toy_summary, "unused.csv", 2, options={"scale": 1})
    return more if odd else None


def test_a_follow_up_stage_runs_on_the_first_stages_rows() -> None:
    # runs 0-2 give 9, 8, 7: world "odd" (shift 1) has mean 9 and is continued by 2 runs,
    # world "even" (mean 8) is not
    cases = ({"world": "odd", "shift": 1}, {"world": "even", "shift": 0})
    study = Study("toy", cases, toy_run, toy_summary, "toy.csv", 3, options={"scale": 1},
                  follow_up=toy_follow_up)  # fmt: skip
    rows, meta = run_rows(study)
    assert rows[["world", "run"]].values.tolist()[:6] == [
        ["odd", 0], ["odd", 1], ["odd", 2], ["even", 0], ["even", 1], ["even", 2],
    ]  # fmt: skip
    more = rows[rows["stage"] == 2]
    assert more[["world", "run", "first"]].values.tolist() == [["odd", 0, 3], ["odd", 1, 3]]
    assert len(meta.seconds) == 3 and meta.jobs == 1 and meta.wall_seconds >= sum(meta.seconds)


def toy_save(results: Any, figures: Path) -> Path:
    (figures / "toy-a.csv").write_text(results["a"].to_csv(index=False))
    (figures / "toy.json").write_text(json.dumps({"n": results["n"]}))
    return figures / "toy.json"


def toy_load(figures: Path) -> dict[str, Any]:
    return {
        "a": pd.read_csv(figures / "toy-a.csv"),
        **json.loads((figures / "toy.json").read_text()),
    }


def test_a_study_saves_and_loads_its_own_files_and_renders_from_what_it_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def summary(rows: pd.DataFrame, run: Run) -> dict[str, Any]:
        return {"a": toy_summary(rows, run), "n": len(rows), "not saved": object()}

    (tmp_path / "page.md").write_text("")
    study = Study(
        "toy", TOY.cases, toy_run, summary, "toy.json", 4, options=TOY.options,
        page=Page("page.md", "toy_page.md.j2"), save=toy_save, load=toy_load,
        context=lambda r: {"results": r},
    )  # fmt: skip
    import lab.studies.harness as harness

    rendered: list[Any] = []
    monkeypatch.setattr(
        harness, "render_page", lambda doc, template, section, ctx: rendered.append(ctx["results"])
    )
    run_study(study, figures=tmp_path, root=tmp_path)
    loaded = load_results(study, tmp_path)
    assert isinstance(loaded, dict) and loaded["n"] == 6 and "not saved" not in loaded
    assert loaded["a"].to_dict("records") == [
        {"world": "aa", "effect": 7.5},
        {"world": "effect", "effect": 108.5},
    ]
    assert len(rendered) == 1 and "not saved" not in rendered[0]  # rendered from the files


# --------------------------------------------------------------------------- comparison cases
SMALL = {"n_products": 20, "n_categories": 2}
ROWS = (
    comparison.case("random-days", market=SMALL, estimators=("ht", "dm"), world="small"),
    comparison.case("time-bound", market=SMALL, world="small"),
)


def small_summary(rows: pd.DataFrame, run: Run) -> pd.DataFrame:
    return comparison.summarise_cases(ROWS, rows)


def test_a_coverage_row_is_one_case_line() -> None:
    study = Study("rows", ROWS, comparison.run_one, small_summary, "rows.csv", runs=3)
    rows, meta = run_rows(study, jobs=1)
    table = study.summarise(rows, meta)
    assert table[["design", "estimator"]].values.tolist() == [
        ["random-days", "ht"], ["random-days", "dm"],
        ["time-bound", "did"], ["time-bound", "sdid"], ["time-bound", "cuped"],
    ]  # fmt: skip
    assert set(table["world"]) == {"small"} and set(table["period"]) == {"P1D"}
    assert (table["runs"] == 3).all()
    # the comparison's own figures for the same runs (lab.compare.run_comparison)
    cfg = comparison.config(ROWS[0], runs=3)
    direct = summarise(run_comparison(cfg))
    pd.testing.assert_frame_equal(
        table.iloc[:2].drop(columns=["period", "world"]).reset_index(drop=True), direct
    )


def test_runs_of_a_study_whose_cases_set_their_own_are_refused() -> None:
    study = Study("own", ({"world": "a", "shift": 0, "runs": "extra"},), toy_run, toy_summary, "own.csv",
                  options={"extra": 2, "scale": 1})  # fmt: skip
    with pytest.raises(LabError, match="sets its runs per case: change extra with --set"):
        study.with_options(runs=5)
    assert [r for r in run_rows(study.with_options(extra=3))[0]["run"]] == [0, 1, 2]
