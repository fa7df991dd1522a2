"""docs/validation.md: the origin article's three claims on a pricelab market, and the
calibration of every estimator the worker publishes.

    .venv/bin/python -m lab.studies validation --jobs 2     # about an hour on 2 cores
    .venv/bin/python -m lab.studies validation --render-only  # the page, from docs/figures
    .venv/bin/python -m lab.studies validation --runs 3 --set quick=True --set sens_runs=3 \
        --set slow_runs=0                                       # CI's version

Puts the origin article's three headline claims (Cooprider & Nassiri, "Science of price
experimentation at Amazon", Business Economics 2023, as summarised in the Amazon Science
article) next to what pricelab measures on a documented market, and reports A/A calibration
(type-I error and coverage) of every estimator that ran.

The cases are the design comparison's own runs (:func:`lab.studies.comparison.case`), in parts:
every design on the default market (claims 1 and 2), three markets of a sensitivity, the
spillover market (claim 3), the A/A market and its slow estimators, and the sub-daily periods;
a second stage (``Study.follow_up``) continues the designs whose published pairs are off the
target to ``continue_factor`` times the runs, on the same seeds. The tables are saved as
docs/figures/validation-*.csv, the scalars as validation-results.json and the plots as
validation-*.png. The page is rendered from them and from the saved files of the studies it
quotes (:mod:`lab.studies.validation_page` reads them; its templates are under
``lab/studies/templates/validation_page/``), so every figure on it comes from a file a study
wrote. :func:`render_page` is what the other studies call once they have saved theirs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.clustering import cluster_graph
from lab.compare import AA_OVERRIDES, CompareConfig, market_classes, plot_comparison, summarise
from lab.config import MarketConfig
from lab.market import Market
from lab.studies import comparison
from lab.studies.harness import FIGURES, Case, Page, Results, Row, Run, Study
from lab.studies.render import render_page as write_template
from lab.studies.validation_page import (
    CONTINUE_FACTOR,
    DAYS,
    MAIN_EXTRA,
    SEED,
    SLOW_AA_NAMES,
    SPILLOVER,
    SUB_DAILY,
    iso,
    off_target_pairs,
    page_context,
    published_main,
)

AA_EXTRA = {
    "time-bound": ("sc", "difp", "staggered", "dm"),
    "random-days": ("did",),
    "crossover": ("did",),
    "cluster": ("dm@class", "did@class"),
}
SLOW_AA = {"time-bound": SLOW_AA_NAMES}
#: the sensitivity's markets: (product_ar_sd, mean-units levels); None keeps the market's
SENSITIVITY = ((0.05, None), (0.20, None), (None, (30.0, 40.0)))
SENS_ESTIMATORS = {"time-bound": ("did",), "random-days": ("dm",), "crossover": ("crossover",)}
#: CI's market (--set quick=True)
QUICK_MARKET = {"n_products": 40, "n_categories": 4}
TABLES = ("main_tab", "sens", "spill_tab", "aa_tab", "sub_tab", "cont_tab")
DESIGNS = CompareConfig().designs  # every design, in the comparison's order


def _sens_market(ar_sd: float | None, levels: tuple[float, float] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if ar_sd is not None:
        out["product_ar_sd"] = ar_sd
    if levels is not None:
        out |= {"mean_units_min": levels[0], "mean_units_max": levels[1]}
    return out


def _cases() -> tuple[Case, ...]:
    case = comparison.case
    out = [case(d, extra_estimators=MAIN_EXTRA.get(d, ()), part="designs") for d in DESIGNS]
    for i, (ar_sd, levels) in enumerate(SENSITIVITY):
        out += [
            case(d, market=_sens_market(ar_sd, levels), estimators=est, part=f"sens{i}")
            | {"runs": "sens_runs"}
            for d, est in SENS_ESTIMATORS.items()
        ]
    spill = {"spillover": SPILLOVER}
    out += [
        case("random-days", market=spill, extra_estimators=("did",), part="spillover"),
        case("cluster", market=spill, extra_estimators=("dm@class",), part="spillover"),
    ]
    out += [
        case(d, market=AA_OVERRIDES, extra_estimators=AA_EXTRA.get(d, ()), part="A/A")
        for d in DESIGNS
    ]
    out += [
        case(d, market=AA_OVERRIDES, estimators=est, part="A/A slow estimators")
        | {"runs": "slow_runs"}
        for d, est in SLOW_AA.items()
    ]
    for period, days, designs in SUB_DAILY:
        out += [
            case(d, period=iso(period), days=days, part=f"sub-daily {iso(period)}")
            for d in designs or DESIGNS
        ]
    return tuple(out)


CASES = _cases()


def _market(c: Case, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The case's market: CI's small one under ``quick``, changed by the case's own fields."""
    return {**(QUICK_MARKET if settings.get("quick") else {}), **c["market"]}


def run_one(c: Case, run: int, settings: Mapping[str, Any]) -> list[Row]:
    """Run ``run`` of a case (its ``first_run`` on): lab.compare.simulate_run's rows."""
    first = int(c.get("first_run", 0))
    rows = comparison.run_one({**c, "market": _market(c, settings)}, first + run, settings)
    return [r | {"run": first + run} for r in rows]


def runs_of_part(rows: pd.DataFrame, part: str) -> pd.DataFrame:
    """A part's rows as lab.compare.run_comparison returns them."""
    mine = rows[rows["part"] == part]
    return comparison.runs_table(mine, [*comparison.SETTINGS, "part", "label", "first_run"])


def variance_decomposition(cfg: MarketConfig, seeds: int = 20) -> dict[str, float]:
    """Between-product and within-product spread of control outcomes on the market."""
    between, within, rho = [], [], []
    for s in range(seeds):
        m = Market(cfg, seed=SEED, demand_seed=10_000 + s)
        df = m.simulate_panel(np.zeros((cfg.n_products, DAYS), dtype=bool))
        Y = df["units"].to_numpy(float).reshape(cfg.n_products, DAYS)
        Y = Y - Y.mean(axis=0, keepdims=True)  # remove the common daily shock
        mu = Y.mean(axis=1, keepdims=True)
        between.append(float(mu.std(ddof=1)))
        R = Y - mu
        within.append(float(R.std(ddof=1)))
        rho.append(float(np.mean([np.corrcoef(r[:-1], r[1:])[0, 1] for r in R])))
    return {
        "between_sd": float(np.mean(between)),
        "within_sd": float(np.mean(within)),
        "lag1_corr": float(np.mean(rho)),
    }


def _tables(rows: pd.DataFrame) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """Each part's runs and its summary (lab.compare.summarise over the part's designs)."""
    out = {}
    for part in dict.fromkeys(rows["part"]):
        runs = runs_of_part(rows, str(part))
        if len(runs):
            out[str(part)] = (runs, summarise(runs))
    return out


def _sub_tab(tabs: Mapping[str, tuple[pd.DataFrame, pd.DataFrame]]) -> pd.DataFrame:
    parts = []
    for period, days, _ in SUB_DAILY:
        tab = tabs[f"sub-daily {iso(period)}"][1]
        parts.append(tab.assign(design=tab["design"] + " " + iso(period), days=days))
    return pd.concat(parts, ignore_index=True)


def continue_factor(options: Mapping[str, Any]) -> int:
    """How many times the table's runs the off-target designs are continued to (CI's: 2)."""
    return 2 if options.get("quick") else int(options["continue_factor"])


def follow_up(rows: pd.DataFrame, run: Run) -> Study | None:
    """The second stage: each design with a published pair off the target, its runs
    continued from run ``runs`` to ``continue_factor`` times them (the same seeds)."""
    tabs = _tables(rows)
    main_tab = tabs["designs"][1]
    off = off_target_pairs(main_tab, published_main(main_tab)) + off_target_pairs(_sub_tab(tabs))
    labels = list(dict.fromkeys(d for d, _ in off))
    if run.options.get("quick"):  # CI: at 3 runs every pair is off; one design shows the path
        labels = labels[:1]
    if not labels:
        return None
    factor = continue_factor(run.options)
    cases = []
    for label in labels:
        design, _, period = label.partition(" ")
        days = next((d for p, d, _ in SUB_DAILY if iso(p) == period), DAYS)
        cases.append(
            comparison.case(design, period=period or "P1D", days=days, part="continued")
            | {"label": label, "first_run": run.runs}
        )
    return Study(
        name="validation-continued",
        cases=tuple(cases),
        run_one=run_one,
        summarise=summarise_study,
        results="validation-cont_tab.csv",
        runs=(factor - 1) * run.runs,
        options=dict(run.options),
    )


def _continued(
    rows: pd.DataFrame, tabs: Mapping[str, tuple[pd.DataFrame, pd.DataFrame]]
) -> pd.DataFrame:
    if "part" not in rows or not (rows["part"] == "continued").any():
        return pd.DataFrame()
    first_runs: dict[str, pd.DataFrame] = {d: g for d, g in tabs["designs"][0].groupby("design")}
    for period, _, _ in SUB_DAILY:
        sub = tabs[f"sub-daily {iso(period)}"][0]
        first_runs |= {f"{d} {iso(period)}": g for d, g in sub.groupby("design")}
    cont = rows[rows["part"] == "continued"]
    parts = []
    for label, g in cont.groupby("label", sort=False):
        more = comparison.runs_table(g, [*comparison.SETTINGS, "part", "label", "first_run"])
        first = first_runs[str(label)]
        both = pd.concat([first[first["estimator"].isin(more["estimator"])], more])
        parts.append(
            summarise(both).assign(
                design=label,
                first_run=int(both["run"].min()),
                last_run=int(both["run"].max()),
                distinct_runs=both["run"].nunique(),
            )
        )
    return pd.concat(parts, ignore_index=True)


def _timings(cfg: MarketConfig, run: Run, cases: tuple[Case, ...]) -> dict[str, float]:
    """Seconds per part (the sum over its runs), named as the page's run-time table has them."""
    names = {}
    for i, (ar_sd, levels) in enumerate(SENSITIVITY):
        a = cfg.product_ar_sd if ar_sd is None else ar_sd
        lv = levels or (cfg.mean_units_min, cfg.mean_units_max)
        names[f"sens{i}"] = f"sensitivity ar_sd={a} levels={lv}"
    out: dict[str, float] = {}
    for c, s in zip(cases, run.seconds, strict=True):
        if isinstance(c.get("runs"), str) and not run.options[c["runs"]]:
            continue  # a part left out (CI's slow estimators)
        part = str(c["part"])
        name = f"continued {c['label']}" if part == "continued" else names.get(part, part)
        out[name] = out.get(name, 0.0) + s
    return out


def summarise_study(rows: pd.DataFrame, run: Run) -> dict[str, Any]:
    """Every table, the scalars the page quotes and, under ``plots``, the runs the plots
    draw (saved as PNGs, not as tables)."""
    quick = bool(run.options.get("quick"))
    tabs = _tables(rows)
    market = MarketConfig.model_validate(QUICK_MARKET if quick else {})
    sens_rows = []
    for i, (ar_sd, levels) in enumerate(SENSITIVITY):
        tab = tabs[f"sens{i}"][1].set_index("design")
        lv = levels or (market.mean_units_min, market.mean_units_max)
        sens_rows.append(
            {
                "product_ar_sd": market.product_ar_sd if ar_sd is None else ar_sd,
                "levels": f"{lv[0]:.0f}-{lv[1]:.0f}",
                "random_days": float(tab.loc["random-days", "se_reduction"]),
                "crossover": float(tab.loc["crossover", "se_reduction"]),
                "tb_sd": float(tab.loc["time-bound", "emp_sd"]),
            }
        )
    # the spillover market's products and graph (run 0's demand path aside)
    m0 = Market(
        MarketConfig.model_validate(market.model_dump() | {"spillover": SPILLOVER}), seed=SEED
    )
    clustering = cluster_graph(m0.substitutes, max_size=12, seed=SEED)
    aa_runs, aa_tab = tabs["A/A"]
    slow = tabs.get("A/A slow estimators")
    if slow is not None:
        aa_runs = pd.concat([aa_runs, slow[0]], ignore_index=True)
        aa_tab = pd.concat([aa_tab, slow[1]], ignore_index=True)
    cases = CASES + tuple(
        {"part": "continued", "label": lb}
        for lb in dict.fromkeys(rows.get("label", pd.Series()).dropna())
    )
    return {
        "quick": quick,
        "runs": run.runs,
        "slow_runs": int(run.options["slow_runs"]),
        "sens_runs": int(run.options["sens_runs"]),
        "products": market.n_products,
        "market": market.model_dump(mode="json"),
        "main_tab": tabs["designs"][1],
        "decomp": variance_decomposition(market, seeds=5 if quick else 20),
        "sens": pd.DataFrame(sens_rows),
        "spill_tab": tabs["spillover"][1],
        "clustering_desc": clustering.describe(),
        "cut_share": clustering.cut_weight_share,
        "n_classes": len(market_classes(m0)),
        "aa_tab": aa_tab,
        "sub_tab": _sub_tab(tabs),
        "cont_tab": _continued(rows, tabs),
        "continue_factor": continue_factor(run.options),
        "elapsed": run.wall_seconds,
        "timings": _timings(market, run, cases[: len(run.seconds)]),
        "jobs": run.jobs,
        "plots": {
            "designs": tabs["designs"],
            "spillover": tabs["spillover"],
            "aa": (aa_runs, aa_tab),
        },
    }


def save(results: Results, figures: Path = FIGURES) -> Path:
    """The tables as CSV, the scalars as JSON, the plots as PNG; the JSON's path."""
    assert isinstance(results, dict)
    figures.mkdir(parents=True, exist_ok=True)
    scalars = {}
    for key, value in results.items():
        if key in TABLES:
            value.to_csv(figures / f"validation-{key}.csv", index=False)
        elif key == "plots":
            for name, (runs, tab) in value.items():
                plot_comparison(runs, tab, figures, prefix=f"validation-{name}-")
        else:
            scalars[key] = value
    path = figures / "validation-results.json"
    path.write_text(json.dumps(scalars, indent=1, default=float))
    return path


def load(figures: Path = FIGURES) -> dict[str, Any]:
    """The study's saved results (what :func:`save` wrote), with ``figures``: where the page's
    other studies' files are."""
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


PAGE = Page("docs/validation.md", "validation_page/page.md.j2")

STUDY = Study(
    name="validation",
    cases=CASES,
    run_one=run_one,
    summarise=summarise_study,
    results="validation-results.json",
    runs=400,
    seed=SEED,
    options={
        "sens_runs": 100,  # the sensitivity's runs per market (a quarter of the runs)
        "slow_runs": 20,  # the slow A/A estimators the worker does not publish (hpte, mc)
        "continue_factor": CONTINUE_FACTOR,
        "quick": False,  # CI: a 40-product market, the continuation of one design
    },
    page=PAGE,
    context=context,
    hash_seed=True,  # the cluster design's classes depend on string hashing
    follow_up=follow_up,
    save=save,
    load=load,
)


def render_page(figures: Path = FIGURES) -> Path:
    """Rewrite validation.md (beside ``figures``: docs/validation.md by default) from the saved
    results in ``figures`` alone; its path."""
    page = figures.parent / "validation.md"
    return write_template(page, PAGE.template, "", context(load(figures)))
