"""validation.md's cluster `fe` paragraph: class x period clusters against the class clusters
published before, said to be the tables' own runs only when the tables' `fe` rows agree."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lab.studies import validation_page as vp

ROOT = Path(__file__).resolve().parents[4]
BEFORE = "fe, class clusters (published before)"
PUBLISHED = "fe, class x period clusters (published)"
REMOVED = "class effects removed, class x period clusters"


def _figdir(tmp_path: Path) -> Path:
    rows = []
    for period, sd, k in (("P1D", 0.30, 0.0), ("PT4H", 0.05, 0.01)):
        for variance, se, cov in ((BEFORE, (1.10 - k) * sd, 0.972 - k),
                                  (PUBLISHED, (0.98 - k) * sd, 0.949 - k),
                                  (REMOVED, (0.96 - k) * sd, 0.944 - k)):  # fmt: skip
            rows.append({"period": period, "variance": variance, "runs": 400, "mean_se": se,
                         "emp_sd": sd, "bias": 0.0, "coverage": cov, "se_ratio": se / sd})  # fmt: skip
    pd.DataFrame(rows).to_csv(tmp_path / "cluster-fe-variance.csv", index=False)
    return tmp_path


def _tab(design: str, mean_se: float) -> pd.DataFrame:
    return pd.DataFrame([{"design": design, "estimator": "fe", "runs": 400, "mean_se": mean_se}])


def test_it_reports_both_variances_and_that_the_published_rows_are_the_tables(
    tmp_path: Path,
) -> None:
    def render(tables: dict[str, pd.DataFrame]) -> str:
        return vp.section("cluster_fe_published.md.j2", vp.cluster_fe_published(figdir, tables))

    figdir = _figdir(tmp_path)
    same = {"main_tab": _tab("cluster", 0.98 * 0.30), "sub_tab": _tab("cluster PT4H", 0.97 * 0.05)}
    text = " ".join(render(same).split())
    assert "its published rows equal theirs" in text
    assert "P1D: SE / SD 0.98, coverage 0.949 (class clusters 1.10, 0.972)" in text
    assert "PT4H: SE / SD 0.97, coverage 0.939 (class clusters 1.09, 0.962)" in text
    # the larger of the two periods' changes: P1D 0.96/0.98, PT4H 0.95/0.97
    assert "would change the mean SE by 2.1%" in text
    # the tables' fe is another estimator (the class clusters): not claimed as the same runs
    other = {"main_tab": _tab("cluster", 1.10 * 0.30), "sub_tab": _tab("cluster PT4H", 0.055)}
    assert "400 runs, not checked against the tables'" in render(other)
    # the study's old labels (the candidate, before it was published): a request to rerun it
    old = pd.read_csv(figdir / "cluster-fe-variance.csv").replace(
        {BEFORE: "fe (published: class clusters)"}
    )
    old.to_csv(figdir / "cluster-fe-variance.csv", index=False)
    stale = " ".join(render(same).split())
    assert stale.endswith(
        "are from an older `python -m lab.studies cluster-fe-variance`: rerun it."
    )
