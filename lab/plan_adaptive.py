"""``pricelab plan --arm-effects``: a price ladder planned on the analyst's history by the
profit it gives up while it runs, adaptive beside fixed (issue #57).

The market model is the power plan's (:mod:`lab.plan`), one effect per arm: the user states
the effect each treatment arm is expected to have on the outcome (``--arm-effects``, in
outcome units per whole period, or shares of each cell's outcome with ``--relative``; the
control's is 0), and a cell's outcome under arm a is the history's outcome plus arm a's effect
(:func:`lab.plan.added_effect` on each arm's share of the effect, :func:`lab.plan.effect_pattern`,
which with ``--carryover M`` lingers after the cell's product leaves the arm). The true best arm
is the one with the largest stated effect.

Each simulation places the experiment at a start in the history with a seed
(:func:`lab.plan.placements`, the power plan's) and plays, on the same start and seed:

- **fixed**: the design's draw at the arms' allocations (:func:`controller.designs.
  design_matrices`, the flip's);
- **adaptive** (a spec with an ``adaptive:`` block): the live rule's loop
  (:func:`lab.simulate_adaptive.play_ladder`: before period t the flip's probabilities on the
  analysis worker's look of periods ``0 .. t - 2``, the design's draw with them), the look
  reading the outcomes the loop's own draws caused so far.

Both are scored the same way: the regret is the effect given up against every cell at the true
best arm (the sum over the cells the history has of the best arm's effect minus the effect the
cell got, in outcome units per whole period), also in % of the history's outcome over the same
cells; the end's estimate is the analysis worker's for an adaptive ladder (the AIPW sequences
of :func:`analysis.adaptive_live.fit_ladder`, through :func:`lab.compare_adaptive.score_ladder`,
the fixed ladder at its fixed probabilities): whether the largest estimated mean is a true best
arm, and the first period at which the simultaneous anytime-valid sequences leave one arm (the
sequences' decision, not the analysis worker's verdict, which also weighs guardrails and the
MDE's projection and is not replayed).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.errors import AnalysisError
from controller.designs import design_matrices
from controller.periods import n_periods
from controller.spec import ExperimentSpec
from lab.compare_adaptive import regret_ratio, score_ladder
from lab.errors import LabError
from lab.failed_fits import check_failed_fits
from lab.plan import (
    History,
    PlanConfig,
    PlannedSpec,
    SimSetting,
    added_effect,
    check_config,
    effect_pattern,
    placed,
    placements,
    plan_spec_at,
    window_share,
)
from lab.simulate_adaptive import cell_table, play_ladder, refusal

MODES = ("fixed", "adaptive")


@dataclass(frozen=True)
class RegretSetting:
    """What every simulation of one (spec, duration) shares: the planned spec, each arm's
    effect (spec arm order, the control's 0) and the power plan's setting (relative, carryover,
    the analysis window's share) that adds them."""

    planned: PlannedSpec
    effects: tuple[float, ...]
    plan: SimSetting

    @property
    def best(self) -> int:
        return int(np.argmax(self.effects))

    @property
    def modes(self) -> tuple[str, ...]:
        return MODES if self.planned.spec.adaptive is not None else ("fixed",)

    @property
    def metric(self) -> str:
        """The cell table's column the look and the estimate read the outcome from."""
        return str(self.planned.spec.adaptive_metric() or "units")


def arm_effects(
    name: str, spec: ExperimentSpec, effects: Sequence[float], relative: bool
) -> tuple[float, ...]:
    """Each arm's effect in the spec's arm order (the control's 0) from the treatment arms'
    ``effects``; LabError (one sentence) for a spec without an arms list, the wrong count, a
    design that cannot adapt, or a relative effect at or below -100%."""
    if not spec.arms:
        raise LabError(
            f"{name}: --arm-effects plans a price ladder, and experiment {spec.id!r} has no "
            "arms: list; plan it with --effect"
        )
    others = [a.name for a in spec.arm_list() if not a.control]
    if len(effects) != len(others):
        raise LabError(
            f"{name}: --arm-effects gives {len(effects)} effect(s) for {len(others)} treatment "
            f"arm(s) ({', '.join(others)}); give one per treatment arm, in that order"
        )
    if spec.adaptive is not None:
        why = refusal(spec)
        if why is not None:
            raise LabError(f"{name}: {why}, so plan cannot play it adaptive")
    if not all(math.isfinite(e) for e in effects):
        raise LabError(f"{name}: every --arm-effects value must be a finite number")
    if relative and min(effects) <= -1:
        raise LabError(
            f"{name}: a relative --arm-effects value must be above -1 (-100%), not {min(effects):g}"
        )
    it = iter(effects)
    return tuple(0.0 if a.control else float(next(it)) for a in spec.arm_list())


def gained(setting: RegretSetting, arm: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Each cell's added effect (scaled to the analysis window as the outcome ``Y``) when its
    product held the arms ``arm`` (units x periods so far): arm a's effect where a holds, and
    with ``--carryover`` its lingering share after the product left it (the power plan's
    :func:`lab.plan.added_effect` and :func:`lab.plan.effect_pattern`, arm by arm)."""
    out = np.zeros_like(Y)
    for a, e in enumerate(setting.effects):
        if e != 0.0:
            out += added_effect(
                setting.plan, e, effect_pattern(arm == a, setting.plan.carryover), Y
            )
    return out


def regret_once(
    setting: RegretSetting, history: np.ndarray, start: int, seed: int
) -> list[dict[str, Any]]:
    """One placement and seed: the fixed ladder and (an adaptive spec) the adaptive one, each
    with its regret, its cells per arm and its end's estimate (module docstring)."""
    p = setting.planned
    spec = p.spec.model_copy(update={"seed": int(seed)})
    T = n_periods(spec)
    Y, missing = placed(setting.plan, history, start)
    have = ~missing
    total = float(np.where(have, history[p.rows, start : start + T], 0.0).sum())
    share = setting.plan.window_share
    names = [a.name for a in spec.arm_list()]
    effects = np.asarray(setting.effects)
    best_gain = added_effect(setting.plan, float(effects.max()), np.ones_like(Y), Y)
    metric = setting.metric
    rows = []
    for mode in setting.modes:
        if mode == "fixed":
            m = design_matrices(spec, list(p.units))
            arm, blackout = np.asarray(m.arm, dtype=np.int64), np.asarray(m.blackout, bool)
            probs = np.tile(spec.allocations(), (T, 1))
        else:
            values = {metric: np.zeros_like(Y)}

            def sell(t: int, arm_sofar: np.ndarray, values: dict[str, np.ndarray] = values) -> None:
                cols = slice(0, t + 1)
                values[metric][:, t] = (
                    Y[:, t] + gained(setting, arm_sofar[:, cols], Y[:, cols])[:, t]
                )

            played = play_ladder(spec, p.units, T, values, sell, dark=missing)
            arm, blackout = played.arm, played.blackout
            probs = np.array([played.recorded[t] for t in range(T)], dtype=float)
        gain = gained(setting, arm, Y)
        regret = float((best_gain - gain)[have].sum() / share)
        row: dict[str, Any] = {
            "mode": mode, "start": start, "seed": seed, "regret": regret, "total": total,
            "regret_pct": 100.0 * regret / total if total else math.nan,
            "best": names[setting.best],
            "best_share": float(probs[:, setting.best].mean()),
        }  # fmt: skip
        for a, name in enumerate(names):
            row[f"cells_{name}"] = int((have & (arm == a)).sum())
        cells = cell_table(p.units, names, arm, blackout | missing, {metric: Y + gain}, T)
        try:
            score = score_ladder(spec, cells, probs, metric=metric)
        except (AnalysisError, ValueError) as exc:
            rows.append(row | {"error": f"{type(exc).__name__}: {exc}"[:300]})
            continue
        rec, out, first = score["recommended"], score["singled_out"], score["first_singled_out"]
        rows.append(
            row | {
                "recommended": names[rec],
                # a tie for the largest effect (an A/A ladder): any of them is a true best
                "picks_best": bool(effects[rec] == effects.max()),
                "singled_out": names[out] if out >= 0 else "",
                "decided": bool(math.isfinite(score["decided_period"])),
                # the arm the sequences first single out is a true best
                "decided_best": bool(first >= 0 and effects[first] == effects.max()),
                "decided_period": score["decided_period"],
                "error": "",
            }
        )  # fmt: skip
    return rows


@dataclass
class RegretJob:
    """All simulations of one spec at one duration."""

    name: str
    setting: RegretSetting
    starts: np.ndarray
    seeds: np.ndarray


def make_regret_jobs(
    specs: Sequence[tuple[str, ExperimentSpec]], history: History, cfg: PlanConfig
) -> tuple[list[RegretJob], list[str]]:
    """One job per spec and duration, validated up front; and the notes to show."""
    check_config(cfg)
    assert cfg.arm_effects is not None
    effects = {n: arm_effects(n, s, cfg.arm_effects, cfg.relative) for n, s in specs}
    jobs: list[RegretJob] = []
    notes: list[str] = []
    for name, spec in specs:
        for d in cfg.durations or (n_periods(spec),):
            planned = plan_spec_at(spec, history, d)
            if planned.note and f"{name}: {planned.note}" not in notes:
                notes.append(f"{name}: {planned.note}")
            base = SimSetting(
                planned, (), None, cfg.relative, cfg.carryover, window_share(planned.spec)
            )
            starts, seeds = placements(cfg, name, d, history)
            jobs.append(RegretJob(name, RegretSetting(planned, effects[name], base), starts, seeds))
    return jobs, notes


def price_note(name: str, spec: ExperimentSpec, effects: Sequence[float], relative: bool) -> str:
    """What the plan models for ``spec``: each arm's stated effect, not its price."""
    unit = "of the outcome" if relative else "outcome units a period"
    listed = ", ".join(
        f"{a.name} {e:+g}" for a, e in zip(spec.arm_list(), effects, strict=True) if not a.control
    )
    return (
        f"{name}: plan does not model prices: each arm's outcome is the history's plus its "
        f"stated effect ({listed} {unit}; the control 0), whatever its price_ratio"
    )


_WORKER_HISTORY: np.ndarray | None = None


def _init_worker(Y: np.ndarray) -> None:
    """Each worker process receives the history once (not with every task)."""
    from threadpoolctl import threadpool_limits

    global _WORKER_HISTORY
    _WORKER_HISTORY = Y
    threadpool_limits(1)


def _run_sims(job: RegretJob, Y: np.ndarray, idx: Sequence[int]) -> list[dict[str, Any]]:
    p = job.setting.planned
    base = {
        "spec": job.name,
        "design": p.spec.design,
        "duration": n_periods(p.spec),
        "n_units": len(p.units),
    }
    out = []
    for i in idx:
        for row in regret_once(job.setting, Y, int(job.starts[i]), int(job.seeds[i])):
            out.append(base | {"sim": i} | row)
    return out


def _run_task(args: tuple[RegretJob, list[int]]) -> list[dict[str, Any]]:
    job, idx = args
    assert _WORKER_HISTORY is not None
    return _run_sims(job, _WORKER_HISTORY, idx)


def run_regret_plan(
    specs: Sequence[tuple[str, ExperimentSpec]],
    history: History,
    cfg: PlanConfig,
    progress: Callable[[int, int, str], None] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Every simulation (one row per simulation and mode), the summary, and notes."""
    jobs, notes = make_regret_jobs(specs, history, cfg)
    chunk = 5
    tasks = [
        (job, list(range(s, min(s + chunk, len(job.starts)))))
        for job in jobs
        for s in range(0, len(job.starts), chunk)
    ]
    total = sum(len(j.starts) for j in jobs)
    rows: list[dict[str, Any]] = []
    done = 0
    if cfg.jobs <= 1:
        parts: Any = (_run_sims(job, history.Y, idx) for job, idx in tasks)
        pool = None
    else:
        pool = ProcessPoolExecutor(
            min(cfg.jobs, len(tasks)), initializer=_init_worker, initargs=(history.Y,)
        )
        parts = pool.map(_run_task, tasks)
    try:
        for (job, idx), part in zip(tasks, parts, strict=True):
            rows += part
            done += len(idx)
            if progress is not None:
                progress(done, total, f"{job.name} {job.setting.planned.spec.design}")
    except BaseException:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        raise
    if pool is not None:
        pool.shutdown(wait=True)
    sims = pd.DataFrame(rows)
    return sims, summarise_regret(sims), notes


def summarise_regret(sims: pd.DataFrame) -> pd.DataFrame:
    """Per spec, duration and mode: the mean regret (outcome units, and % of the history's
    outcome) with its Monte-Carlo SE, the adaptive/fixed ratio over the same simulations
    (delta-method SE), the share of simulations picking a true best arm, the share whose
    sequences leave one arm at some period of the duration, the share whose first such arm is
    a true best, the median period they first leave one, and the best arm's mean
    probability. TooManyFailedFits when too many estimates failed."""
    out = []
    keys = ["spec", "design", "duration"]
    for key, g in sims.groupby(keys, sort=False):
        fixed = g[g["mode"] == "fixed"].set_index("sim")
        by_mode = {"fixed": fixed}
        if (g["mode"] == "adaptive").any():
            by_mode["adaptive"] = g[g["mode"] == "adaptive"].set_index("sim").loc[fixed.index]
        for mode, m in by_mode.items():
            n = len(m)
            ok = m[m["error"] == ""]
            reg, pct = m["regret"].to_numpy(float), m["regret_pct"].to_numpy(float)
            ratio, ratio_se = (1.0, 0.0)
            if mode == "adaptive":
                ratio, ratio_se = regret_ratio(reg, fixed["regret"].to_numpy(float))
            picks = float(ok["picks_best"].mean()) if len(ok) else math.nan
            row = dict(zip(keys, key, strict=True)) | {
                "mode": mode, "n_units": int(m["n_units"].iloc[0]), "sims": n,
                "failed": n - len(ok),
                "regret": float(reg.mean()), "regret_se": _se(reg),
                "regret_pct": float(pct.mean()), "regret_pct_se": _se(pct),
                "regret_ratio": ratio, "regret_ratio_se": ratio_se,
                "picks_best": picks,
                "picks_best_se": math.sqrt(picks * (1 - picks) / len(ok)) if len(ok) else math.nan,
                "decided": float(ok["decided"].mean()) if len(ok) else math.nan,
                "decided_best": float(ok["decided_best"].mean()) if len(ok) else math.nan,
                "decided_period": float(ok["decided_period"].median()) if len(ok) else math.nan,
                "best_share": float(m["best_share"].mean()),
                "best": str(m["best"].iloc[0]),
                "first_error": str(m.loc[m["error"] != "", "error"].iloc[0])
                if len(ok) < n
                else "",
            }  # fmt: skip
            check_failed_fits(
                f"spec {row['spec']!r} ({row['design']}) {mode} at {row['duration']} periods",
                row["failed"], n, row["first_error"],
            )  # fmt: skip
            out.append(row)
    return pd.DataFrame(out)


def _se(x: np.ndarray) -> float:
    return float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else math.nan


REGRET_COLUMNS = (
    ("spec", "{}"), ("design", "{}"), ("duration", "{:d}"), ("mode", "{}"),
    ("n_units", "{:d}"), ("sims", "{:d}"), ("best", "{}"),
    ("regret", "{:.4g}"), ("regret_se", "{:.2g}"),
    ("regret_pct", "{:.3f}"), ("regret_pct_se", "{:.3f}"),
    ("regret_ratio", "{:.2f}"), ("regret_ratio_se", "{:.2f}"),
    ("picks_best", "{:.1%}"), ("picks_best_se", "{:.1%}"),
    ("decided", "{:.1%}"), ("decided_best", "{:.1%}"), ("decided_period", "{:.0f}"),
    ("best_share", "{:.1%}"),
)  # fmt: skip

#: the keys of each ``--json`` row of a regret plan
REGRET_JSON_KEYS = tuple(k for k, _ in REGRET_COLUMNS) + ("failed",)

_HEADS = {"regret_se": "(se)", "regret_pct_se": "(se)", "regret_ratio_se": "(se)",
          "picks_best_se": "(se)"}  # fmt: skip


def _shown(v: Any, fmt: str) -> str:
    if v is None or v == "" or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return str(int(v)) if fmt == "{:d}" else fmt.format(v)


def format_regret(table: pd.DataFrame, outcome: str, relative: bool) -> str:
    """The summary as a fixed-width text table, with its legend."""
    cells = [[_HEADS.get(n, n) for n, _ in REGRET_COLUMNS]]
    cells += [[_shown(r.get(n), f) for n, f in REGRET_COLUMNS] for r in table.to_dict("records")]
    width = [max(len(c[i]) for c in cells) for i in range(len(REGRET_COLUMNS))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, width, strict=True)) for row in cells]
    unit = "shares of each cell's outcome" if relative else "outcome units a period"
    lines.append(
        f"each arm's outcome: the history's {outcome} plus the arm's stated effect ({unit}); "
        "best: the arm with the largest stated effect; fixed: the design's draw at the arms' "
        "allocations; adaptive: the live rule (the look of periods 0..t-2 steering period t) "
        "on the same starts and seeds; regret: the effect given up against every cell at the "
        f"best arm, summed over the cells (in {outcome}), regret_pct: in % of the "
        "history's outcome over the same cells, regret_ratio: adaptive over fixed on the same "
        "starts; picks_best: the end's largest AIPW estimated mean is the best arm; decided: "
        "the simultaneous anytime-valid sequences leave one arm at some period of the "
        "duration, decided_best: the arm they first leave is the best, decided_period: the "
        "median period (1-based) they first leave one (the sequences' decision, not the "
        "analysis worker's verdict, which also weighs guardrails and is not replayed); "
        "best_share: the best arm's mean probability"
    )
    for r in table.to_dict("records"):
        if r["failed"]:
            lines.append(
                f"! {r['spec']} {r['mode']} at {r['duration']}: {r['failed']} of {r['sims']} "
                f"estimates failed, e.g. {r['first_error']}"
            )
    return "\n".join(lines)


def regret_json_rows(table: pd.DataFrame) -> list[dict[str, Any]]:
    """The summary as the JSON objects ``--json`` prints (exactly :data:`REGRET_JSON_KEYS`)."""
    out = []
    for r in table.to_dict("records"):
        doc = {}
        for k in REGRET_JSON_KEYS:
            v = r[k]
            if isinstance(v, float) and not math.isfinite(v):
                v = None
            elif hasattr(v, "item"):
                v = v.item()
            doc[k] = v
        out.append(doc)
    return out


def write_regret(sims: pd.DataFrame, table: pd.DataFrame, out_dir: Path) -> list[Path]:
    """regret-sims.csv (a row per simulation and mode, with its cells per arm) and
    regret-summary.csv under ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "regret-sims.csv", out / "regret-summary.csv"]
    sims.to_csv(paths[0], index=False)
    table.to_csv(paths[1], index=False)
    return paths


__all__ = [
    "MODES",
    "REGRET_JSON_KEYS",
    "RegretSetting",
    "arm_effects",
    "format_regret",
    "gained",
    "make_regret_jobs",
    "price_note",
    "regret_json_rows",
    "regret_once",
    "run_regret_plan",
    "summarise_regret",
    "write_regret",
]
