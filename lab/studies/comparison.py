"""Studies of designs and estimators on the simulated market, declared as cases of
:func:`lab.compare.simulate_run` (the comparison's own run: the controller's draw, the worker's
fits, common demand paths). A case is one :func:`case` line; a new coverage row is one more.

    CASES = (case("crossover", arm="defaults"), case("cluster", period="PT4H", days=14, ...))
    STUDY = Study("name", CASES, run_one, summarise_cases, "name.csv")
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from functools import lru_cache
from typing import Any

import pandas as pd
from pydantic import TypeAdapter

from lab.compare import CompareConfig, EstimatorChoice, market_classes, simulate_run, summarise
from lab.config import MarketConfig
from lab.errors import LabError
from lab.market import Market
from lab.studies.harness import Case, Row

#: the keys of a case that say how to run it; every other key labels its rows and summary
SETTINGS = ("design", "period", "days", "market", "estimators", "extra_estimators", "seed")


def case(
    design: str,
    *,
    period: str = "P1D",
    days: int = 28,
    market: Mapping[str, Any] | None = None,
    estimators: tuple[str | EstimatorChoice, ...] | None = None,
    extra_estimators: tuple[str, ...] = (),
    seed: int = 0,
    **labels: Any,
) -> dict[str, Any]:
    """One case: ``design`` at ``period`` (ISO 8601) for ``days`` on the default market changed
    by ``market`` (MarketConfig fields), fitting the design's own estimators, or ``estimators``,
    plus ``extra_estimators``; ``labels`` name the case in the saved table."""
    return {
        "design": design, "period": period, "days": days, "market": dict(market or {}),
        "estimators": estimators, "extra_estimators": extra_estimators, "seed": seed, **labels,
    }  # fmt: skip


def config(c: Case, runs: int = 2) -> CompareConfig:
    """The comparison a case runs."""
    design = c["design"]
    return CompareConfig(
        market=MarketConfig.model_validate(c["market"]),
        designs=(design,),
        estimators=None if c["estimators"] is None else {design: c["estimators"]},
        extra_estimators={design: c["extra_estimators"]} if c["extra_estimators"] else None,
        runs=runs,
        seed=c["seed"],
        days=c["days"],
        period=TypeAdapter(timedelta).validate_python(c["period"]),
    )


@lru_cache(maxsize=16)
def _classes(market: str, seed: int) -> dict[str, tuple[str, ...]]:
    # as lab.compare.run_comparison: one clustering of the case's market for every run
    cfg = CompareConfig(market=MarketConfig.model_validate_json(market), seed=seed)
    return market_classes(Market(cfg.market, seed=cfg.seed), cfg.cluster_max_size)


def run_one(c: Case, run: int, settings: Mapping[str, Any]) -> list[Row]:
    """Run ``run`` of the case: a row per estimator (lab.compare.simulate_run)."""
    cfg = config(c, int(settings["runs"]))
    return simulate_run(cfg, run, _classes(cfg.market.model_dump_json(), cfg.seed))


def summarise_cases(cases: tuple[Case, ...], rows: pd.DataFrame) -> pd.DataFrame:
    """lab.compare.summarise per case, in the cases' order, with the case's period and labels
    as columns (a case is told apart by its design, period and labels)."""
    keys = [
        {k: v for k, v in c.items() if k not in SETTINGS or k in ("design", "period")}
        for c in cases
    ]
    if len({tuple(sorted(k.items())) for k in keys}) < len(keys):
        raise LabError("two cases share their design, period and labels; label them apart")
    parts = []
    for c, key in zip(cases, keys, strict=True):
        mine = pd.Series(True, index=rows.index)
        for k, v in key.items():
            mine &= rows[k] == v
        own = rows[mine].drop(columns=[k for k in c if k != "design"])
        labels = {k: v for k, v in key.items() if k != "design"}
        parts.append(summarise(own).assign(**labels))
    return pd.concat(parts, ignore_index=True)


#: lab.compare.simulate_run's leading columns, in its order
_LEADING = ("design", "metric", "estimator", "order", "run")


def runs_table(rows: pd.DataFrame, case_keys: Iterable[str]) -> pd.DataFrame:
    """The rows as lab.compare.run_comparison returns them (simulate_run's columns, sorted by
    design, estimator order and run), without the cases' own keys."""
    drop = [k for k in dict.fromkeys(case_keys) if k != "design" and k in rows]
    out = rows.drop(columns=drop)
    out = out[[*_LEADING, *[c for c in out.columns if c not in _LEADING]]]
    return out.sort_values(["design", "order", "run"], kind="stable").reset_index(drop=True)
