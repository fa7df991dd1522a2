"""docs/validation.md from its saved results (lab.studies.validation, validation_page): every
number on the page is a value a template printed from the saved files or one of the few its
own prose states, and the page renders when the studies it quotes have not run."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from lab.studies import validation
from lab.studies import validation_page as vp
from lab.studies.harness import fragment
from lab.studies.render import TEMPLATES, render_text

ROOT = Path(__file__).resolve().parents[4]
FIGURES = ROOT / "docs" / "figures"
NUMBER = re.compile(r"(?<![\w.^])\d+(?:[.,]\d+)*")
#: the figures each template's own prose states: the target band 93-97% and 95% intervals,
#: 2 MC SE (and 3 for the A/A findings), section numbers, the article's 60%, 40-50% and 37%
#: (63% its complement), the market's design (12-product classes, 3 neighbours, 7-day
#: windows, 10% undercuts, 0.5 allocation, 14 pre-period days, about 100 controls), the
#: thresholds the page names (0.05, 0.10, 0.90; the sensitivity's 0.05 and 0.20, its +-10
#: points and 20-50, 30-40 units); sdid's paper (2021, algorithms 2 and 3, 42 pre-periods
#: against 14 days, 200 weight fits); difp's 28 and 56 days, ridges of 1e-6 and 0.1 sigma and
#: Prop 99's -11.1; the spillover worker study's planted effects (+2.0, -1.0, -0.5), 90
#: products and arXiv 2310.17165; finding 3's unit tests (levels spread by 30, 5 SEs, 70
#: assignments of 8 products, 0.99 against 0.85); the hourly study's 24 periods and 02:00;
#: finding 4's earlier +1.71 over 30 runs and 10%
TEMPLATE_FIGURES = {
    "cluster_fe_published.md.j2": set(),
    "conservative_se.md.j2": {"1"},
    "continued_section.md.j2": {"93", "97"},
    "difp_aa.md.j2": {"0", "0.1", "1", "6", "11.1", "14", "28", "56", "99", "100"},
    "finding_3.md.j2": {"0.5", "0.85", "0.99", "1", "2", "3", "5", "8", "30", "70", "93", "97"},
    "findings.md.j2": {"0", "1", "14", "100"},
    "hajek_shared_bias.md.j2": {"2"},
    "live_section.md.j2": {"00", "0.95", "2", "02", "5", "24", "93", "95", "97"},
    "live_arms_section.md.j2": {"0.95", "2", "5", "93", "95", "97"},
    "macros.md.j2": {"2"},
    "open_findings.md.j2": {"1.71", "2", "4", "10", "27", "30"},
    "page.md.j2": {"0", "0.05", "0.10", "0.20", "0.5", "0.90", "1", "2", "3", "5", "7", "10",
                   "12", "14", "20", "30", "37", "40", "50", "60", "63", "93", "95", "97"},
    "sdid_subdaily.md.j2": {"2", "3", "14", "42", "200", "2021"},
    "spillover_conditional.md.j2": {"1", "2", "95"},
    "spillover_continued.md.j2": {"2", "93", "95", "97"},
    "spillover_worker_section.md.j2": {"0.5", "1.0", "2.0", "3", "90", "2310.17165"},
    "sub_daily_section.md.j2": {"2", "93", "97"},
}  # fmt: skip


def _numbers(text: str) -> set[str]:
    return set(NUMBER.findall(text))


def _prose(name: str) -> set[str]:
    source = (TEMPLATES / "validation_page" / name).read_text()
    return _numbers(re.sub(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}|<!--.*?-->", " ", source, flags=re.S))


def test_each_templates_own_figures_are_listed() -> None:
    names = {p.name for p in (TEMPLATES / "validation_page").glob("*.j2")}
    assert names == set(TEMPLATE_FIGURES)
    for name, figures in TEMPLATE_FIGURES.items():
        assert _prose(name) == figures, name


def test_every_number_on_the_page_comes_from_the_saved_results() -> None:
    printed: list[str] = []
    ctx = vp.page_context(validation.load(FIGURES), FIGURES, printed)
    text = render_text(validation.PAGE.template, ctx, printed)
    # the ported studies' own sections: their figures are checked by test_study_pages.py
    for fragment_text in ctx_fragments():
        assert fragment_text in text
        text = text.replace(fragment_text, " ")
    # a printed value with a line break is a rendered section, not a figure
    leaves = [p for p in printed if "\n" not in p]
    from_results = set().union(*(_numbers(p) for p in leaves))
    prose = set().union(*TEMPLATE_FIGURES.values())
    assert not _numbers(text) - prose - from_results


def ctx_fragments() -> list[str]:
    from lab.studies import dm_timebound, ht_random_days

    return [f for s in (ht_random_days.STUDY, dm_timebound.STUDY) if (f := fragment(s, FIGURES))]


def test_the_page_renders_before_the_studies_it_quotes_have_run(tmp_path: Path) -> None:
    figures = tmp_path / "figures"
    figures.mkdir()
    for path in FIGURES.glob("validation-*"):
        if path.suffix in (".csv", ".json") and not path.name.startswith(
            ("validation-difp", "validation-dm-", "validation-spillover")
        ):
            shutil.copy(path, figures / path.name)
    page = validation.render_page(figures).read_text()
    assert page.startswith("# Validation: the origin article's claims on a pricelab market")
    assert "## Live coverage\n\nNot run yet" in page
    assert "## Live coverage: three-arm price ladders\n\nNot run yet" in page
    assert "## Spillover estimates the worker publishes\n\nNot run yet" in page
    assert "The four findings of issue #27" not in page
    assert "cause not established here" in page  # difp's A/A bias, its study not run
    assert "### Why `difp` is biased" not in page
