"""``pricelab simulate``: write a simulated long panel with ground truth (and event files).

The assignment designs here are deliberately minimal and local (a Bernoulli coin per
product-day, or half the products from a start day); the real designs live in
controller/designs.py. Register with ``analysis.simulation.cli.register(app)``.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import typer

from analysis.simulation.config import MarketConfig
from analysis.simulation.market import SEED_TAG, Market

# Stream keys for the CLI's own generators (assignment, sale and competitor event timing).
_S_DESIGN, _S_SALES, _S_COMPETITORS = 100, 101, 102


class SimDesign(StrEnum):
    random_days = "random-days"
    time_bound = "time-bound"
    none = "none"


def assignment(
    design: SimDesign | str,
    n_products: int,
    days: int,
    seed: int,
    probability: float = 0.5,
    treat_from: int | None = None,
) -> np.ndarray:
    """A (n_products, days) bool assignment for the local minimal designs.

    random-days: an independent Bernoulli(probability) coin per product-day. time-bound: a
    random half of the products (rounded down) treated from day ``treat_from`` (default
    ``days // 2``) to the end. none: all control.
    """
    design = SimDesign(design)
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"probability must lie in [0, 1]; got {probability}")
    rng = np.random.default_rng([SEED_TAG, seed, _S_DESIGN])
    if design is SimDesign.random_days:
        return rng.random((n_products, days)) < probability
    W = np.zeros((n_products, days), dtype=bool)
    if design is SimDesign.time_bound:
        start = days // 2 if treat_from is None else treat_from
        if not 0 <= start < days:
            raise ValueError(f"treat_from must lie in [0, days={days}); got {start}")
        treated = rng.permutation(n_products)[: n_products // 2]
        W[treated, start:] = True
    return W


def assignment_probability(
    design: SimDesign | str,
    n_products: int,
    days: int,
    probability: float = 0.5,
    treat_from: int | None = None,
) -> np.ndarray:
    """Design probability that each product-day is treated, matching :func:`assignment`.

    time-bound: 0.5 from the start day on (a random half of products; n//2 of n when n is odd),
    0 before it.
    """
    design = SimDesign(design)
    P = np.zeros((n_products, days))
    if design is SimDesign.random_days:
        P[:] = probability
    elif design is SimDesign.time_bound:
        start = days // 2 if treat_from is None else treat_from
        P[:, start:] = (n_products // 2) / n_products
    return P


def _jsonable(event: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in event.items()}


def simulate(
    cfg: MarketConfig,
    days: int,
    design: SimDesign | str,
    seed: int,
    out: Path,
    events_dir: Path | None = None,
    probability: float = 0.5,
    treat_from: int | None = None,
) -> pd.DataFrame:
    """Simulate ``days`` days, write the panel to ``out`` (.csv or .parquet) and return it.

    With ``events_dir``, also write ``sales.jsonl`` and ``competitor_prices.jsonl`` there (one
    JSON object per line, timestamps in ISO 8601 with offset) and ``undercuts.csv`` (ground truth
    of the undercut episodes).
    """
    if days < 1:
        raise ValueError(f"days must be at least 1; got {days}")
    suffix = out.suffix.lower()
    if suffix not in {".csv", ".parquet"}:
        raise ValueError(f"--out must end in .csv or .parquet; got {out.name!r}")
    market = Market(cfg, seed=seed)
    W = assignment(design, cfg.n_products, days, seed, probability, treat_from)
    outcomes = market.run(W)
    panel = market.panel_from_outcomes(outcomes)
    P = assignment_probability(design, cfg.n_products, days, probability, treat_from)
    panel.insert(panel.columns.get_loc("treated") + 1, "probability", P.ravel())
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        panel.to_csv(out, index=False)
    else:
        try:
            panel.to_parquet(out, index=False)
        except ImportError as exc:
            raise ValueError(
                "writing Parquet needs pyarrow (pip install 'pricelab[dev]'); or use .csv"
            ) from exc
    if events_dir is not None:
        events_dir.mkdir(parents=True, exist_ok=True)
        undercuts = []
        with (
            (events_dir / "sales.jsonl").open("w") as sales,
            (events_dir / "competitor_prices.jsonl").open("w") as comps,
        ):
            for o in outcomes:
                start, end = market.day_window(o.day)
                rng_s = np.random.default_rng([SEED_TAG, seed, _S_SALES, o.day])
                rng_c = np.random.default_rng([SEED_TAG, seed, _S_COMPETITORS, o.day])
                for e in market.sale_events(o.day, start, end, o, rng_s):
                    sales.write(json.dumps(_jsonable(e)) + "\n")
                for e in market.competitor_events(o.day, start, end, rng_c):
                    comps.write(json.dumps(_jsonable(e)) + "\n")
                undercuts.append(market.undercut_episodes(o.day).assign(day=o.day))
        pd.concat(undercuts, ignore_index=True).to_csv(events_dir / "undercuts.csv", index=False)
    return panel


def register(app: typer.Typer) -> None:
    """Add the ``simulate`` command to the pricelab CLI."""

    @app.command("simulate")
    def simulate_command(
        out: Annotated[Path, typer.Option("--out", help="Panel file: .csv or .parquet.")],
        config: Annotated[
            Path | None, typer.Option("--config", help="Market config (.yaml/.yml/.json).")
        ] = None,
        days: Annotated[int, typer.Option("--days", min=1, help="Days to simulate.")] = 28,
        design: Annotated[
            SimDesign, typer.Option("--design", help="Local minimal assignment design.")
        ] = SimDesign.random_days,
        seed: Annotated[int, typer.Option("--seed", min=0, help="Market and design seed.")] = 0,
        probability: Annotated[
            float, typer.Option("--probability", help="Treatment probability (random-days).")
        ] = 0.5,
        treat_from: Annotated[
            int | None, typer.Option("--treat-from", help="Start day (time-bound; days//2).")
        ] = None,
        events: Annotated[
            Path | None, typer.Option("--events", help="Directory for event JSONL files.")
        ] = None,
    ) -> None:
        """Simulate a seeded market and write a long panel with the ground truth alongside."""
        try:
            cfg = MarketConfig.from_file(config) if config is not None else MarketConfig()
            panel = simulate(cfg, days, design, seed, out, events, probability, treat_from)
        except (ValueError, OSError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=2) from exc
        truth = panel["true_effect"].mean()
        typer.echo(
            f"wrote {len(panel)} product-days ({cfg.n_products} products x {days} days) to "
            f"{out}; true effect {truth:.3f} units per product-day"
        )
