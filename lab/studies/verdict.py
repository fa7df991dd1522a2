"""The verdict's error rates and power, through the analysis worker's own path (issue #39).

    .venv/bin/python -m lab.studies.verdict [--runs 400] [--jobs 2] [--designs ...]

For each design, ``--runs`` experiments on fresh demand paths of the simulated market
(lab.market), each assigned by the controller's own draw (lab.simulate.run_spec) and analysed
look by look by :class:`analysis.worker.AnalysisWorker` itself: every look is one
``run_once`` on the cells of the periods complete by then, with the experiment as the live
panel source describes it (:func:`controller.panel_source.experiment_info`), one sequence-
tuning store across the looks (the mixture fixed at the first look, the first decisive verdict
kept, as Redis keeps them live) and the verdicts captured from the worker's verdict port. Only
the Kafka and Redis clients are left out.

Two worlds per design:

- **A/A**: no price change. The verdict should say ship or do not ship at some look in at most
  5% of experiments (the sequences' guarantee is 5% for the decision metric).
- **Effect**: the treatment raises the price by ``--rise`` (a 5% rise raises profit by about
  5% on the default market: units fall by about 9%, but each sells at a wider margin). The share that says *ship* by the
  planned end is compared with the power that the planner predicts for the verdict
  (``lab.plan``'s ``verdict_power``) on a history of the same market at the market's true
  relative profit effect: the planner's figure comes from its own simulations on that history,
  the realised share from the worker on fresh paths.

Writes docs/figures/verdict-study.csv (one row per experiment) and
docs/figures/verdict-study.json (the summary table that docs/decision.md shows).

``--no-difference`` runs the same two worlds for the verdict's *no difference* (issue #54),
by default on the random-days design alone (the one whose sequences can fit within the MDE
at this size), and writes docs/figures/verdict-no-difference.{csv,json} and its own section
of docs/decision.md:

- **A/A**: the share of experiments that end *no difference* (a power, reported by look),
  and the false ship or do not ship, beside the rule without *no difference* on the same
  looks (it can only end a path earlier, never add a ship);
- **Effect**: the true profit change (5.3%) is at least the spec's ``mde_pct`` (5%): the
  share wrongly called *no difference* (target: at most 5%).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.worker import AnalysisWorker, InMemorySequenceTuning
from controller.clock import ManualClock
from controller.panel_source import experiment_info
from controller.periods import n_periods
from core.ports import ExperimentInfo
from lab.compare import design_names, make_spec, market_classes
from lab.config import MarketConfig
from lab.errors import LabError
from lab.market import Market
from lab.plan import PlanConfig, read_history, run_plan
from lab.simulate import SimulatedExperiment, run_spec

ROOT = Path(__file__).resolve().parents[2]
FIGURES = ROOT / "docs" / "figures"
#: the columns of a cell table the live panel source hands the worker
_CELLS = ("product", "period", "units", "revenue", "profit", "treated", "probability", "blackout")


@dataclass(frozen=True)
class StudyConfig:
    products: int = 100
    days: int = 28
    runs: int = 400
    seed: int = 0
    rise: float = 0.05
    mde_pct: float = 5.0


class _Source:
    def __init__(self, info: ExperimentInfo) -> None:
        self.info = info
        self.cells = pd.DataFrame()

    async def experiments(self) -> list[ExperimentInfo]:
        return [self.info]

    async def panel(self, exp_id: str, as_of: datetime) -> pd.DataFrame:
        return self.cells


class _Sink:
    def __init__(self) -> None:
        self.verdicts: list[dict[str, Any]] = []

    async def publish(self, *args: Any) -> None:
        return None

    async def publish_verdict(self, experiment: str, verdict: Any, as_of: datetime) -> None:
        self.verdicts.append(dict(verdict))


def run_seed(seed: int, run: int) -> int:
    """A run's demand path and design seed (distinct per run, reproducible)."""
    return (seed * 1_000_003 + 7919 * (run + 1)) % (2**31 - 1)


def market(cfg: StudyConfig, price_change: float, run: int) -> Market:
    """The default market on ``cfg.products`` products, the treatment changing the price by
    ``price_change`` and nothing else (no lift beyond the price's: the effect modifiers off),
    so that with no price change there is no effect at all."""
    return Market(
        MarketConfig(n_products=cfg.products, price_change=price_change, effect_modifiers={}),
        seed=cfg.seed,
        demand_seed=run_seed(cfg.seed, run),
    )


async def _looks(
    info: ExperimentInfo, cells: pd.DataFrame, periods: int, first: int | None = None
) -> list[dict[str, Any]]:
    source, sink = _Source(info), _Sink()
    worker = AnalysisWorker(
        source,
        sink,
        ManualClock(datetime(2026, 1, 1, tzinfo=UTC)),
        verdicts=sink,
        tuning=InMemorySequenceTuning(),
    )
    for n in range(first or worker.min_periods, periods + 1):
        source.cells = cells[cells["period"] < n]
        await worker.run_once()
    return sink.verdicts


def experiment(
    cfg: StudyConfig, design: str, change: float, run: int
) -> tuple[SimulatedExperiment, pd.DataFrame, ExperimentInfo]:
    """Run ``run`` of ``design`` with the price changed by ``change``: the simulated
    experiment, the cell table the live panel source would hand the worker, and the
    experiment as that source describes it."""
    m = market(cfg, change, run)
    classes = market_classes(m) if design == "cluster" else None
    spec = make_spec(design, m, days=cfg.days, seed=run_seed(cfg.seed + 1, run), classes=classes)
    spec = spec.model_copy(update={"mde_pct": cfg.mde_pct, "price_ratio": 1.0 + change})
    sim = run_spec(spec, m)
    cells = sim.panel[[c for c in (*_CELLS, "class") if c in sim.panel.columns]]
    return sim, cells, experiment_info(spec, "running", sim.triggers)


def run_one(cfg: StudyConfig, design: str, world: str, run: int) -> dict[str, Any]:
    """One experiment of ``design`` in ``world`` (``aa`` or ``effect``), analysed look by look
    by the worker; its verdicts summarised in one row."""
    sim, cells, info = experiment(cfg, design, 0.0 if world == "aa" else cfg.rise, run)
    spec = sim.spec
    t0 = time.perf_counter()
    verdicts = asyncio.run(_looks(info, cells, n_periods(spec)))
    words = [v["verdict"] for v in verdicts]
    first = next((v for v in verdicts if v["verdict"] != "keep_running"), None)
    last = verdicts[-1] if verdicts else None
    # the rule before *no difference* on the same looks (no guardrails here): the first look
    # whose sequence excludes 0 decides (each look's message carries its own sequence)
    before = next((v for v in verdicts if _excludes_zero(v.get("cs_low"), v.get("cs_high"))), None)
    return {
        "design": design,
        "world": world,
        "run": run,
        "looks": len(verdicts),
        "estimator": last["estimator"] if last else "",
        "ever_ship": "ship" in words,
        "ever_do_not_ship": "do_not_ship" in words,
        "ever_no_difference": "no_difference" in words,
        "first": first["verdict"] if first else "",
        "decided_at": first["n_periods"] if first else math.nan,
        "without_no_difference": (
            ("ship" if (before["cs_low"] or 0.0) > 0 else "do_not_ship") if before else ""
        ),
        "final": last["verdict"] if last else "",
        "final_more_days": (last or {}).get("more_days"),
        "truth_relative": sim.metric_truth("profit", relative=True),
        "seconds": time.perf_counter() - t0,
    }


def _excludes_zero(low: float | None, high: float | None) -> bool:
    return (low is not None and low > 0) or (high is not None and high < 0)


def _chunk(args: tuple[StudyConfig, str, str, list[int]]) -> list[dict[str, Any]]:
    from threadpoolctl import threadpool_limits

    cfg, design, world, runs = args
    with threadpool_limits(1):
        return [run_one(cfg, design, world, r) for r in runs]


def run_study(
    cfg: StudyConfig, designs: Sequence[str], worlds: Sequence[str], jobs: int
) -> pd.DataFrame:
    tasks = [
        (cfg, d, w, list(range(start, min(start + 10, cfg.runs))))
        for d in designs
        for w in worlds
        for start in range(0, cfg.runs, 10)
    ]
    if jobs <= 1:
        rows = [row for t in tasks for row in _chunk(t)]
    else:
        with ProcessPoolExecutor(jobs) as pool:
            rows = [row for chunk in pool.map(_chunk, tasks) for row in chunk]
    return pd.DataFrame(rows)


def planned_power(
    cfg: StudyConfig, design: str, truth_relative: float, sims: int, jobs: int
) -> dict[str, Any]:
    """What ``pricelab plan`` predicts for ``design``'s verdict at the market's true relative
    profit effect: its estimator, the verdict's power at any look and at the end alone, the
    verdict's MDE (relative), or a note saying why the design cannot be planned. The history is the
    same market's profit, with no treatment, over three times the experiment's days, on a
    demand path no run of the study uses; the plan's simulations place the experiment inside
    it and add the effect to each treated cell's own profit (``--relative``)."""
    m = market(cfg, 0.0, run=1_000_000)
    history_spec = make_spec("random-days", m, days=3 * cfg.days, seed=1)
    hist = run_spec(history_spec, m).panel
    history = read_history(hist, "product", "period", "profit")
    classes = market_classes(m) if design == "cluster" else None
    spec = make_spec(design, m, days=cfg.days, seed=run_seed(cfg.seed + 1, 0), classes=classes)
    try:
        sims_of, table, _ = run_plan(
            [(design, spec)],
            history,
            PlanConfig(
                effect=truth_relative,
                relative=True,
                durations=(n_periods(spec),),
                sims=sims,
                seed=cfg.seed,
                jobs=jobs,
            ),
        )
    except LabError as exc:
        return {"plan_note": str(exc)}
    first = table.iloc[0]  # the design's primary estimator: the one the worker decides on
    at_end = sims_of[sims_of["estimator"] == first["estimator"]]["verdict1"]
    return {
        "plan_sims": sims,
        "plan_estimator": str(first["estimator"]),
        "plan_verdict_power": float(first["verdict_power"]),
        "plan_verdict_power_end_only": float(at_end.mean()),
        "plan_verdict_mde": float(first["verdict_mde"]),
        "plan_note": "",
    }


def end_only_ship(cfg: StudyConfig, design: str, run: int) -> bool:
    """Whether the worker's verdict is *ship* when it looks once, at the planned end (its
    sequence then tuned to the end's own SE): the planner's end-alone criterion, on the
    worker's path, for the same experiment as ``run_one(cfg, design, "effect", run)``."""
    sim, cells, info = experiment(cfg, design, cfg.rise, run)
    periods = n_periods(sim.spec)
    verdicts = asyncio.run(_looks(info, cells, periods, first=periods))
    return bool(verdicts) and verdicts[-1]["verdict"] == "ship"


def mc_se(p: float, n: int) -> float:
    return math.sqrt(max(p * (1 - p), 1e-12) / n) if n else math.nan


def summarise(rows: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for (design, world), g in rows.groupby(["design", "world"], sort=False):
        n = len(g)
        decided = g["ever_ship"] | g["ever_do_not_ship"]
        row: dict[str, Any] = {
            "design": design,
            "world": world,
            "runs": n,
            "estimator": g["estimator"].mode().iloc[0] if n else "",
            "ever_decided": float(decided.mean()),
            "ever_decided_mc_se": mc_se(float(decided.mean()), n),
            "ship": float(g["ever_ship"].mean()),
            "ship_mc_se": mc_se(float(g["ever_ship"].mean()), n),
            "do_not_ship": float(g["ever_do_not_ship"].mean()),
            "median_decided_at": float(np.nanmedian(g["decided_at"])) if decided.any() else None,
            "truth_relative": float(g["truth_relative"].mean()),
        }
        out.append(row)
    return out


RENDER_BEGIN = "<!-- verdict-study:begin -->"
RENDER_END = "<!-- verdict-study:end -->"


def _pct(x: float | None, se: float | None = None) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    return f"{100 * x:.1f}%" + ("" if se is None else f" +- {100 * se:.1f}")


def render(summary: dict[str, Any]) -> str:
    """The table of docs/decision.md from the study's saved summary."""
    cfg = summary["config"]
    rows = summary["rows"]
    aa = {r["design"]: r for r in rows if r["world"] == "aa"}
    eff = {r["design"]: r for r in rows if r["world"] == "effect"}

    def gap(a: float | None, a_se: float | None, b: float | None, b_se: float | None) -> str:
        if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
            return "-"
        se = math.hypot(a_se or 0.0, b_se or 0.0)
        return f"{(a - b) / se:+.1f}" if se > 0 else "-"

    lines = [
        f"{cfg['runs']} experiments per design and world, {cfg['products']} products over "
        f"{cfg['days']} days on the default market; the effect world raises the price by "
        f"{100 * cfg['rise']:g}%; {summary['minutes']:.0f} minutes. **A/A**: the share of "
        "experiments whose verdict ever said ship or do not ship (target: at most 5%). "
        "**Effect**: the share that said ship by the planned end, beside the verdict power "
        "`pricelab plan` predicts on a history of the same market at the true effect; then the "
        "same at the end alone (the worker looking once, at the end). Shares +- one Monte Carlo "
        "SE; gaps in combined MC SEs.",
        "",
        "| design | estimator | A/A: ever decided | true profit change | ships by the end "
        "| plan's verdict power | gap | at the end alone: worker | plan | gap |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for design in aa:
        a, e = aa[design], eff.get(design, {})
        n = cfg["runs"]
        planned, p_se = e.get("plan_verdict_power"), e.get("plan_mc_se")
        end_plan = e.get("plan_verdict_power_end_only")
        plan_sims = int(e.get("plan_sims") or n)
        end_plan_se = mc_se(end_plan, plan_sims) if end_plan is not None else None
        end_w, end_w_se = e.get("worker_ship_end_only"), e.get("worker_ship_end_only_mc_se")
        lines.append(
            f"| {design} | {a['estimator']} | {_pct(a['ever_decided'], a['ever_decided_mc_se'])}"
            f" | {_pct(e.get('truth_relative'))} | {_pct(e.get('ship'), e.get('ship_mc_se'))}"
            f" | {_pct(planned, p_se) if planned is not None else '-'}"
            f" | {gap(e.get('ship'), e.get('ship_mc_se'), planned, p_se)}"
            f" | {_pct(end_w, end_w_se) if end_w is not None else '-'}"
            f" | {_pct(end_plan, end_plan_se) if end_plan is not None else '-'}"
            f" | {gap(end_w, end_w_se, end_plan, end_plan_se)} |"
        )
    worst_aa = max(aa.values(), key=lambda r: r["ever_decided"])
    lines += [
        "",
        f"- A/A: at most {_pct(worst_aa['ever_decided'], worst_aa['ever_decided_mc_se'])} "
        f"({worst_aa['design']}) of experiments ever decided, against the 5% the sequences "
        "allow: they are conservative, as a mixture boundary that holds at every look is.",
    ]
    off = []
    for design, e in eff.items():
        planned, p_se = e.get("plan_verdict_power"), e.get("plan_mc_se")
        if planned is None or not math.isfinite(planned):
            continue
        g = (e["ship"] - planned) / math.hypot(e["ship_mc_se"], p_se or 0.0)
        if abs(g) > 2:
            off.append(f"{design} ({g:+.1f} MC SE)")
    lines.append(
        "- Effect: the plan's verdict power matches the share that shipped within 2 MC SE for "
        "every design it can plan"
        if not off
        else "- Effect: the plan's verdict power matches the share that shipped within 2 MC SE "
        f"except for {', '.join(off)}"
    )
    short = []
    for design, e in eff.items():
        end_plan = e.get("plan_verdict_power_end_only")
        if end_plan is None or not math.isfinite(end_plan):
            continue
        se = math.hypot(e["ship_mc_se"], mc_se(end_plan, int(e.get("plan_sims") or cfg["runs"])))
        if (e["ship"] - end_plan) / se > 2:
            short.append(f"{design} ({(e['ship'] - end_plan) / se:+.1f})")
    if short:
        lines.append(
            "- The plan's power at the end alone falls short of the share that shipped by more "
            f"than 2 MC SE for {', '.join(short)}: the looks before the end add power."
        )
    mdes = [
        f"{d} {_pct(e['plan_verdict_mde'])}"
        for d, e in eff.items()
        if e.get("plan_verdict_mde") is not None and math.isfinite(e["plan_verdict_mde"])
    ]
    if mdes:
        lines.append(f"- The plan's verdict MDE (relative profit change): {', '.join(mdes)}.")
    notes = [f"- {e['design']}: {e['plan_note']}" for e in eff.values() if e.get("plan_note")]
    return "\n".join(lines + notes)


def write_render(summary: dict[str, Any], page: Path) -> None:
    write_block(render(summary), page, RENDER_BEGIN, RENDER_END)


ND_BEGIN = "<!-- verdict-no-difference:begin -->"
ND_END = "<!-- verdict-no-difference:end -->"
#: the designs the *no difference* study runs unless told (``--designs``)
ND_DESIGNS = ("random-days",)


def summarise_no_difference(rows: pd.DataFrame, days: int) -> list[dict[str, Any]]:
    """Per design and world: how the experiments ended (their first decisive verdict, or
    keep running to the planned end), each share with its Monte Carlo SE; the ends of the
    rule without *no difference* on the same looks; and the share ended *no difference* by
    each week's look."""
    looks = sorted({*range(7, days + 1, 7), days})
    out = []
    for (design, world), g in rows.groupby(["design", "world"], sort=False):
        n = len(g)
        first = g["first"].fillna("").astype(str)
        without = g["without_no_difference"].fillna("").astype(str)
        row: dict[str, Any] = {
            "design": design,
            "world": world,
            "runs": n,
            "estimator": g["estimator"].mode().iloc[0] if n else "",
            "truth_relative": float(g["truth_relative"].mean()),
        }
        for word in ("no_difference", "ship", "do_not_ship"):
            share = float((first == word).mean())
            row[word], row[f"{word}_mc_se"] = share, mc_se(share, n)
            if word != "no_difference":
                old = float((without == word).mean())
                row[f"{word}_without"], row[f"{word}_without_mc_se"] = old, mc_se(old, n)
        row["keep_running"] = float((first == "").mean())
        ended = (first == "no_difference").to_numpy()
        at = g["decided_at"].to_numpy(dtype=float)
        row["no_difference_by_look"] = {str(t): float(np.mean(ended & (at <= t))) for t in looks}
        out.append(row)
    return out


def render_no_difference(summary: dict[str, Any]) -> str:
    """The *no difference* section of docs/decision.md from its saved summary."""
    cfg, rows = summary["config"], summary["rows"]
    n = cfg["runs"]
    lines = [
        f"{n} experiments per design and world, {cfg['products']} products over "
        f"{cfg['days']} days on the default market, the spec's mde_pct {cfg['mde_pct']:g}%; "
        f"the effect world raises the price by {100 * cfg['rise']:g}%; "
        f"{summary['minutes']:.0f} minutes. Each experiment is analysed look by look by the "
        "analysis worker, its first decisive verdict final. How the experiments ended (+- one "
        "Monte Carlo SE), and how the rule without *no difference* ends the same looks.",
        "",
        "| design | estimator | world | true profit change | no difference | ship | do not ship "
        "| kept running | without no difference: ship | do not ship |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['design']} | {r['estimator']} | {r['world']} | {_pct(r['truth_relative'])} "
            f"| {_pct(r['no_difference'], r['no_difference_mc_se'])} "
            f"| {_pct(r['ship'], r['ship_mc_se'])} "
            f"| {_pct(r['do_not_ship'], r['do_not_ship_mc_se'])} | {_pct(r['keep_running'])} "
            f"| {_pct(r['ship_without'], r['ship_without_mc_se'])} "
            f"| {_pct(r['do_not_ship_without'], r['do_not_ship_without_mc_se'])} |"
        )
    aa = [r for r in rows if r["world"] == "aa"]
    if aa:
        looks = list(aa[0]["no_difference_by_look"])
        lines += [
            "",
            "A/A: the share of experiments ended *no difference* by the look after n periods "
            "(its power):",
            "",
            "| design | " + " | ".join(f"after {t}" for t in looks) + " |",
            "|---|" + "---|" * len(looks),
        ]
        for r in aa:
            cells = " | ".join(_pct(r["no_difference_by_look"][t]) for t in looks)
            lines.append(f"| {r['design']} | {cells} |")
    lines.append("")
    for r in rows:
        if r["world"] == "effect":
            ok = r["no_difference"] <= 0.05
            called = (
                f"none of {r['runs']} experiments was called no difference (95% upper bound "
                f"{_pct(3 / r['runs'])}, the rule of three)"
                if r["no_difference"] == 0
                else f"{_pct(r['no_difference'], r['no_difference_mc_se'])} of experiments were "
                "called no difference"
            )
            lines.append(
                f"- {r['design']}, effect world: the true profit change "
                f"({_pct(r['truth_relative'])}) is at least the MDE ({cfg['mde_pct']:g}%); "
                f"{called}, {'within' if ok else 'above'} the 5% allowed."
            )
        else:
            same = r["ship"] <= r["ship_without"] and r["do_not_ship"] <= r["do_not_ship_without"]
            lines.append(
                f"- {r['design']}, A/A: false ship {_pct(r['ship'])} and do not ship "
                f"{_pct(r['do_not_ship'])}, against {_pct(r['ship_without'])} and "
                f"{_pct(r['do_not_ship_without'])} by the rule without no difference on the same "
                "looks" + (": not raised." if same else ": RAISED.")
            )
    return "\n".join(lines)


def write_block(text: str, page: Path, begin: str, end: str) -> None:
    page_text = page.read_text()
    i, j = page_text.index(begin) + len(begin), page_text.index(end)
    page.write_text(page_text[:i] + "\n" + text + "\n" + page_text[j:])


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m lab.studies.verdict", description=__doc__)
    ap.add_argument("--runs", type=int, default=StudyConfig.runs)
    ap.add_argument("--products", type=int, default=StudyConfig.products)
    ap.add_argument("--days", type=int, default=StudyConfig.days)
    ap.add_argument("--rise", type=float, default=StudyConfig.rise)
    ap.add_argument("--plan-sims", type=int, default=400)
    ap.add_argument("--designs", nargs="*", default=None, help="Default: every design.")
    ap.add_argument("--mde-pct", type=float, default=StudyConfig.mde_pct)
    ap.add_argument(
        "--no-difference",
        action="store_true",
        help="The verdict's no difference: its A/A share by look, the effect world's share "
        "wrongly called no difference, the error rates beside the rule without it (default "
        f"designs: {', '.join(ND_DESIGNS)}).",
    )
    ap.add_argument("--worlds", nargs="*", default=["aa", "effect"])
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--out", type=Path, default=FIGURES)
    ap.add_argument("--page", type=Path, default=ROOT / "docs" / "decision.md")
    ap.add_argument("--render-only", action="store_true", help="Render the saved summary.")
    ap.add_argument(
        "--plan-only",
        action="store_true",
        help="Keep the saved experiments (verdict-study.csv) and redo the planner's side and "
        "the end-alone check.",
    )
    args = ap.parse_args(argv)
    if args.no_difference:
        _no_difference(args)
        return
    designs = args.designs or list(design_names())
    saved = args.out / "verdict-study.json"
    if args.render_only:
        write_render(json.loads(saved.read_text()), args.page)
        return
    cfg = _config(args)
    t0 = time.perf_counter()
    minutes = 0.0
    if args.plan_only:
        before = json.loads(saved.read_text())
        cfg = StudyConfig(**before["config"])
        minutes = float(before["minutes"])
        rows = pd.read_csv(args.out / "verdict-study.csv")
    else:
        rows = run_study(cfg, designs, args.worlds, args.jobs)
        args.out.mkdir(parents=True, exist_ok=True)
        rows.to_csv(args.out / "verdict-study.csv", index=False)
    table = summarise(rows)
    for row in table:
        if row["world"] != "effect":
            continue
        row |= planned_power(cfg, row["design"], row["truth_relative"], args.plan_sims, args.jobs)
        power = row.get("plan_verdict_power")
        row["plan_mc_se"] = (
            mc_se(power, args.plan_sims) if power is not None and math.isfinite(power) else None
        )
        ends = [end_only_ship(cfg, row["design"], r) for r in range(cfg.runs)]
        row["worker_ship_end_only"] = float(np.mean(ends))
        row["worker_ship_end_only_mc_se"] = mc_se(float(np.mean(ends)), cfg.runs)
    summary = {
        "config": cfg.__dict__,
        "minutes": minutes + (time.perf_counter() - t0) / 60,
        "rows": table,
    }
    saved.write_text(json.dumps(summary, indent=2) + "\n")
    write_render(summary, args.page)
    for r in table:
        print(json.dumps(r))


def _config(args: argparse.Namespace) -> StudyConfig:
    return replace(
        StudyConfig(),
        runs=args.runs,
        products=args.products,
        days=args.days,
        rise=args.rise,
        mde_pct=args.mde_pct,
    )


def _no_difference(args: argparse.Namespace) -> None:
    saved = args.out / "verdict-no-difference.json"
    if not args.render_only:
        cfg = _config(args)
        t0 = time.perf_counter()
        rows = run_study(cfg, args.designs or list(ND_DESIGNS), args.worlds, args.jobs)
        args.out.mkdir(parents=True, exist_ok=True)
        rows.to_csv(args.out / "verdict-no-difference.csv", index=False)
        table = summarise_no_difference(rows, cfg.days)
        summary = {
            "config": cfg.__dict__,
            "minutes": (time.perf_counter() - t0) / 60,
            "rows": table,
        }
        saved.write_text(json.dumps(summary, indent=2) + "\n")
        for r in table:
            print(json.dumps(r))
    write_block(render_no_difference(json.loads(saved.read_text())), args.page, ND_BEGIN, ND_END)


if __name__ == "__main__":
    main()
