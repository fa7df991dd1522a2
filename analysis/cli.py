"""``pricelab analyze``: run one estimator on an exported panel, offline.

    pricelab analyze PANEL.csv|.parquet --unit COL --time COL --outcome COL --treated COL
        --method {did,sc,difp,sdid,mc,trop,ht,crossover,...} [--se METHOD] [--seed N] [--json]
        [--covariates COL,COL] [--blackout COL] [--probability COL] [--sep ';']
        [--by COL]
    pricelab analyze PANEL ... --method spillover --graph GRAPH.json --spec SPEC
    pricelab analyze PANEL ... --method hpte --covariates COL,COL --unit-effects FILE.csv
    pricelab analyze PANEL --unit COL --time COL --outcome COL --arm COL --control NAME
        --method {dm,fe,did,...} [--json]
    pricelab analyze PANEL --unit COL --time COL --arm COL --control NAME --method demand
        --units COL --revenue COL [--cost COL | --profit COL] [--price-ratio COL] [--json]
    pricelab analyze PANEL --unit COL --time COL [--arm COL --control NAME]
        [--spec SPEC | --lag N] [--outcome units|revenue|profit] [--json]   # an adaptive ladder

Methods come from :mod:`analysis.estimators.registry`, so every registered estimator works.
``--se``/``--seed`` are passed to the estimator (the contract in
:mod:`analysis.estimators.base` says every estimator accepts them; an estimator that does not
gets them only if its signature has them). The CSV separator is detected from the header line
(``;``, ``,``, tab or ``|``) unless ``--sep`` is given.

``--arm COL --control NAME`` (in place of ``--treated``) compares every other arm of the
column with the control (:mod:`analysis.arms`): one row per arm with its own interval and one
that holds for all the comparisons at once (Dunnett-type for ``dm``, else Bonferroni), and
Holm's adjusted p-values. ``--method demand`` turns arms at several listed prices (each
arm's ``--price-ratio``, default column ``price_ratio``) into the demand curve, its
elasticity and curvature test, and with ``--cost`` (each row's unit cost) the profit curve and
the price that maximises profit, with a product-bootstrap interval (:mod:`analysis.demand`).
``--by COL`` gives one estimate per segment with Benjamini-Hochberg adjusted p-values.
``--method spillover`` prints the direct and spillover effects (and the naive difference) of
a panel drawn by a live design, by the function the analysis worker publishes them with: the
spec's design is redrawn for the exposure probabilities and the design-bootstrap variance, so
the panel's ``--time`` column holds the experiment's period indices (``panel export``,
``simulate``). An adaptive ladder's panel (an adaptive ``--spec``, or ``probability_<arm>``
columns that move) gets the analysis worker's AIPW on its recorded probabilities
(:mod:`analysis.adaptive_offline`), with the spec's carryover lag or ``--lag N``'s.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import typer

from analysis.adaptive_live import ESTIMATOR as ADAPTIVE_ESTIMATOR
from analysis.adaptive_live import (
    METRICS,
    adaptive_metric,
    carryover,
    is_adaptive,
    not_valid_note,
)
from analysis.adaptive_offline import (
    PREFIX,
    REFUSED,
    OfflineLook,
    analyse_adaptive,
    moved,
    probability_arms,
    recorded_probabilities,
)
from analysis.arms import (
    BLACKOUT,
    JOINT_METHODS,
    NEEDS_PROBABILITY,
    TREATED,
    ArmComparison,
    compare_pairs,
    dm_correlation,
    pair_frame,
    read_arms,
)
from analysis.demand import DemandResult, arm_totals, fit_demand
from analysis.elasticity import within_product_elasticity
from analysis.errors import AnalysisError
from analysis.estimators import registry
from analysis.evidence import demand_reading
from analysis.inference import bh_adjust
from analysis.panel import Panel
from analysis.ratio import relative_fields
from analysis.reader import (
    Cells,
    ReadPolicy,
    TableSource,
    late_start_sentence,
    load_table,
    to_cells,
)
from analysis.reader_options import (
    CurrencyOption,
    DateFormatOption,
    DayfirstOption,
    DecimalOption,
    LaunchOption,
    MissingOption,
    QueryOption,
    RatesOption,
    SepOption,
    TableOption,
    read_policy,
    table_source,
)
from analysis.table_input import check_decimal_commas
from core.errors import PricelabError
from core.ports import EstimatorPlan, ExperimentInfo


def read_table(
    path: Path, sep: str | None = None, text: tuple[str, ...] = (), decimal: str = "."
) -> pd.DataFrame:
    """A table as :func:`analysis.reader.load_table` reads it: CSV (separator detected),
    Parquet or a DuckDB database of one table; ``text`` columns as strings."""
    return load_table(TableSource(path, sep=sep, decimal=decimal), text)


def analyze_methods() -> list[str]:
    """Every ``--method``: the registry's estimators and the two that analyze fits itself."""
    return sorted({*registry.methods(), "demand", "elasticity", "spillover"})


#: the column that carries a constant ``--probability`` (not a name a panel would use)
_CONSTANT_PROBABILITY = "__probability__"


def _with_probability(df: pd.DataFrame, probability: str | None) -> tuple[pd.DataFrame, str | None]:
    """``--probability``: a column of ``df``, or one number in (0, 1) for every cell (added as a
    column); an AnalysisError saying what to type for anything else."""
    if probability is None or probability in df.columns:
        return df, probability
    try:
        value = float(probability)
    except ValueError:
        raise AnalysisError(
            f"--probability {probability!r} is not a column of the panel (its columns are "
            f"{', '.join(map(str, df.columns))}) nor a number; pass a column name or one "
            "probability for every cell, e.g. --probability 0.5."
        ) from None
    if not 0.0 < value < 1.0:
        raise AnalysisError(
            f"--probability {probability} must be strictly between 0 and 1 (the design's "
            "probability that a cell is treated), or a column name."
        )
    return df.assign(**{_CONSTANT_PROBABILITY: value}), _CONSTANT_PROBABILITY


def analyst_cells(
    df: pd.DataFrame,
    *,
    unit: str,
    time: str,
    sums: Iterable[str | None],
    describe: Iterable[str | None],
    money: Iterable[str | None],
    probability: str | None,
    policy: ReadPolicy,
) -> tuple[Cells, str | None]:
    """What ``analyze`` (the command and ``pricelab.analyze``) reads of an analyst's table,
    through the one reader (:func:`analysis.reader.to_cells`): ``probability`` as a column (a
    number in (0, 1) becomes one), then one row per unit and period, the ``sums`` (the outcome,
    units, revenue, profit) summed over a cell's rows and zero in a cell without a row
    (``policy.missing``), the ``describe`` columns (treated, arm, blackout, covariates, a
    segment) one value per cell; returns the cells and the probability column."""
    sums, describe = list(sums), list(describe)
    named = probability if probability in df.columns else None
    check_decimal_commas(df, (*sums, *describe, named))
    df, probability = _with_probability(df, probability)
    cells = to_cells(
        df, unit=unit, time=time, sums=sums, describe=[*describe, probability], money=money,
        policy=policy,
    )  # fmt: skip
    return cells, probability


def build_estimator(method: str, se: str | None, seed: int | None) -> Any:
    """``registry.make`` with ``se``/``seed`` passed when given and accepted."""
    params: dict[str, Any] = {}
    if se is not None:
        params["se"] = se
    if seed is not None:
        params["seed"] = seed
    if params:
        # resolve the factory first so we can look at its signature
        try:
            factory = registry.factory(method)
        except ImportError:
            factory = None
        if factory is not None:
            sig = inspect.signature(factory)
            accepts_any = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
            if not accepts_any:
                if "se" in params and "se" not in sig.parameters:
                    raise typer.BadParameter(f"Method {method!r} does not take --se.")
                params = {k: v for k, v in params.items() if k in sig.parameters}
    return registry.make(method, **params)


#: the fields a table prints in percent (JSON keeps them as fractions: 0.047 is +4.70%)
PERCENT_FIELDS = ("relative_effect", "relative_ci_low", "relative_ci_high")


def _percent(v: Any) -> str:
    return f"{100.0 * v:+.2f}%"


def _format_table(row: dict[str, Any], relative: bool = False) -> str:
    def fmt(k: str, v: Any) -> str:
        if isinstance(v, float):
            if math.isnan(v):
                return "nan"
            return _percent(v) if k in PERCENT_FIELDS else f"{v:.4g}"
        return str(v)

    keys = [
        "method",
        "effect",
        "se",
        "se_method",
        "ci_low",
        "ci_high",
        "pvalue",
        "n_units",
        "n_periods",
        "n_cells",
    ]
    if relative:
        keys += ["control_mean", "relative_effect", "relative_ci_low", "relative_ci_high"]
        if row.get("relative_note"):
            keys.append("relative_note")
    width = max(len(k) for k in keys)
    return "\n".join(f"{k:<{width}}  {fmt(k, row.get(k))}" for k in keys)


def analyze(
    panel_path: Annotated[
        Path,
        typer.Argument(
            help="Long panel: .csv, .parquet, a DuckDB database (.duckdb) or a PostgreSQL URL "
            "(with --table or --query)."
        ),
    ],
    unit: Annotated[str, typer.Option(help="Unit column.")],
    time: Annotated[str, typer.Option(help="Period column.")],
    method: Annotated[
        str | None,
        typer.Option(
            help="Estimator: "
            + ", ".join(analyze_methods())
            + " (demand, elasticity and spillover take their own options, below). On an "
            "adaptive ladder's panel (an adaptive --spec, or probability_<arm> columns that "
            "move between periods) the default, and the only method, is aipw_adaptive."
        ),
    ] = None,
    outcome: Annotated[
        str | None, typer.Option(help="Outcome column (not with --method elasticity).")
    ] = None,
    treated: Annotated[
        str | None, typer.Option(help="0/1 treatment column (two arms; or --arm).")
    ] = None,
    arm: Annotated[
        str | None,
        typer.Option(
            "--arm",
            help="With k arms: the column naming each cell's arm; every arm is compared with "
            "--control, with simultaneous intervals for the k - 1 comparisons.",
        ),
    ] = None,
    control: Annotated[
        str | None, typer.Option("--control", help="With --arm: the control arm's name.")
    ] = None,
    se: Annotated[
        str | None,
        typer.Option(
            help="Variance method: placebo, jackknife, bootstrap, auto_bootstrap, time_placebo, ..."
        ),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for placebo/bootstrap draws.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    covariates: Annotated[
        str | None, typer.Option(help="Comma-separated unit covariate columns.")
    ] = None,
    blackout: Annotated[str | None, typer.Option(help="0/1 blackout column.")] = None,
    probability: Annotated[
        str | None,
        typer.Option(
            help="The design's probability that a cell is treated: a column, or one number "
            "strictly between 0 and 1 for every cell (e.g. 0.5); ht, hajek and cuped need it."
        ),
    ] = None,
    sep: SepOption = None,
    decimal: DecimalOption = ".",
    dayfirst: DayfirstOption = None,
    date_format: DateFormatOption = None,
    alpha: Annotated[float, typer.Option(help="1 - confidence level.")] = 0.05,
    graph: Annotated[
        Path | None,
        typer.Option(help="Substitutes graph JSON (`pricelab graph build`); --method spillover."),
    ] = None,
    spec: Annotated[
        Path | None,
        typer.Option(
            help="Experiment spec whose design drew the panel's arms; --method spillover redraws "
            "it for the exposure probabilities and the variance; an adaptive spec's panel gets "
            "aipw_adaptive with the design's carryover lag and planned horizon."
        ),
    ] = None,
    by: Annotated[
        str | None,
        typer.Option(
            "--by",
            help="Segment column (e.g. category, brand, price band): one estimate per segment, "
            "with Benjamini-Hochberg adjusted p-values.",
        ),
    ] = None,
    relative: Annotated[
        bool,
        typer.Option(
            "--relative",
            help="Also give the effect relative to the control mean: control_mean, "
            "relative_effect and its Fieller interval (relative_ci_low/high), which carries the "
            "control mean's uncertainty and its covariance with the treated mean.",
        ),
    ] = False,
    units_col: Annotated[
        str | None,
        typer.Option("--units", help="With --method elasticity or demand: the units column."),
    ] = None,
    revenue_col: Annotated[
        str | None,
        typer.Option("--revenue", help="With --method elasticity or demand: the revenue column."),
    ] = None,
    cost_col: Annotated[
        str | None,
        typer.Option(
            "--cost",
            help="With --method demand: each row's unit cost; gives the profit curve and the "
            "price that maximises profit.",
        ),
    ] = None,
    profit_col: Annotated[
        str | None,
        typer.Option(
            "--profit",
            help="With --method demand, in place of --cost: the profit column (cost of goods = "
            "revenue - profit), as pricelab's panels have it.",
        ),
    ] = None,
    ratio_col: Annotated[
        str | None,
        typer.Option(
            "--price-ratio",
            help="With --method demand: the column of each arm's listed price relative to the "
            "control's (default: price_ratio, as pricelab's panels name it).",
        ),
    ] = None,
    unit_effects: Annotated[
        Path | None,
        typer.Option(
            "--unit-effects",
            help="With --method hpte: also write the per-product effects to this CSV (Parquet "
            "for .parquet/.pq), one row per treated product with columns unit, effect, se, "
            "ci_low, ci_high (95%), first_difference, matched_control, outlier, trees_matched.",
        ),
    ] = None,
    table: TableOption = None,
    query: QueryOption = None,
    missing: MissingOption = "zero",
    currency: CurrencyOption = None,
    rates: RatesOption = None,
    launch: LaunchOption = None,
    lag: Annotated[
        int | None,
        typer.Option(
            "--lag",
            help="On an adaptive ladder's panel without --spec: the carryover order m, in "
            "periods. A cell counts for an arm only when the arm held in its window of the m "
            "periods before it too, as the analysis worker's AIPW windows do (an optimal "
            "switchback's lag is its carryover_order; the periods that drew afresh are read off "
            "the panel). Default 0 (random days, cluster), or the spec's design's lag.",
        ),
    ] = None,
) -> None:
    """Estimate a treatment effect on an exported panel and print it."""
    if not 0.0 < alpha < 1.0:
        typer.echo(f"error: --alpha must be strictly between 0 and 1, not {alpha}", err=True)
        raise typer.Exit(code=2)
    if lag is not None and lag < 0:
        typer.echo(
            f"error: --lag must be 0 or more (the carryover order, in periods), not {lag}.",
            err=True,
        )
        raise typer.Exit(code=2)
    read: Cells | None = None  # the table as cells, once read
    try:
        if unit_effects is not None and method != "hpte":
            raise AnalysisError(
                f"--unit-effects needs --method hpte (per-product effects come from HPTE's "
                f"matching), not --method {method}."
            )
        if unit_effects is not None and by is not None:
            raise AnalysisError("--unit-effects does not take --by; filter the panel instead.")
        if method is not None and method not in (*analyze_methods(), ADAPTIVE_METHOD):
            raise AnalysisError(
                f"Unknown method {method!r}; choose one of {', '.join(analyze_methods())}."
            )
        if method not in (None, ADAPTIVE_METHOD):
            check_arm_options(treated, arm, control, method, probability, by, graph)
        policy = read_policy(missing, currency, rates, launch, dayfirst, date_format)
        df = load_table(table_source(panel_path, table, query, sep, decimal), (unit, arm, by))
        if by is not None and by in df.columns:
            df[by] = segments_as_numbers(df[by])
        given = {"--by": by, "--covariates": covariates, "--graph": graph,
                 "--unit-effects": unit_effects, "--units": units_col, "--revenue": revenue_col,
                 "--cost": cost_col, "--profit": profit_col, "--price-ratio": ratio_col,
                 "--se": se}  # fmt: skip
        look = offline_adaptive(df, method, spec, unit=unit, time=time, arm=arm,
                                control=control, blackout=blackout, outcome=outcome,
                                alpha=alpha, unused=[k for k, v in given.items() if v is not None]
                                + ["--relative"] * relative, lag=lag)  # fmt: skip
        if look is not None:
            print_adaptive(look, alpha, as_json)
            return
        if lag is not None:
            raise AnalysisError(
                "--lag is the carryover order of an adaptive ladder's AIPW windows, and this "
                "panel is not an adaptive ladder's (no adaptive --spec, no probability_<arm> "
                "columns that move between periods), so it has no meaning here; leave it out."
            )
        if method is None:
            raise AnalysisError(
                "--method is required: only an adaptive ladder's panel has a default "
                f"(choose one of {', '.join(analyze_methods())})."
            )
        if method == ADAPTIVE_METHOD:
            raise AnalysisError(
                f"--method {ADAPTIVE_METHOD} needs an adaptive ladder's panel: an adaptive "
                "--spec, or probability_<arm> columns that move between periods."
            )
        covs = [c.strip() for c in covariates.split(",") if c.strip()] if covariates else []
        sums = (outcome, units_col, revenue_col, profit_col)
        describe = (
            treated,
            arm,
            blackout,
            cost_col,
            (ratio_col or "price_ratio") if method == "demand" else ratio_col,
            by,
            *covs,
        )
        cells, probability = analyst_cells(
            df, unit=unit, time=time, sums=sums, describe=describe,
            money=(outcome, revenue_col, profit_col, cost_col), probability=probability,
            policy=policy,
        )  # fmt: skip
        read = cells
        for note in cells.notes:
            typer.echo(f"note: {note}", err=True)
        df = cells.frame
        if method != "demand" and (cost_col or ratio_col or profit_col) is not None:
            raise AnalysisError("--cost, --profit and --price-ratio go with --method demand.")
        if method == "demand":
            assert arm is not None and control is not None  # check_arm_options
            if outcome is not None or units_col is None or revenue_col is None:
                raise AnalysisError(
                    "--method demand takes --units COL and --revenue COL (not --outcome)."
                )
            result = fit_demand(
                arm_totals(df, read_arms(df, arm, control, unit), units_col, revenue_col,
                           ratio_col or "price_ratio", cost_col, blackout, probability,
                           profit_col, time),
                alpha,
            )  # fmt: skip
            _print_demand(result, arm, control, as_json)
            return
        if method == "elasticity":
            assert treated is not None  # check_arm_options: --arm does not take elasticity
            rows = elasticity_rows(df, unit, time, treated, blackout, probability, units_col,
                                   revenue_col, outcome, by, alpha)  # fmt: skip
            _print_rows(rows, _ELASTICITY_COLUMNS[0 if by else 1 :], as_json)
            if not as_json:
                for r in rows:
                    why = r.get("error") or r.get("reason")
                    if why:
                        name = f"segment {r['segment']}: " if by else ""
                        typer.echo(f"! {name}{why}")
            if all(r.get("error") for r in rows):
                raise AnalysisError(str(rows[0]["error"]))
            return
        if outcome is None:
            raise AnalysisError("--outcome is required (except with --method elasticity).")
        if units_col is not None or revenue_col is not None:
            raise AnalysisError("--units and --revenue go with --method elasticity.")
        if arm is not None and control is not None:
            compared = compare_arms(df, arm, control, method, se, seed, alpha, unit, time,
                                    outcome, blackout, covs, probability)  # fmt: skip
            _print_arms(compared, alpha, as_json)
            return
        assert treated is not None
        long = long_kw(unit, time, outcome, treated, blackout, probability, covs)
        if method == "spillover" or graph is not None:
            if by is not None:
                raise AnalysisError("--method spillover does not take --by.")
            results = offline_spillover(df, long, method, graph, spec, seed)
            _print_results(results, alpha, as_json)
            return
        if by is not None:  # each segment is validated on its own (they may span other periods)
            rows = by_segment(df, by, method, se, seed, alpha, long, relative)
            _print_segments(rows, as_json)
            if all(r["error"] for r in rows):
                raise AnalysisError(f"no segment could be estimated: {rows[0]['error']}")
            return
        panel = Panel.from_long(df, **long)
        estimator = build_estimator(method, se, seed)
        result = estimator.fit(panel).result
        if unit_effects is not None:
            write_unit_effects(result.details["unit_effects"], unit_effects)
    except (AnalysisError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if read is not None and missing == "zero" and first.startswith("The panel is unbalanced"):
            first = late_start_sentence(read.frame, unit, time) or first
        typer.echo(f"error: {first}", err=True)
        raise typer.Exit(code=2) from None
    row = result.to_dict(alpha)
    if relative:
        row |= relative_fields(result, alpha)
    if as_json:
        typer.echo(json.dumps({k: _json_safe(v) for k, v in row.items()}))
    else:
        typer.echo(_format_table(row, relative))


#: Reads an experiment spec into what the analysis worker is told of it (``ExperimentInfo``);
#: wired in by the CLI's composition root (``register(app, spec_info=...)``), since analysis/
#: does not import the controller.
_WIRING: dict[str, Callable[[Path], ExperimentInfo]] = {}


def check_arm_options(
    treated: str | None,
    arm: str | None,
    control: str | None,
    method: str,
    probability: str | None,
    by: str | None,
    graph: Path | None,
) -> None:
    """Two arms (``--treated``) or k (``--arm`` with ``--control``), and what k arms do not
    take yet; one sentence each."""
    if method == "demand" and arm is None:
        raise AnalysisError(
            "--method demand reads the arms' prices: give --arm COL with --control NAME."
        )
    if (treated is None) == (arm is None):
        raise AnalysisError(
            "give --treated COL (two arms) or --arm COL with --control NAME (k arms), "
            "not both or neither."
        )
    if arm is None:
        if control is not None:
            raise AnalysisError("--control names the control arm of --arm; give --arm COL.")
        return
    if control is None:
        raise AnalysisError("--arm needs --control NAME: the arm every other is compared with.")
    if method == "demand":
        if by is not None:
            raise AnalysisError("--method demand does not take --by: filter the panel per segment.")
        return
    if method in ("elasticity", "spillover") or graph is not None:
        raise AnalysisError(f"--arm does not take --method {method} yet.")
    if by is not None:
        raise AnalysisError("--arm does not take --by yet: filter the panel per segment.")
    if method in NEEDS_PROBABILITY:
        raise AnalysisError(
            f"--arm compares each arm with the control on the pair's cells; --method {method} "
            "needs each cell's design probability for that pair, which --arm does not take "
            "yet (with --arm, --probability only marks the cells the design randomised)."
        )


def compare_arms(
    df: pd.DataFrame,
    arm_col: str,
    control: str,
    method: str,
    se: str | None,
    seed: int | None,
    alpha: float,
    unit: str,
    time: str,
    outcome: str,
    blackout: str | None,
    covs: list[str],
    probability: str | None = None,
) -> ArmComparison:
    """Fit ``method`` on each arm's pair with the control (:func:`analysis.arms.pair_frame`;
    with ``probability``, only the cells the design randomised) and give the k - 1 results
    simultaneous intervals (:func:`analysis.arms.compare_pairs`, as the analysis worker does)."""
    named = [unit, time, outcome, blackout, probability, *covs]
    missing = [c for c in named if c is not None and c not in df.columns]
    if missing:  # said of the analyst's table, before any pair adds its own columns
        raise AnalysisError(f"Column(s) {missing} not found; the table has {list(df.columns)}.")
    arms = read_arms(df, arm_col, control, unit)
    pairs = {name: pair_frame(df, arms, name, blackout) for name in arms.others}

    def fit(name: str) -> Any:
        pair, dark = pairs[name]
        long = long_kw(unit, time, outcome, TREATED, BLACKOUT if dark else None, probability, covs)
        return build_estimator(method, se, seed).fit(Panel.from_long(pair, **long)).result

    def corr() -> np.ndarray | None:
        if method in JOINT_METHODS and se in (None, "cluster"):
            frames = {name: frame for name, (frame, _) in pairs.items()}
            return dm_correlation(df, arms, outcome, blackout, probability, frames)
        return None

    return compare_pairs(arms, fit, alpha, corr)


def arm_rows(compared: ArmComparison, alpha: float) -> list[dict[str, Any]]:
    """One row per non-control arm: today's two-arm row with its relative form, the arm's
    name, its simultaneous interval and Holm's adjusted p-value."""
    rows = []
    for name, result, (lo, hi), holm in zip(
        compared.arms.others,
        compared.results,
        compared.simultaneous.intervals,
        compared.pvalues_holm,
        strict=True,
    ):
        row = {"arm": name} | result.to_dict(alpha) | relative_fields(result, alpha)
        rows.append(row | {"sim_ci_low": lo, "sim_ci_high": hi, "pvalue_holm": holm})
    return rows


def _print_arms(compared: ArmComparison, alpha: float, as_json: bool) -> None:
    rows = arm_rows(compared, alpha)
    sim = compared.simultaneous
    if as_json:
        doc = {
            "control": compared.arms.control,
            "arm_column": compared.arms.column,
            "alpha": alpha,
            "simultaneous": sim.method,
            "simultaneous_critical_value": sim.critical_value,
            "arms": [{k: _json_safe(v) for k, v in r.items()} for r in rows],
            # which arm is best (higher is better): Hsu's MCB where the joint distribution is
            # known, every arm (the control first) with its interval for its effect minus the
            # best of the others
            "best_method": None if compared.best is None else "hsu-mcb",
            "best": None
            if compared.best is None
            else [{k: _json_safe(v) for k, v in b.to_dict().items()} for b in compared.best],
            "best_set": None if compared.best_set is None else list(compared.best_set),
        }
        typer.echo(json.dumps(doc))
        return
    cols = ("arm", "effect", "se", "ci_low", "ci_high", "sim_ci_low", "sim_ci_high", "pvalue",
            "pvalue_holm", "relative_effect", "n_cells")  # fmt: skip
    _print_rows(rows, cols, False)
    typer.echo(
        f"against control {compared.arms.control!r}; sim_ci: {1 - alpha:.0%} for the "
        f"{len(rows)} comparisons at once ({sim.method})"
    )
    if compared.best_set is not None:
        typer.echo(
            f"best (Hsu's MCB, {1 - alpha:.0%}, higher is better): cannot be ruled out: "
            f"{', '.join(compared.best_set)}"
        )


def _print_demand(result: DemandResult, arm: str, control: str, as_json: bool) -> None:
    """``--method demand``: one JSON object, or the points, the fit and the recommendation."""
    doc = result.to_dict()
    if as_json:
        doc = {"arm_column": arm, "control": control} | doc
        typer.echo(json.dumps(doc))
        return
    cols = ("arm", "price_ratio", "price_paid_ratio", "units_ratio", "units_ratio_ci_low",
            "units_ratio_ci_high", "revenue_per_cell", "profit_per_cell", "n_cells")  # fmt: skip
    _print_rows(doc["points"], cols, False)

    def num(v: Any) -> str:
        return "-" if v is None else f"{v:.4g}"

    typer.echo(
        f"elasticity {num(doc['elasticity'])} [{num(doc['elasticity_ci_low'])}, "
        f"{num(doc['elasticity_ci_high'])}]; curvature p = {num(doc['curvature_pvalue'])}"
    )
    if doc["optimal_price_ratio"] is not None:
        # evidence, not a decision: an offline fit has no verdict (analysis.evidence)
        reading = demand_reading(doc)
        edge = " (at the edge of the tested range)" if doc["at_range_edge"] else ""

        def ci(low: str, high: str) -> str:
            if not doc["identified"]:
                return " (no interval)"
            return f" [{num(doc[low])}, {num(doc[high])}]"

        typer.echo(
            f"{reading.headline}: the fitted profit curve peaks at price ratio "
            f"{num(doc['optimal_price_ratio'])}"
            f"{ci('optimal_price_ratio_ci_low', 'optimal_price_ratio_ci_high')}{edge}; "
            f"profit change there against the control {num(doc['profit_change_at_optimum'])}"
            f"{ci('profit_change_at_optimum_ci_low', 'profit_change_at_optimum_ci_high')} "
            "per product-period"
        )
        typer.echo(reading.text)
    for note in doc["notes"]:
        typer.echo(f"! {note}")


def offline_spillover(
    df: pd.DataFrame,
    long: dict[str, Any],
    method: str,
    graph_path: Path | None,
    spec_path: Path | None,
    seed: int | None,
) -> list[Any]:
    """``--method spillover``: the direct and spillover effects of a live design's panel, by the
    function the analysis worker publishes them with (``design_spillover``)."""
    import networkx as nx

    from analysis.graph import load_graph
    from analysis.spillover import design_spillover

    if method != "spillover":
        raise AnalysisError(f"--graph is for --method spillover, not --method {method}.")
    if graph_path is None or spec_path is None:
        raise AnalysisError(
            "--method spillover needs --graph GRAPH.json (the substitutes graph) and "
            "--spec SPEC (the design that drew the arms gives the exposure probabilities)."
        )
    spec_info = _WIRING.get("spec_info")
    if spec_info is None:
        raise AnalysisError("--method spillover needs the pricelab CLI (it reads the spec).")
    if not graph_path.exists():
        raise FileNotFoundError(2, "no such file", str(graph_path))
    info = spec_info(spec_path)
    graph = nx.relabel_nodes(load_graph(graph_path), str)  # a copy, nodes named as text
    panel = Panel.from_long(df, **long)
    units = [str(u) for u in panel.units]
    known = set(units) & set(graph.nodes)
    if not known:
        raise AnalysisError(f"no product of the panel is a node of the graph {graph_path}.")
    times = np.asarray(panel.times)
    planned = info.planned_periods
    whole = times.dtype.kind in "iu" or (
        times.dtype.kind == "f" and bool(np.all(np.isfinite(times) & (times == np.round(times))))
    )
    if not whole or times.min() < 0 or times.max() >= planned:
        raise AnalysisError(
            f"--time {long['time']!r} must hold the experiment's period indices 0..{planned - 1} "
            "(as `pricelab panel export` and `pricelab simulate` write them)."
        )
    absent = [u for u in units if u not in graph]
    if absent:  # a product the graph does not know has no known substitutes
        typer.echo(
            f"note: {len(absent)} product(s) are not in the graph and count as having no "
            f"substitutes (e.g. {absent[0]!r})",
            err=True,
        )
        graph.add_nodes_from(absent)
    try:
        return design_spillover(
            panel,
            graph,
            info.spillover,
            info.sampler,  # type: ignore[arg-type]
            design=info.design,
            metric=long["outcome"],
            seed=0 if seed is None else seed,
        )
    except KeyError as exc:  # the sampler knows only the spec's products
        raise AnalysisError(str(exc.args[0]) if exc.args else str(exc)) from None


#: the adaptive ladder's method (the analysis worker's)
ADAPTIVE_METHOD = ADAPTIVE_ESTIMATOR
#: the fixed-allocation methods named when no spec names the design's
_FIXED = (EstimatorPlan("fe"), EstimatorPlan("dm"), EstimatorPlan("ht"), EstimatorPlan("hajek"))


def offline_adaptive(
    df: pd.DataFrame,
    method: str | None,
    spec_path: Path | None,
    *,
    unit: str,
    time: str,
    arm: str | None,
    control: str | None,
    blackout: str | None,
    outcome: str | None,
    alpha: float,
    unused: Sequence[str] = (),
    lag: int | None = None,
) -> OfflineLook | None:
    """The analysis worker's look at an adaptive ladder's panel (:mod:`analysis.adaptive_offline`),
    or None when the panel is not one: neither ``--spec`` has an ``adaptive:`` block nor the
    panel's ``probability_<arm>`` columns move between periods (and ``--method`` is not
    aipw_adaptive). A fixed-allocation ``method`` on an adaptive panel is refused, as are the
    options ``unused`` (the worker's estimate takes none) and an adaptive panel without its
    recorded probabilities (AnalysisError, one sentence). ``lag`` (``--lag``): the carryover
    order without a spec (the periods that drew afresh then read off the panel); with a spec
    it must be the spec's design's own."""
    info = _read_spec(spec_path)
    params: dict[str, Any] = info.params if info is not None else {}
    adaptive_spec = is_adaptive(params)
    spec_arms = [str(a["name"]) for a in params.get("arms") or ()]
    names = spec_arms if adaptive_spec and spec_arms else probability_arms(df.columns)
    fixed_method = method not in (None, ADAPTIVE_METHOD)
    if adaptive_spec:
        why = "its spec has an adaptive: block"
    elif names:
        try:
            recorded = recorded_probabilities(df, time, names)
        except AnalysisError:
            if fixed_method:
                return None  # no readable record of moving probabilities: as the user asks
            raise
        if not moved(recorded) and method != ADAPTIVE_METHOD:
            return None  # the same probabilities every period: a fixed allocation
        why = "its probability_<arm> columns move between periods"
    else:
        return None
    if fixed_method:
        raise AnalysisError(REFUSED.format(method=method, why=why))
    if unused:
        raise AnalysisError(
            "an adaptive ladder's panel is estimated as the analysis worker does, which takes "
            f"no {', '.join(unused)}."
        )
    if not any(c.startswith(PREFIX) for c in map(str, df.columns)):
        raise AnalysisError(
            "the panel has no probability_<arm> columns: an adaptive ladder's estimate needs "
            "each period's recorded probability of every arm, which `pricelab simulate` and "
            "`pricelab panel export` write for an adaptive ladder."
        )
    arm_col = arm or ("arm" if "arm" in df.columns else None)
    if arm_col is None or arm_col not in df.columns:
        raise AnalysisError("an adaptive ladder's panel needs --arm COL: each cell's arm by name.")
    control = control or next(
        (str(a["name"]) for a in params.get("arms") or () if a.get("control")), None
    )
    if control is None:
        raise AnalysisError("an adaptive ladder's panel needs --control NAME (or --spec).")
    if outcome is not None and outcome not in METRICS:
        raise AnalysisError(
            f"--outcome {outcome!r}: an adaptive ladder is estimated on the worker's metrics "
            f"({', '.join(METRICS)}), by those column names."
        )
    metrics = [m for m in ((outcome,) if outcome else METRICS) if m in df.columns]
    if blackout is None and "blackout" in df.columns:
        blackout = "blackout"  # the worker reads the cells' blackout
    read_points = False
    if info is not None:
        spec_lag, points = carryover(info.estimators)
        if lag is not None and lag != spec_lag:
            raise AnalysisError(
                f"--lag {lag} is not the carryover lag of the --spec's design ({spec_lag}); "
                "leave out --lag (the spec's is used) or --spec."
            )
        lag, source = spec_lag, "the spec's design"
        horizon = info.planned_periods
        best_on = adaptive_metric(params) if adaptive_spec else None
        note = not_valid_note(info.estimators)
    else:
        points, horizon, best_on = None, 0, None
        note = not_valid_note(_FIXED)
        if lag is None:
            lag, source = 0, "none given"
            typer.echo(
                "note: no --spec: carryover lag 0 (random days, cluster; an optimal "
                "switchback's lag: --lag m or its --spec) and the panel's periods as the horizon",
                err=True,
            )
        else:
            source, read_points = "--lag", lag > 0
            typer.echo(
                f"note: no --spec: carryover lag {lag} (--lag)"
                + (", the periods that drew afresh read off the panel" if lag else "")
                + ", and the panel's periods as the horizon",
                err=True,
            )
    if best_on is not None and best_on not in metrics:
        best_on = None
    return analyse_adaptive(
        df, unit=unit, time=time, arm=arm_col, names=names, control=control,
        blackout=blackout, metrics=metrics, lag=lag, points=points, horizon=horizon,
        alpha=alpha, metric=best_on, note=note, lag_source=source, read_points=read_points,
    )  # fmt: skip


def _read_spec(spec_path: Path | None) -> ExperimentInfo | None:
    """The spec as the analysis worker is told it (None without ``--spec`` or the CLI)."""
    spec_info = _WIRING.get("spec_info")
    if spec_path is None or spec_info is None:
        return None
    if not spec_path.exists():
        raise FileNotFoundError(2, "no such file", str(spec_path))
    try:
        return spec_info(spec_path)
    except PricelabError as exc:
        raise AnalysisError(str(exc).strip().splitlines()[0]) from None


#: the columns ``analyze`` prints for an adaptive ladder
ADAPTIVE_COLUMNS = ("metric", "arm", "effect", "cs_low", "cs_high", "mean_treated",
                    "mean_control", "n_cells")  # fmt: skip


def print_adaptive(look: OfflineLook, alpha: float, as_json: bool) -> None:
    """Every metric's arms against the control with their simultaneous anytime-valid
    sequences, which arm looks best, and why no fixed-allocation method ran; with ``--json``
    one object per row, then each metric's look as the worker publishes it (kind adaptive)."""
    rows = look.rows()
    if as_json:
        _print_rows(rows, ADAPTIVE_COLUMNS, True)
        for doc in look.looks():
            typer.echo(json.dumps(_json_deep(doc)))
        return
    fit = look.fits[look.metric]
    typer.echo(
        f"{ADAPTIVE_METHOD}: AIPW on the recorded probabilities of an adaptive ladder "
        f"({len(fit.cells.products)} products, {fit.periods} periods, carryover lag "
        f"{fit.lag} ({look.lag_source}{_fresh_said(look)}), horizon {look.horizon}); each "
        f"interval is a {1 - alpha:.0%} "
        "simultaneous anytime-valid sequence (all arms at once, valid at any look)"
    )
    _print_rows(rows, ADAPTIVE_COLUMNS, False)
    for metric, f in look.fits.items():
        means = f.estimator.looks_.mean[-1]
        typer.echo(
            f"{metric}: largest mean {f.names[int(means.argmax())]}; best set (not shown worse "
            f"than another): {', '.join(f.best_set())}"
        )
    best = fit.names[int(fit.estimator.looks_.mean[-1].argmax())]
    typer.echo(f"looks best on {look.metric}: {best}")
    typer.echo(f"note: {look.note}")


def _fresh_said(look: OfflineLook) -> str:
    """Which periods kept the period before's draw, when they were read off the panel."""
    if look.fresh is None:
        return ""
    periods = look.fits[look.metric].periods
    kept = [t for t in range(periods) if t not in look.fresh]
    if not kept:
        return "; every period drew afresh"
    return f"; period{'s' * (len(kept) > 1)} {', '.join(map(str, kept))} kept the draw before"


def _json_deep(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _json_deep(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_json_deep(x) for x in v]
    return _json_safe(v)


def _print_results(results: list[Any], alpha: float, as_json: bool) -> None:
    cols = ("method", "effect", "se", "ci_low", "ci_high", "pvalue", "n_units", "n_periods")
    _print_rows([r.to_dict(alpha) for r in results], cols, as_json)


def _print_rows(rows: list[dict[str, Any]], cols: tuple[str, ...], as_json: bool) -> None:
    """One JSON object per row, or a right-aligned table of ``cols`` (NaN and None as "-")."""
    if as_json:
        for r in rows:
            typer.echo(json.dumps({k: _json_safe(v) for k, v in r.items()}))
        return

    def fmt(k: str, v: Any) -> str:
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            return "-"
        if isinstance(v, float):
            return _percent(v) if k in PERCENT_FIELDS else f"{v:.4g}"
        return str(v)

    table = [list(cols)] + [[fmt(c, r.get(c)) for c in cols] for r in rows]
    width = [max(len(row[i]) for row in table) for i in range(len(cols))]
    for row in table:
        typer.echo("  ".join(c.rjust(w) for c, w in zip(row, width, strict=True)))


UNIT_EFFECT_COLUMNS = (
    "unit",
    "effect",
    "se",
    "ci_low",
    "ci_high",
    "first_difference",
    "matched_control",
    "outlier",
    "trees_matched",
)


def write_unit_effects(unit_effects: pd.DataFrame, path: Path) -> None:
    """HPTE's per-product table as CSV (Parquet for .parquet/.pq), the unit in column ``unit``."""
    table = unit_effects.rename_axis("unit").reset_index()[list(UNIT_EFFECT_COLUMNS)]
    if path.suffix.lower() in (".parquet", ".pq"):
        table.to_parquet(path, index=False)
    else:
        table.to_csv(path, index=False)


def long_kw(
    unit: str,
    time: str,
    outcome: str,
    treated: str,
    blackout: str | None,
    probability: str | None,
    covariates: list[str],
) -> dict[str, Any]:
    return {
        "unit": unit,
        "time": time,
        "outcome": outcome,
        "treated": treated,
        "blackout": blackout,
        "probability": probability,
        "covariates": covariates,
    }


def segments_as_numbers(col: pd.Series) -> pd.Series:
    """A segment column, read as text (a region ``NA`` is a name, not a blank), as numbers
    when every value is one: segments 1, 2 and 10 print as numbers (``--json``: 1, not "1")
    and sort as numbers, not as 1, 10, 2."""
    written = col.notna()
    numbers = pd.to_numeric(col.where(written), errors="coerce")
    if not written.any() or numbers[written].isna().any():
        return col
    # a label with leading zeros (store 0042) or a sign is a name written with digits: as a
    # number it would print as another label (42)
    if col[written].astype(str).str.strip().str.match(r"^[+-]|^0\d").any():
        return col
    return numbers


def by_segment(
    df: pd.DataFrame,
    by: str,
    method: str,
    se: str | None,
    seed: int | None,
    alpha: float,
    long: dict[str, Any],
    relative: bool = False,
) -> list[dict[str, Any]]:
    """One estimate per segment of ``by`` (a column constant within each unit), with the
    Benjamini-Hochberg adjusted p-value (``pvalue_bh``) beside the raw one. A segment whose
    fit fails gets its error and no p-value; it is not one of the tests BH adjusts for."""
    needed = [long["unit"], long["time"], long["outcome"], long["treated"], by]
    needed += [c for c in (long["blackout"], long["probability"]) if c] + list(long["covariates"])
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise AnalysisError(f"Column(s) {missing} not found; the table has {list(df.columns)}.")
    if df[by].isna().any():
        raise AnalysisError(f"Segment column {by!r} has blank values.")
    varying = df.groupby(long["unit"])[by].nunique()
    if (varying > 1).any():
        raise AnalysisError(
            f"Segment column {by!r} varies within unit {varying[varying > 1].index[0]!r}; "
            "a segment is a set of units."
        )
    rows: list[dict[str, Any]] = []
    for segment, part in df.groupby(by, sort=True):
        row: dict[str, Any] = {"segment": segment}
        try:
            panel = Panel.from_long(part, **long)
            result = build_estimator(method, se, seed).fit(panel).result
            row |= result.to_dict(alpha) | {"error": ""}
            if relative:
                row |= relative_fields(result, alpha)
        except (AnalysisError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            # the same keys as an estimated segment, without values
            keys = ("metric", "effect", "se", "se_method", "ci_low", "ci_high", "pvalue", "df")
            row |= {"method": method} | dict.fromkeys(keys, math.nan) | {"alpha": alpha}
            row |= {"n_units": int(part[long["unit"]].nunique()), "n_periods": math.nan}
            row |= {"n_cells": math.nan, "error": first}
        rows.append(row)
    for row, adj in zip(rows, bh_adjust([r["pvalue"] for r in rows]), strict=True):
        row["pvalue_bh"] = adj
    return rows


_SEGMENT_COLUMNS = (
    "segment",
    "effect",
    "se",
    "ci_low",
    "ci_high",
    "pvalue",
    "pvalue_bh",
    "n_units",
)


_ELASTICITY_COLUMNS = ("segment", "effect", "ci_low", "ci_high", "identified", "n_units")


def elasticity_rows(
    df: pd.DataFrame,
    unit: str,
    time: str,
    treated: str,
    blackout: str | None,
    probability: str | None,
    units_col: str | None,
    revenue_col: str | None,
    outcome: str | None,
    by: str | None,
    alpha: float,
) -> list[dict[str, Any]]:
    """``--method elasticity``: the within-product Wald elasticity (analysis.elasticity), for
    the whole panel or each segment of ``by``."""
    if units_col is None or revenue_col is None:
        raise AnalysisError("--method elasticity needs --units COL and --revenue COL.")
    if outcome is not None:
        raise AnalysisError("--method elasticity takes --units and --revenue, not --outcome.")
    parts = [(None, df)] if by is None else list(df.groupby(by, sort=True))
    if by is not None and by not in df.columns:
        raise AnalysisError(f"Column {by!r} not found; the table has {list(df.columns)}.")
    rows = []
    for segment, part in parts:
        row: dict[str, Any] = {} if by is None else {"segment": segment}
        try:
            units = Panel.from_long(
                part, unit=unit, time=time, outcome=units_col, treated=treated,
                blackout=blackout, probability=probability,
            )  # fmt: skip
            revenue = Panel.from_long(
                part, unit=unit, time=time, outcome=revenue_col, treated=treated,
                blackout=blackout, probability=probability,
            )  # fmt: skip
            row |= within_product_elasticity(units, revenue.Y, alpha).to_dict()
        except (AnalysisError, ValueError) as exc:
            if by is None:
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            row |= {"metric": "elasticity", "effect": math.nan, "identified": False}
            row |= {"error": first}
        rows.append(row)
    return rows


def _print_segments(rows: list[dict[str, Any]], as_json: bool) -> None:
    _print_rows(rows, _SEGMENT_COLUMNS, as_json)
    if as_json:
        return
    for r in rows:
        if r.get("error"):
            typer.echo(f"! segment {r['segment']}: {r['error']}")
    typer.echo("pvalue_bh: Benjamini-Hochberg adjusted over the segments that were estimated")


def _json_safe(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if hasattr(v, "item"):
        return v.item()
    return v


def register(app: typer.Typer, spec_info: Callable[[Path], ExperimentInfo] | None = None) -> None:
    """Add the ``analyze`` command to the ``pricelab`` app. ``spec_info`` reads a spec into
    its ``ExperimentInfo`` (design, spillover kind, sampler); ``--method spillover`` needs it."""
    if spec_info is not None:
        _WIRING["spec_info"] = spec_info
    app.command("analyze")(analyze)


__all__ = [
    "analyze",
    "analyst_cells",
    "analyze_methods",
    "build_estimator",
    "read_table",
    "register",
]
