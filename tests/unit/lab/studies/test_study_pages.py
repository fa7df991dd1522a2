"""Every figure on a page a study renders comes from the study's saved results: rendering from
docs/figures gives the committed page, and each number in the rendered text is a value the
template printed from those results, or one of the few figures the template's own prose states
(listed here, so that a new one is a decision)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lab.studies.catalog import STUDIES
from lab.studies.harness import ROOT, Study, context, load_results, run_rows
from lab.studies.render import markers, render_text, rendered_page, template_source

PAGED = [s for s in STUDIES.values() if s.page is not None]
NUMBER = re.compile(r"(?<![\w.^])\d+(?:[.,]\d+)*")
#: figures typed in a template's prose: section numbers, the study's declared parameters (noise
#: sd 5, log-sd 1.2, effect sd 1.5, AR(1) 0.3 and its variance factor (1 + 0.3) / (1 - 0.3) =
#: 1.86, 400 products, about 100 controls, "lag 0", "a = 0"), 95% intervals, the 20-seed check,
#: and the earlier figures (0.915-0.93 over runs 100-400) a finding quotes; the switchback's
#: order max(1, m) and carryover weights 0.5^lag; the sequences' 40 products x 14 days
TEMPLATE_FIGURES = {
    # issue #57: ladders of 3, 4 and 5 prices at ratios 0.85, 1.0, 1.15, 1.3, 80 products x 28
    # days, the 0.6 regret target, "0 cells", "1 period"
    "adaptive_ladder.md.j2": {
        "0",
        "0.6",
        "0.85",
        "1",
        "1.0",
        "1.15",
        "1.3",
        "28",
        "3",
        "4",
        "5",
        "80",
    },
    # the floor formula's worked figures: c = 2.5 held cells, m = 1 and 2 (0.18, 0.31), a path
    # of 1/64 (1.25 cells on 80 products), four times the products, 28 periods, 5 prices
    "adaptive_ladder_cells.md.j2": {
        "0",
        "0.18",
        "0.31",
        "1",
        "1.25",
        "2",
        "2.5",
        "28",
        "4",
        "5",
        "64",
        "80",
    },
    "hpte_unit_effects.md.j2": {
        "0",
        "0.3",
        "1",
        "1.2",
        "1.5",
        "1.86",
        "100",
        "2",
        "20",
        "400",
        "5",
        "95",
    },
    "ht_random_days.md.j2": {"0", "0.915", "0.93", "1", "100", "400", "95"},
    # issue #41 part 7, the worlds cost-48 and cost-70, products seed 0, the one-elasticity
    # curve's optimum kappa e / (1 + e), sdid's jackknife (Arkhangelsky et al. 2021, Algorithm 3)
    "ladder.md.j2": {"0", "1", "2021", "3", "41", "48", "7", "70"},
    # issue #54, a change below 0, the worlds peak-1.00 and peak-0.97, cost-48
    "ladder_profit.md.j2": {"0", "0.97", "1.00", "48", "54"},
    "dm_timebound.md.j2": {"2"},
    # 95% intervals, |z| beyond 1.96, the (n - 1) / (n - k) factor and its df, commit 128b2fa
    "cluster_fe_arms.md.j2": {"1", "1.96", "128", "95"},
    "switchback_carryover.md.j2": {"0.5", "1"},
    "cs.md.j2": {"14", "40"},
    "block_bootstrap.md.j2": {"3"},  # about 3 treated values; |z| > 3
    # 95% intervals, a 5% price cut, elasticities about -2, 200 products x 28 days, unit costs
    # at 70%, the 25% target, "coverage above 0.97", g >= 1
    "relative_effects.md.j2": {"0.97", "1", "2", "200", "25", "28", "5", "70", "95"},
    # TROP's paper: its Table 1, 95% bootstrap intervals
    "trop_paper.md.j2": {"1", "95"},
    "trop_paper_heterogeneous.md.j2": set(),
    "trop_paper_mc_refits.md.j2": set(),
    # TROP's coverage tables: tau = 1, bootstrap 100, the unit placebo's 50 draws, TWFE's
    # (0, 0, inf)
    "trop_coverage.md.j2": {"0", "1", "100"},
    "trop_coverage_core.md.j2": {"1", "100", "50"},
    "trop_coverage_core_relax.md.j2": set(),
    "panel_core.md.j2": set(),
    "panel_core_confounded.md.j2": set(),
    # plan's usage (--durations 14,28,56), a refused history's 197 of 200 fits at 7 periods,
    # 80% power at 5% (1.96 SE; the sequence's 3.04, about 1.4 times), 95% of the time, a 10%
    # rise at an elasticity of -2 (0.17), the study's 200 products, 180-day history, 28-day
    # experiments, 14/28/56 days, sections 1-4, 2 MC SEs, the target 0.8 +- 0.05
    # and bench_plan's 5,000 products; a k-arm sequence that leaves 0, at 5% / (k - 1)
    "planning.md.j2": {
        "0",
        "0.05",
        "0.17",
        "0.8",
        "1",
        "1.4",
        "1.96",
        "10",
        "14",
        "14,28,56",
        "180",
        "197",
        "2",
        "200",
        "28",
        "3",
        "3.04",
        "4",
        "5",
        "5,000",
        "56",
        "7",
        "80",
        "95",
    },
    # the k-arm plan's study: 28-day experiments, a simultaneous interval that excludes 0, its
    # 95% intervals and the 5% target, section 1's |diff| / mc_se, --jobs 2
    "planning_arms.md.j2": {"0", "1", "2", "28", "5", "95"},
    # the simulated history: 20 categories of 20-60 products, groups of 3-8 substitutes, cross
    # elasticities 0.3-0.8; precision near 1 - FDR
    "graph_recovery.md.j2": {"0.3", "0.8", "1", "20", "3", "60", "8"},
    # HT's enumeration (256 assignment pairs of the T = 12 design, to 1e-10), p = 2 = m and
    # p < m, t(5) draws, the 95% interval and the sequence's <= 5%
    "advanced.md.j2": {"0", "1", "10", "12", "2", "256", "5", "95"},
    # the checks' design (400 products x 40 days, Bernoulli(0.5), m = 1 with decay 0.6, 20
    # assignments, |z| > 1.96, the default 200 x 28 market, days 14-27, 20-50 units a day, the
    # test's 4-SE tolerance, about 2 SE, SD near 1, issue 6 item 2) and the earlier runs a
    # reading quotes (200 seeds: mean z -0.175 and +0.171, mean error +0.036 with MC SE 0.013,
    # 2.8 MC SEs; 150 x 20: +0.0015, SE 0.0032; 5,000 assignments: +0.0012, MC SE 0.0023)
    "simulator_truth.md.j2": {
        "0",
        "0.0012",
        "0.0015",
        "0.0023",
        "0.0032",
        "0.013",
        "0.036",
        "0.171",
        "0.175",
        "0.5",
        "0.6",
        "1",
        "1.96",
        "14",
        "150",
        "2",
        "2.8",
        "20",
        "200",
        "27",
        "28",
        "4",
        "40",
        "400",
        "5,000",
        "50",
        "6",
    },
    # docs/validation.md's frame (its sections' own figures are listed and traced in
    # test_validation_page.py): the article's 60%, 40-50% and 37% (63% its complement), the
    # band 93-97%, 95% intervals, the market's classes of 12, 3 neighbours, 7-day windows,
    # 10% undercuts, 0.5 allocation, 14 pre-period days, the thresholds 0.05, 0.10 and 0.90,
    # the sensitivity's 0.05 and 0.20, +-10 points, 20-50 and 30-40 units, 2 MC SE
    "validation_page/page.md.j2": {
        "0",
        "0.05",
        "0.10",
        "0.20",
        "0.5",
        "0.90",
        "1",
        "2",
        "3",
        "5",
        "7",
        "10",
        "12",
        "14",
        "20",
        "30",
        "37",
        "40",
        "50",
        "60",
        "63",
        "93",
        "95",
        "97",
    },
}


def _numbers(text: str) -> set[str]:
    return set(NUMBER.findall(text))


def _template_figures(name: str) -> set[str]:
    prose = re.sub(r"\{\{.*?\}\}|\{%.*?%\}|<!--.*?-->", " ", template_source(name), flags=re.S)
    return _numbers(prose)


def test_every_paged_study_is_checked() -> None:
    assert {s.page.template for s in PAGED if s.page} == set(TEMPLATE_FIGURES)


@pytest.mark.parametrize("study", PAGED, ids=lambda s: s.name)
def test_the_committed_page_is_the_render_of_the_saved_results(study: Study) -> None:
    assert study.page is not None
    doc = ROOT / study.page.doc
    page = rendered_page(
        doc, study.page.template, study.page.section, context(study, load_results(study))
    )
    assert page == doc.read_text(), (
        f"{study.page.doc} differs from its render from docs/figures/{study.results}: "
        f"run `python -m lab.studies {study.name} --render-only`"
    )


@pytest.mark.parametrize("study", PAGED, ids=lambda s: s.name)
def test_every_number_on_the_page_comes_from_the_saved_results(study: Study) -> None:
    assert study.page is not None
    printed: list[str] = []
    text = render_text(study.page.template, context(study, load_results(study)), printed)
    prose = _template_figures(study.page.template)
    assert prose == TEMPLATE_FIGURES[study.page.template]
    from_results = set().union(*(_numbers(p) for p in printed))
    unexplained = _numbers(re.sub(r"<!--.*?-->", " ", text)) - prose - from_results
    assert not unexplained
    # and the section on the committed page is that text
    start, end = markers(study.page.section or study.name)
    committed = (ROOT / study.page.doc).read_text()
    if study.page.section:
        committed = committed[committed.index(start) : committed.index(end) + len(end)]
    assert committed.rstrip("\n") == text.rstrip("\n")


def test_validation_md_shows_the_ported_studies_sections() -> None:
    # lab/studies/validation.py composes the page around the studies' own sections (its
    # sections' templates and their figures: tests/unit/lab/studies/test_validation_page.py)
    page = (ROOT / "docs" / "validation.md").read_text()
    for name in ("ht-random-days", "dm-timebound"):
        start, end = markers(name)
        assert page.index(start) < page.index(end)
    assert Path(ROOT / "lab" / "studies" / "templates").is_dir()


def test_relative_effects_renders_its_page_from_a_small_run() -> None:
    # the template on one seed per case too: every table there and every number a printed
    # result
    from lab.studies import relative_effects as rel

    study = rel.STUDY.with_options(seeds=1, metric_runs=1)
    rows, meta = run_rows(study)
    results = rel.summarise(rows, meta)
    printed: list[str] = []
    text = render_text("relative_effects.md.j2", context(study, results), printed)
    tables = [line for line in text.splitlines() if line.startswith("| ")]
    assert sum(line.startswith(("| cell |", "| unit |")) for line in tables) == 6
    assert sum(" x 28 | " in line or " x 14 | " in line for line in tables[8:12]) == 3
    assert {line.split(" | ")[0][2:] for line in tables if line.count("|") == 11} >= set(
        rel.METRIC_DESIGNS
    )
    from_results = set().union(*(_numbers(p) for p in printed))
    prose = TEMPLATE_FIGURES["relative_effects.md.j2"]
    assert not _numbers(text) - prose - from_results
