"""Every figure on a page a study renders comes from the study's saved results: rendering from
docs/figures gives the committed page, and each number in the rendered text is a value the
template printed from those results, or one of the few figures the template's own prose states
(listed here, so that a new one is a decision)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
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
    "dm_timebound.md.j2": {"2"},
    "switchback_carryover.md.j2": {"0.5", "1"},
    "cs.md.j2": {"14", "40"},
    "block_bootstrap.md.j2": {"3"},  # about 3 treated values; |z| > 3
    # 95% intervals, a 5% price cut, elasticities about -2, 200 products x 28 days, unit costs
    # at 70%, the 25% target, "coverage above 0.97", g >= 1
    "relative_effects.md.j2": {"0.97", "1", "2", "200", "25", "28", "5", "70", "95"},
    # TROP's coverage tables: tau = 1, bootstrap 100, the unit placebo's 50 draws, TWFE's
    # (0, 0, inf)
    "trop_coverage.md.j2": {"0", "1", "100"},
    "trop_coverage_core.md.j2": {"1", "100", "50"},
    "trop_coverage_core_relax.md.j2": set(),
    "panel_core.md.j2": set(),
    "panel_core_confounded.md.j2": set(),
    # TROP's paper: its Table 1, 95% bootstrap intervals
    "trop_paper.md.j2": {"1", "95"},
    "trop_paper_heterogeneous.md.j2": set(),
    "trop_paper_mc_refits.md.j2": set(),
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
    # docs/studies/validation_study.py composes the page around the studies' own sections
    page = (ROOT / "docs" / "validation.md").read_text()
    for name in ("ht-random-days", "dm-timebound"):
        start, end = markers(name)
        assert page.index(start) < page.index(end)
    assert Path(ROOT / "lab" / "studies" / "templates").is_dir()


#: validation.md's sections that docs/studies/validation_study.py renders from the ported
#: studies' saved tables, and the figures their templates' prose states (the SE's excess
#: "over 1"; sdid's paper, its algorithms 2 and 3, 42 pre-periods against 14 days, and the
#: bootstrap's 200 weight fits; difp's design: 14 pre-period days, about 100 controls, 28 and
#: 56 days, ridges of 1e-6 and 0.1 sigma, runs from 0, "did gives exactly 0", and the published
#: Prop 99 DIFP of -11.1)
VALIDATION_TEMPLATES = {
    "validation/difp_aa.md.j2": {"0", "0.1", "1", "100", "11.1", "14", "28", "56", "6", "99"},
    "validation/conservative_se.md.j2": {"1"},
    "validation/cluster_fe_published.md.j2": set(),
    "validation/sdid_subdaily.md.j2": {"14", "2", "200", "2021", "3", "42"},
}


def test_validation_sections_come_from_the_saved_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    from lab.studies import render
    from tests.unit._scripts import load_script

    study = load_script(ROOT / "docs" / "studies" / "validation_study.py", "validation_study")
    printed: dict[str, list[str]] = {}

    def traced(name: str, context: dict[str, object], trace: list[str] | None = None) -> str:
        return render.render_text(name, context, printed.setdefault(name, []))

    monkeypatch.setattr(study, "render_text", traced)
    figdir = ROOT / "docs" / "figures"
    saved = study.load_results(figdir)
    page = (ROOT / "docs" / "validation.md").read_text()
    text = ""
    for section in (
        study._conservative_se_cause(saved, figdir),
        study._sdid_subdaily_cause(saved["sub_tab"]),
        study._difp_section(figdir),
    ):
        assert section.strip() and section.strip() in page
        text += section
    assert set(printed) == set(VALIDATION_TEMPLATES)
    for name, figures in VALIDATION_TEMPLATES.items():
        assert _template_figures(name) == figures
    from_results = set().union(*(_numbers(p) for out in printed.values() for p in out))
    prose = set().union(*VALIDATION_TEMPLATES.values())
    assert not _numbers(text) - prose - from_results


def test_validation_md_is_the_render_of_the_saved_tables(tmp_path: Path) -> None:
    from tests.unit._scripts import load_script

    study = load_script(ROOT / "docs" / "studies" / "validation_study.py", "validation_study")
    figures = ROOT / "docs" / "figures"
    (tmp_path / "figures").symlink_to(figures)
    study.write_markdown(tmp_path / "validation.md", **study.load_results(figures))
    committed = (ROOT / "docs" / "validation.md").read_text()
    assert (tmp_path / "validation.md").read_text() == committed, (
        "docs/validation.md differs from its render from docs/figures: run "
        "`docs/studies/validation_study.py --render-only`"
    )


def test_planning_md_is_the_render_of_the_saved_tables() -> None:
    from tests.unit._scripts import load_script

    study = load_script(ROOT / "docs" / "studies" / "planning_study.py", "planning_study")
    saved = (
        pd.read_csv(ROOT / "docs" / "figures" / f"planning-{n}.csv")
        for n in ("calibration", "type1-mde", "example")
    )
    assert study.markdown(*saved) == (ROOT / "docs" / "planning.md").read_text(), (
        "docs/planning.md differs from its render from docs/figures/planning-*.csv: run "
        "`docs/studies/planning_study.py --only-markdown`"
    )


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
