"""``pricelab simulate`` and ``pricelab compare-designs``. Register with ``register(app)``.

Every refusal is one sentence on stderr with exit status 2.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

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
)
from controller import design_registry
from controller.errors import SpecError
from controller.spec import ExperimentSpec, load_spec_file
from core.errors import PricelabError
from lab.config import MarketConfig
from lab.failed_fits import MAX_FAILED_SHARE
from lab.price import (
    ModelledPrice,
    describe,
    ladder_market,
    ladder_ratios,
    modelled_price,
    one_price_refused,
)

if TYPE_CHECKING:
    import pandas as pd

    from lab.compare import CompareConfig
    from lab.plan import PlanConfig
    from lab.simulate import SimulatedExperiment
    from lab.simulate_adaptive import AdaptiveSimulation

# The comparison, the simulator and the market (numpy, pandas, scipy, networkx, and the
# estimators through lab.compare) are imported by the commands that run them: a command's
# options, its help and its refusals do without them, and ``simulate --live`` runs without
# the estimators (a second of CPU per call, measured with -X importtime).


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _write_out(out: Path, write: Callable[[], list[Path]], err: bool = False) -> None:
    """Run ``write`` (it writes under ``out`` and returns the paths) and name each file written;
    a directory that cannot be written is one sentence, exit 2."""
    try:
        paths = write()
    except OSError as exc:
        _fail(f"cannot write to {out}: {exc.strerror or exc}")
    for p in paths:
        typer.echo(f"wrote {p}", err=err)


def _market_config(path: Path | None, products: int | None = None) -> MarketConfig:
    try:
        cfg = MarketConfig.from_file(path) if path is not None else MarketConfig()
        if products is not None:
            cfg = MarketConfig.model_validate(
                cfg.model_dump(exclude_unset=True) | {"n_products": products}
            )
    except OSError as exc:
        _fail(f"cannot read market config {path}: {exc.strerror or exc}")
    except ValueError as exc:
        _fail(_first_line(exc))
    return cfg


#: ``--price-change`` of simulate and compare-designs
_PRICE_CHANGE_HELP = (
    "The treatment's price change relative to control's: 0.10 for a 10% rise, -0.05 for a 5% "
    "cut (default: a --spec's price_ratio - 1, else the market config's price_change, else the "
    "simulator's -0.05, said on the first line). A spec or market config naming a different "
    "change is refused, not overridden, and so is any change beside a spec whose arms list "
    "their own prices (a price ladder)."
)


def _modelled_price(
    cfg: MarketConfig, option: float | None, spec: ExperimentSpec | None = None
) -> ModelledPrice:
    try:
        return modelled_price(cfg, option=option, spec=spec)
    except PricelabError as exc:
        _fail(str(exc))


def _say_assumption(price: ModelledPrice) -> None:
    """The assumed price change, as the command's first line (stderr), when nobody named it."""
    if price.assumption is not None:
        typer.echo(f"note: {price.assumption}", err=True)


def _first_line(exc: Exception) -> str:
    """A pydantic error's first problem as one sentence (its field and what is wrong)."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ())) or "config"
        msg = str(first.get("msg", exc)).removeprefix("Value error, ")
        if first.get("type") == "extra_forbidden":
            msg = "is not a known market field"
        return f"{where}: {msg}"
    return str(exc).splitlines()[0]


def simulate_command(
    out: Annotated[
        Path | None, typer.Option("--out", help="Panel file: .csv or .parquet (offline).")
    ] = None,
    spec_path: Annotated[
        Path | None,
        typer.Option(
            "--spec",
            help="Experiment spec (YAML/JSON) to run as the live controller would; its "
            "products are the market's products and its periods (whole hours, PT1H to P1D) "
            "the market's.",
        ),
    ] = None,
    design: Annotated[
        str,
        typer.Option(
            "--design",
            help="Without --spec: the design's example experiment on the market ("
            + ", ".join(design_registry.names())
            + ").",
        ),
    ] = "random-days",
    days: Annotated[
        int | None,
        typer.Option(
            "--days",
            help="Without --spec: days to simulate (default 28). With --live: periods to play "
            "(default: all, then the end), from the next one of an experiment already running.",
        ),
    ] = None,
    allocation: Annotated[
        float, typer.Option("--allocation", help="Without --spec: share of units treated.")
    ] = 0.5,
    config: Annotated[
        Path | None, typer.Option("--config", help="Market config (.yaml/.yml/.json).")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Market seed (and spec seed).")] = 0,
    price_change: Annotated[
        float | None, typer.Option("--price-change", help=_PRICE_CHANGE_HELP)
    ] = None,
    events: Annotated[
        Path | None, typer.Option("--events", help="Directory for event JSONL files.")
    ] = None,
    live: Annotated[
        bool,
        typer.Option(
            "--live",
            help="Play the market into the running stack instead: create the --spec experiment "
            "through the commands topic, move the simulated clock period by period, send its "
            "sales and print the estimates the analysis worker publishes (workers and this "
            "command with PRICELAB_CLOCK=simulated). --days: the periods to play (default: "
            "all, then the end); the experiment stays running after fewer, and the same "
            "command again (same spec and --seed) continues it from the next period.",
        ),
    ] = False,
    analysis_metrics: Annotated[
        str,
        typer.Option(
            help="With --live: the analysis worker's metrics endpoint (to know when it has "
            "looked at a period)."
        ),
    ] = "http://127.0.0.1:9465/metrics",
) -> None:
    """Simulate a seeded market under an experiment and write the long panel with the truth:
    unit, period, arm, probability, blackout (the same as `pricelab schedule SPEC --csv`),
    outcomes and true effects. A spec whose arms: list more than two arms, each with a
    price_ratio, runs as a price ladder (each arm at its price; the panel names the arm and
    its price_ratio). A spec with an adaptive: block runs its adaptive allocation as the live
    path does (each period's probabilities from the look of the periods before the last one;
    probability is then each cell's recorded probability of its own arm, probability_<arm>
    every arm's), and the line compares its regret with the fixed ladder's. With --live, play
    it into the running stack instead."""
    if seed < 0:
        _fail(f"--seed must be a non-negative whole number, not {seed}")
    if live:
        _simulate_live(spec_path, days, config, seed, analysis_metrics, out, price_change)
        return
    if out is None:
        _fail("--out is required (or --live, to play the market into the running stack)")
    from lab.compare import make_spec
    from lab.market import Market
    from lab.simulate import market_for_spec, run_spec, write_events, write_panel

    try:
        if spec_path is not None:
            spec = load_spec_file(spec_path)
            ladder_ratios(spec)  # a ladder whose arms list no prices: refused, naming arms
            wide = spec.held_warning()
            if wide is not None:  # accepted, but an arm's sequences will be wide
                typer.echo(f"warning: {wide}", err=True)
            price = _modelled_price(_market_config(config), price_change, spec)
            market = market_for_spec(spec, price.market, seed)
        else:
            if design not in design_registry.names():
                _fail(
                    f"unknown design {design!r}; choose from {', '.join(design_registry.names())}"
                )
            days = 28 if days is None else days
            if days < 4:
                _fail(f"--days must be at least 4, not {days}")
            if not 0.0 < allocation < 1.0:
                _fail(f"--allocation must be strictly between 0 and 1, not {allocation}")
            price = _modelled_price(_market_config(config), price_change)
            market = Market(price.market, seed=seed)
            spec = make_spec(design, market, days=days, seed=seed, allocation=allocation)
        adaptive = None
        if spec.adaptive is not None:
            from lab.simulate_adaptive import run_adaptive_spec

            adaptive = run_adaptive_spec(spec, market)
            sim = adaptive.sim
        else:
            sim = run_spec(spec, market)
        write_panel(sim.panel, out)
        if events is not None:
            write_events(sim, events)
    except SpecError as exc:
        _fail(f"{spec_path}: {exc}" if spec_path is not None else str(exc))
    except OSError as exc:
        _fail(f"{exc.filename or out}: {exc.strerror or exc}")
    except PricelabError as exc:
        _fail(str(exc))
    n_units, n_periods = sim.matrices.treated.shape
    cell = "day" if spec.period == timedelta(days=1) else "period"
    trig = f", {len(sim.triggers)} products triggered" if spec.triggered is not None else ""
    if not sim.matrices.analysed.any():
        truth = "no cell was randomised, so there is no effect to estimate"
    elif sim.ratios is not None:
        truth = _ladder_truth(sim, cell)
    else:
        truth = (
            f"true effect {sim.truth:.3f} units per product-{cell} over the analysed cells, at a "
            f"treatment price {describe(market.cfg.price_change)}"
        )
    _say_assumption(price)
    ran = "" if adaptive is None else f"; {_adaptive_summary(adaptive)}"
    typer.echo(
        f"wrote {len(sim.panel)} product-{cell}s ({n_units} products x {n_periods} {cell}s of "
        f"{_iso(spec.period)}, design {spec.design}{trig}) to {out}; {truth}{ran}"
    )


def _adaptive_summary(run: AdaptiveSimulation) -> str:
    """What an adaptive ladder's simulation ran: the rule, the allocation it ended with, the
    regret against the fixed ladder's on the same market and days."""
    from lab.adaptive import LIVE_DELAY

    spec = run.sim.spec
    settings = spec.adaptive
    assert settings is not None
    names = [a.name for a in spec.arm_list()]
    last = run.probabilities[-1]
    updated = sum(d.source == "look" for d in run.decisions)
    share = ", ".join(f"{n} {p:.0%}" for n, p in zip(names, last, strict=True))
    ratio = run.regret / run.fixed_regret if run.fixed_regret > 0 else math.nan
    steered = f"0..t-{run.delay + 1}" if run.delay else "0..t-1"
    return (
        f"adaptive ({settings.rule} on {run.metric}, warmup {settings.warmup}, every "
        f"{settings.every}; period t steered by the look of periods {steered}"
        f"{', as live' if run.delay == LIVE_DELAY else ''}: {updated} periods set by the "
        f"rule): allocation by the end {share}; expected {run.metric} given up against always "
        f"the true best arm ({names[run.best]}) {run.regret:,.2f}, the fixed ladder's "
        f"{run.fixed_regret:,.2f} on the same market and days"
        + (f" (ratio {ratio:.2f})" if math.isfinite(ratio) else "")
        + "; the panel's probability: each cell's recorded probability of its own arm"
    )


def _ladder_truth(sim: SimulatedExperiment, cell: str) -> str:
    """A price ladder's truths: each arm's effect on units against control, and the
    profit-maximising listed ratio when the spec gives every product a unit cost."""
    spec = sim.spec
    control = spec.control_arm.name
    parts = []
    for a in spec.arm_list():
        if a.control:
            continue
        effect = sim.metric_truth("units", arm=a.name)
        rel = sim.metric_truth("units", relative=True, arm=a.name)
        parts.append(f"{a.name} (ratio {a.price_ratio:g}) {effect:+.3f} ({rel:+.1%})")
    text = (
        f"true effect on units per product-{cell} against {control} over the analysed cells: "
        + ", ".join(parts)
    )
    best = sim.optimal_ratio_truth()
    if math.isfinite(best):  # the spec gives every product a unit cost
        text += f"; true profit-maximising listed ratio {best:.3f}"
    return text


def _simulate_live(
    spec_path: Path | None,
    days: int | None,
    config: Path | None,
    seed: int,
    analysis_metrics: str,
    out: Path | None,
    price_change: float | None = None,
) -> None:
    if spec_path is None:
        _fail("--live needs --spec: the experiment to create and play")
    if out is not None:
        _fail("--live writes no panel; export the live one with pricelab panel export")
    live = _LIVE.get("live")
    if live is None:
        _fail("--live is not available in this build (no streams layer)")
    try:
        spec = load_spec_file(spec_path)
        price = _modelled_price(_market_config(config), price_change, spec)
        if ladder_ratios(spec) is not None:  # more than two arms: prices, else refused
            # refused here, before the stack is asked (the live player builds this market)
            ladder_market(price.market, f"the price ladder of {spec.id!r}")
        lines = live(
            spec,
            seed=seed,
            periods=days,
            market=price.market,
            analysis_metrics=analysis_metrics,
        )
    except SpecError as exc:
        _fail(f"{spec_path}: {exc}")
    except OSError as exc:
        _fail(f"{exc.filename or spec_path}: {exc.strerror or exc}")
    except PricelabError as exc:
        _fail(str(exc))
    _say_assumption(price)
    for line in lines:
        typer.echo(line)


def compare_designs(
    market: Annotated[
        Path | None, typer.Option(help="MarketConfig as YAML or JSON (default: the demo market).")
    ] = None,
    designs: Annotated[
        str,
        typer.Option(help="Comma-separated designs: " + ",".join(design_registry.names()) + "."),
    ] = ",".join(design_registry.names()),
    runs: Annotated[int, typer.Option(help="Simulated experiments per design.")] = 100,
    estimators: Annotated[
        list[str] | None,
        typer.Option(
            help="'design=a,b' (repeatable) or 'a,b' for every design, instead of the "
            "designs' own; 'name:se' picks a variance method, 'name@class' fits on the "
            "class x day panel."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the market family.")] = 0,
    days: Annotated[int, typer.Option(help="Length of every experiment in days.")] = 28,
    period: Annotated[
        str,
        typer.Option(
            help="Every experiment's period, ISO 8601, whole hours from PT1H to P1D (e.g. PT4H: "
            "six periods a day; the designs' examples scale to the number of periods)."
        ),
    ] = "P1D",
    products: Annotated[
        int | None, typer.Option(help="Override the market's number of products.")
    ] = None,
    jobs: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    out: Annotated[Path | None, typer.Option(help="Directory for CSVs and PNG plots.")] = None,
    price_change: Annotated[
        float | None, typer.Option("--price-change", help=_PRICE_CHANGE_HELP)
    ] = None,
    metrics: Annotated[
        str,
        typer.Option(
            help="Comma-separated metrics: units, revenue, profit (revenue - units x the "
            "market's unit cost) and price (the average price paid)."
        ),
    ] = "units",
    ladder: Annotated[
        str | None,
        typer.Option(
            "--ladder",
            help="A price ladder instead of one treatment price: the listed price ratios of the "
            "arms beside the list price (the control), e.g. 0.90,0.95,1.05 (2 to 7 of them), "
            "each arm an equal share; every design's example runs those arms, and each arm is "
            "reported against the list price with its simultaneous interval.",
        ),
    ] = None,
    adaptive: Annotated[
        bool,
        typer.Option(
            "--adaptive",
            help="With --ladder: play each design's example ladder fixed and adaptive (the "
            "spec's adaptive defaults, as the live path plays it) on the same markets, seeds "
            "and days, and report per design the profit given up against the true best price, "
            "the adaptive/fixed ratio and the chance the end's estimate picks the true best "
            "price (designs: random-days, optimal-switchback, cluster; by default those three).",
        ),
    ] = False,
) -> None:
    """Simulate RUNS experiments of each design on one market, each analysed with the
    design's own estimators; report bias, SE, RMSE, coverage, power and each design's SE
    reduction relative to time-bound, for each metric; with --ladder, each arm of a price
    ladder against the list price (the estimators the analysis worker fits per arm).
    Exits 2 instead when more than {share} of a design's and estimator's fits fail."""
    ratios = _ladder(ladder)
    if ratios is not None:
        try:
            listed = "--ladder lists the arms' prices"
            cfg_market = one_price_refused(
                _market_config(market, products), price_change, listed, "--ladder"
            )
        except PricelabError as exc:
            _fail(str(exc))
        price = ModelledPrice(cfg_market, None)
    else:
        price = _modelled_price(_market_config(market, products), price_change)
        cfg_market = price.market
    chosen = tuple(d.strip() for d in designs.split(",") if d.strip())
    wanted = tuple(m.strip() for m in metrics.split(",") if m.strip())
    unknown = [m for m in wanted if m not in ("units", "revenue", "profit", "price")]
    if unknown or not wanted:
        _fail(
            f"--metrics: unknown {unknown or metrics!r}; choose from units, revenue, profit, price"
        )
    from lab.compare import (
        CompareConfig,
        format_table,
        ladder_notes,
        parse_estimators,
        run_comparison,
        summarise,
        write_outputs,
    )

    if adaptive and designs == ",".join(design_registry.names()):  # not chosen: those that adapt
        from controller.adaptive import ADAPTIVE_DESIGNS

        chosen = tuple(d for d in design_registry.names() if d in ADAPTIVE_DESIGNS)
    cfg = CompareConfig(
        market=cfg_market,
        designs=chosen,
        runs=runs,
        seed=seed,
        days=days,
        period=_period(period),
        estimators=parse_estimators(estimators or [], chosen),
        jobs=jobs,
        metrics=wanted,
        ladder=ratios,
    )
    if adaptive:
        _compare_adaptive(cfg, out)
        return
    t0 = time.perf_counter()
    try:
        if seed < 0:
            _fail(f"--seed must be a non-negative whole number, not {seed}")
        rows = run_comparison(cfg)
        table = summarise(rows)
        notes = ladder_notes(cfg)
    except PricelabError as exc:
        _fail(str(exc))
    _say_assumption(price)
    for note in notes:
        typer.echo(f"note: {note}", err=True)
    typer.echo(format_table(table))
    typer.echo(f"{runs} runs x {len(chosen)} designs in {time.perf_counter() - t0:.1f}s")
    if out is not None:
        _write_out(out, lambda: write_outputs(rows, table, out))


def _compare_adaptive(cfg: CompareConfig, out: Path | None) -> None:
    """``compare-designs --ladder R --adaptive`` (lab.compare_adaptive)."""
    from lab.compare_adaptive import format_adaptive, run_adaptive_comparison, summarise_adaptive

    if cfg.ladder is None:
        _fail("--adaptive needs --ladder: only a price ladder's arms can adapt")
    if cfg.seed < 0:
        _fail(f"--seed must be a non-negative whole number, not {cfg.seed}")
    if cfg.estimators:
        _fail("--adaptive scores every ladder with the adaptive AIPW; --estimators does not apply")
    if cfg.metrics != ("units",):
        _fail("--adaptive scores the allocation's metric (profit); --metrics does not apply")
    t0 = time.perf_counter()
    try:
        rows = run_adaptive_comparison(cfg)
    except PricelabError as exc:
        _fail(str(exc))
    table = summarise_adaptive(rows)
    for design, floor in rows.groupby("design")["floor"].max().items():
        if floor > 0.05:  # the spec's default, refused on these products and this carryover
            typer.echo(
                f"note: {design}: the adaptive floor is {floor:g}, the least the spec's check "
                "takes for these products and this carryover (the default 0.05 leaves an arm "
                "fewer than one held draw a period; docs/adaptive.md)",
                err=True,
            )
    typer.echo(format_adaptive(table))
    typer.echo(
        f"{cfg.runs} runs x {len(cfg.designs)} designs x 2 ladders in {time.perf_counter() - t0:.1f}s"
    )
    if out is not None:

        def write() -> list[Path]:
            out.mkdir(parents=True, exist_ok=True)
            rows.to_csv(out / "adaptive-runs.csv", index=False)
            table.to_csv(out / "adaptive-summary.csv", index=False)
            return [out / "adaptive-runs.csv", out / "adaptive-summary.csv"]

        _write_out(out, write)


def _ladder(text: str | None) -> tuple[float, ...] | None:
    """``--ladder`` as price ratios, or one sentence and exit 2."""
    if text is None:
        return None
    try:
        ratios = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        _fail(
            f"--ladder must be price ratios separated by commas, such as 0.90,0.95,1.05, not {text!r}"
        )
    from lab.compare import check_ladder

    try:
        check_ladder(ratios)
    except PricelabError as exc:
        _fail(f"--ladder: {exc}")
    return ratios


def _period(text: str) -> timedelta:
    """An ISO 8601 period of whole hours from PT1H to P1D, or one sentence and exit 2."""
    from pydantic import TypeAdapter, ValidationError

    try:
        value = TypeAdapter(timedelta).validate_python(text)
    except ValidationError:
        _fail(f"--period must be an ISO 8601 duration such as PT4H or P1D, not {text!r}")
    if value > timedelta(days=1) or value < timedelta(hours=1) or value % timedelta(hours=1):
        _fail(f"--period must be whole hours from PT1H to P1D, not {text!r}")
    return value


def _iso(period: timedelta) -> str:
    """A period as ISO 8601 (P1D, PT4H), as specs write it."""
    if period % timedelta(days=1) == timedelta(0):
        return f"P{period // timedelta(days=1)}D"
    return f"PT{period // timedelta(hours=1)}H"


def _durations(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            value = int(part)
        except ValueError:
            _fail(f"--durations must be whole numbers of periods separated by commas, not {part!r}")
        out.append(value)
    if not out:
        _fail("--durations names no duration")
    return tuple(dict.fromkeys(out))


def plan_command(
    specs: Annotated[list[Path], typer.Argument(help="Experiment specs (YAML/JSON) to plan.")],
    history: Annotated[
        Path,
        typer.Option(
            "--history",
            help="Past outcomes: a long .csv, .parquet, DuckDB database (.duckdb) or "
            "PostgreSQL URL (with --table or --query).",
        ),
    ],
    unit: Annotated[str, typer.Option("--unit", help="Unit (product) column of the history.")],
    time_col: Annotated[str, typer.Option("--time", help="Period column of the history.")],
    outcome: Annotated[str, typer.Option("--outcome", help="Outcome column of the history.")],
    effect: Annotated[
        float | None,
        typer.Option("--effect", help="Effect to add to treated cells (outcome units)."),
    ] = None,
    relative: Annotated[
        bool,
        typer.Option(
            "--relative", help="--effect (or --arm-effects) is a share of each cell's outcome."
        ),
    ] = False,
    arm_effects: Annotated[
        str | None,
        typer.Option(
            "--arm-effects",
            help="A ladder's expected effect of each treatment arm, in the spec's order, e.g. "
            "0.03,-0.02,0.05: plans the effect given up against the best arm, fixed and (an "
            "adaptive spec) adaptive.",
        ),
    ] = None,
    durations: Annotated[
        str | None,
        typer.Option(
            "--durations", help="Durations in periods, e.g. 14,28,56 (default: the spec's)."
        ),
    ] = None,
    sims: Annotated[int, typer.Option("--sims", help="Simulations per spec and duration.")] = 200,
    seed: Annotated[int, typer.Option("--seed", help="Seed of starts and draws.")] = 0,
    carryover: Annotated[
        int,
        typer.Option("--carryover", help="Periods after a switch the effect still reaches."),
    ] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
    out: Annotated[
        Path | None, typer.Option("--out", help="Directory for CSVs, power curves and HTML.")
    ] = None,
    jobs: Annotated[
        int | None, typer.Option("--jobs", help="Worker processes (default: the CPUs).")
    ] = None,
    sep: SepOption = None,
    decimal: DecimalOption = ".",
    dayfirst: DayfirstOption = None,
    date_format: DateFormatOption = None,
    table: TableOption = None,
    query: QueryOption = None,
    missing: MissingOption = "zero",
    currency: CurrencyOption = None,
    rates: RatesOption = None,
    launch: LaunchOption = None,
) -> None:
    """Plan experiments on past outcomes: for each spec, duration and default estimator, the
    type-I error, the power at --effect, the MDE (80% power at 5%) and the mean SE, simulated
    with the live designs and estimators. It models an effect on the history's outcomes, not a
    price: a spec's price_ratio is not used (give the effect you expect at that price as
    --effect). With --arm-effects (a ladder, one effect per treatment arm) it plans the
    effect given up against always the best arm instead, the fixed ladder beside the adaptive
    one for an adaptive spec (docs/planning.md, "Adaptive ladders"). Exits 2 instead when more
    than {share} of one row's fits fail."""
    import json
    import sys

    from analysis.reader import load_table
    from analysis.reader_options import read_policy, table_source
    from lab.plan import (
        PlanConfig,
        as_json_rows,
        check_config,
        check_not_adaptive,
        check_period,
        default_jobs,
        format_table,
        read_history,
        run_plan,
        write_outputs,
    )
    from lab.plan_adaptive import arm_effects as arm_effects_of
    from lab.plan_adaptive import run_regret_plan

    cfg = PlanConfig(
        effect=effect,
        relative=relative,
        durations=_durations(durations),
        sims=sims,
        seed=seed,
        carryover=carryover,
        jobs=default_jobs() if jobs is None else jobs,
        arm_effects=_arm_effects(arm_effects),
    )
    loaded = []
    for path in specs:
        try:
            loaded.append((path.stem, load_spec_file(path)))
        except SpecError as exc:
            _fail(f"{path}: {exc}")
        except OSError as exc:
            _fail(f"cannot read spec {path}: {exc.strerror or exc}")
    names = [n for n, _ in loaded]
    loaded = [(n if names.count(n) == 1 else f"{n}#{i + 1}", s) for i, (n, s) in enumerate(loaded)]
    for name, spec in loaded:  # before the history is read
        try:
            if cfg.arm_effects is None:
                check_not_adaptive(name, spec)
            else:
                check_config(cfg)
                arm_effects_of(name, spec, cfg.arm_effects, relative)
        except PricelabError as exc:
            _fail(str(exc))
    currencies = {getattr(sp, "currency", None) for _, sp in loaded}  # a spec's currency:
    source = table_source(history, table, query, sep, decimal)
    try:
        policy = read_policy(missing, currency, rates, launch, dayfirst, date_format,
                             currencies.pop() if len(currencies) == 1 else None)  # fmt: skip
        table_in = load_table(source, (unit,))
    except OSError as exc:
        _fail(f"cannot read history {history}: {exc.strerror or exc}")
    except PricelabError as exc:  # a database URL said without its password
        _fail(f"history {source.shown}: {str(exc).splitlines()[0]}")
    except (ValueError, ImportError) as exc:
        _fail(f"cannot read history {source.shown}: {str(exc).splitlines()[0]}")
    tty = sys.stderr.isatty()

    def progress(done: int, total: int, label: str) -> None:
        if tty:
            sys.stderr.write(f"\r{done}/{total} simulations ({label})\x1b[K")
            sys.stderr.flush()

    t0 = time.perf_counter()
    try:
        hist = read_history(table_in, unit, time_col, outcome, policy=policy)
        for note in hist.notes:
            typer.echo(f"note: {note}", err=True)
        for _, spec in loaded:
            check_period(hist, spec, time_col)
        if cfg.arm_effects is not None:
            runs, table, notes = run_regret_plan(loaded, hist, cfg, progress)
        else:
            runs, table, notes = run_plan(loaded, hist, cfg, progress)
    except PricelabError as exc:
        if tty:
            sys.stderr.write("\n")
        _fail(str(exc))
    if tty:
        sys.stderr.write("\n")
    if cfg.arm_effects is not None:
        _regret_outputs(loaded, cfg, runs, table, notes, outcome, as_json, out, t0)
        return
    for note in _price_notes(loaded) + notes:
        typer.echo(f"note: {note}", err=True)
    if as_json:
        typer.echo(json.dumps(as_json_rows(table)))
    else:
        typer.echo(format_table(table, effect, relative))
        typer.echo(f"{len(runs)} fits in {time.perf_counter() - t0:.1f}s")
    if out is not None:
        _write_out(
            out,
            lambda: write_outputs(runs, table, out, effect=effect, relative=relative, notes=notes),
            err=as_json,
        )


def _arm_effects(text: str | None) -> tuple[float, ...] | None:
    """``--arm-effects``: numbers separated by commas."""
    if text is None:
        return None
    out = []
    for part in text.split(","):
        try:
            out.append(float(part.strip()))
        except ValueError:
            _fail(f"--arm-effects must be numbers separated by commas, not {part.strip()!r}")
    return tuple(out)


def _regret_outputs(
    specs: list[tuple[str, ExperimentSpec]],
    cfg: PlanConfig,
    runs: pd.DataFrame,
    table: pd.DataFrame,
    notes: list[str],
    outcome: str,
    as_json: bool,
    out: Path | None,
    t0: float,
) -> None:
    """What ``plan --arm-effects`` prints and writes (:mod:`lab.plan_adaptive`)."""
    import json

    from lab.plan_adaptive import (
        arm_effects,
        format_regret,
        price_note,
        regret_json_rows,
        write_regret,
    )

    assert cfg.arm_effects is not None
    for name, spec in specs:
        effects = arm_effects(name, spec, cfg.arm_effects, cfg.relative)
        typer.echo(f"note: {price_note(name, spec, effects, cfg.relative)}", err=True)
    for note in notes:
        typer.echo(f"note: {note}", err=True)
    if as_json:
        typer.echo(json.dumps(regret_json_rows(table)))
    else:
        typer.echo(format_regret(table, outcome, cfg.relative))
        typer.echo(f"{len(runs)} ladders played in {time.perf_counter() - t0:.1f}s")
    if out is not None:
        _write_out(out, lambda: write_regret(runs, table, out), err=as_json)


def _price_notes(specs: list[tuple[str, ExperimentSpec]]) -> list[str]:
    """plan models an effect on past outcomes, not a price: say so for every spec naming one
    (a ladder names one per arm)."""
    notes = []
    for name, spec in specs:
        arms = spec.arm_list()
        if spec.n_arms > 2 and any(a.price_ratio is not None for a in arms):
            listed = ", ".join(f"{a.name} {a.price_ratio:g}" for a in arms if not a.control)
            notes.append(
                f"{name}: plan does not model prices, so the arms' price_ratio ({listed}) are "
                "not used: each arm's MDE and power at --effect are for an effect of that arm "
                "on the history's outcomes, --effect added to every arm but the control"
            )
        elif spec.price_ratio is not None:
            notes.append(
                f"{name}: plan does not model prices, so price_ratio {spec.price_ratio:g} (a "
                f"treatment price {describe(spec.price_ratio - 1.0)}) is not used: the MDE and "
                "the power at --effect are for an effect on the history's outcomes, whatever "
                "price causes it"
            )
    return notes


for _command in (compare_designs, plan_command):  # the tolerated share of failed fits, once
    _command.__doc__ = (_command.__doc__ or "").replace("{share}", f"{MAX_FAILED_SHARE:.0%}")


#: ``simulate --live``, wired in by the CLI's composition root (``register(app, live=...)``):
#: playing a market into a running stack is the edge's work (streams), which lab must not import
_LIVE: dict[str, Callable[..., list[str]]] = {}


def register(app: typer.Typer, live: Callable[..., list[str]] | None = None) -> None:
    """Add simulate, compare-designs and plan; ``live(spec, seed=, periods=, market=,
    analysis_metrics=)`` plays ``simulate --live`` and returns its summary lines."""
    if live is not None:
        _LIVE["live"] = live
    app.command("simulate")(simulate_command)
    app.command("compare-designs")(compare_designs)
    app.command("plan")(plan_command)
