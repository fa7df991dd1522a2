"""docs/validation.md: the origin article's three claims on a pricelab market, and the
calibration of every estimator the worker publishes.

    .venv/bin/python -m lab.studies validation --render-only      # the page, from docs/figures

The page is rendered from the study's saved tables (docs/figures/validation-*.csv, the
scalars in validation-results.json) and from the saved files of the studies it quotes
(:mod:`lab.studies.validation_page` reads them; its templates are under
``lab/studies/templates/validation_page/``), so every figure on it comes from a file a study
wrote. :func:`render_page` is what the other studies call once they have saved theirs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from lab.studies.harness import FIGURES, Page, Results
from lab.studies.render import render_page as write_template
from lab.studies.validation_page import page_context

TABLES = ("main_tab", "sens", "spill_tab", "aa_tab", "sub_tab", "cont_tab")
PAGE = Page("docs/validation.md", "validation_page/page.md.j2")


def load(figures: Path = FIGURES) -> dict[str, Any]:
    """The study's saved results, with ``figures``: where the page's other studies' files are."""
    results: dict[str, Any] = json.loads((figures / "validation-results.json").read_text())
    for key in TABLES:
        path = figures / f"validation-{key}.csv"
        try:
            df = pd.read_csv(path, keep_default_na=False, na_values=[""])
        except (FileNotFoundError, pd.errors.EmptyDataError):
            if key != "cont_tab":
                raise
            results[key] = pd.DataFrame()  # no pair was off the target (or saved before)
            continue
        if "primary" in df.columns:
            df["primary"] = df["primary"].astype(bool)
        if "first_error" in df.columns:
            df["first_error"] = [e if isinstance(e, str) else "" for e in df["first_error"]]
        results[key] = df
    results["figures"] = figures
    return results


def context(results: Results) -> dict[str, Any]:
    """The page's variables, from the saved results (:func:`load`'s, which name their
    ``figures``)."""
    assert isinstance(results, dict)
    return page_context(results, Path(results.get("figures", FIGURES)))


def render_page(figures: Path = FIGURES) -> Path:
    """Rewrite validation.md (beside ``figures``: docs/validation.md by default) from the saved
    results in ``figures`` alone; its path."""
    page = figures.parent / "validation.md"
    return write_template(page, PAGE.template, "", context(load(figures)))
