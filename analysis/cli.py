"""``pricelab analyze``: run one estimator on an exported panel, offline.

    pricelab analyze PANEL.csv|.parquet --unit COL --time COL --outcome COL --treated COL
        --method {did,sc,difp,sdid,mc,trop,ht,crossover,...} [--se METHOD] [--seed N] [--json]
        [--covariates COL,COL] [--blackout COL] [--probability COL] [--sep ';']

Methods come from :mod:`analysis.estimators.registry`, so every registered estimator works.
``--se``/``--seed`` are passed to the estimator (the contract in
:mod:`analysis.estimators.base` says every estimator accepts them; an estimator that does not
gets them only if its signature has them). The CSV separator is detected from the header line
(``;``, ``,``, tab or ``|``) unless ``--sep`` is given.
"""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer

from analysis.errors import AnalysisError
from analysis.estimators import registry
from analysis.inference import bh_adjust
from analysis.panel import Panel

_SEPARATORS = (";", ",", "\t", "|")


def read_table(path: Path, sep: str | None = None) -> pd.DataFrame:
    """Read a long panel from CSV (separator detected) or Parquet."""
    if not path.exists():
        raise FileNotFoundError(2, "no such file", str(path))
    if path.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if sep is None:
        with path.open(encoding="utf-8") as fh:
            header = fh.readline()
        sep = max(_SEPARATORS, key=header.count) if any(c in header for c in _SEPARATORS) else ","
    return pd.read_csv(path, sep=sep)


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
            factory = registry._FACTORIES.get(method)
            if factory is None and method in registry._MODULES:
                import importlib

                importlib.import_module(registry._MODULES[method])
                factory = registry._FACTORIES.get(method)
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


def _format_table(row: dict[str, Any]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return "nan" if math.isnan(v) else f"{v:.4g}"
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
    width = max(len(k) for k in keys)
    return "\n".join(f"{k:<{width}}  {fmt(row.get(k))}" for k in keys)


def analyze(
    panel_path: Annotated[Path, typer.Argument(help="Long panel: .csv or .parquet.")],
    unit: Annotated[str, typer.Option(help="Unit column.")],
    time: Annotated[str, typer.Option(help="Period column.")],
    outcome: Annotated[str, typer.Option(help="Outcome column.")],
    treated: Annotated[str, typer.Option(help="0/1 treatment column.")],
    method: Annotated[str, typer.Option(help="Estimator id, e.g. did, sc, difp, sdid, mc.")],
    se: Annotated[
        str | None,
        typer.Option(help="Variance method: placebo, jackknife, bootstrap, time_placebo, ..."),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for placebo/bootstrap draws.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    covariates: Annotated[
        str | None, typer.Option(help="Comma-separated unit covariate columns.")
    ] = None,
    blackout: Annotated[str | None, typer.Option(help="0/1 blackout column.")] = None,
    probability: Annotated[str | None, typer.Option(help="Design probability column.")] = None,
    sep: Annotated[str | None, typer.Option(help="CSV separator (default: detect).")] = None,
    alpha: Annotated[float, typer.Option(help="1 - confidence level.")] = 0.05,
    by: Annotated[
        str | None,
        typer.Option(
            "--by",
            help="Segment column (e.g. category, brand, price band): one estimate per segment, "
            "with Benjamini-Hochberg adjusted p-values.",
        ),
    ] = None,
) -> None:
    """Estimate a treatment effect on an exported panel and print it."""
    if not 0.0 < alpha < 1.0:
        typer.echo(f"error: --alpha must be strictly between 0 and 1, not {alpha}", err=True)
        raise typer.Exit(code=2)
    try:
        df = read_table(panel_path, sep)
        covs = [c.strip() for c in covariates.split(",") if c.strip()] if covariates else []
        long = long_kw(unit, time, outcome, treated, blackout, probability, covs)
        if by is not None:  # each segment is validated on its own (they may span other periods)
            rows = by_segment(df, by, method, se, seed, alpha, long)
            _print_segments(rows, as_json)
            if all(r["error"] for r in rows):
                raise AnalysisError(f"no segment could be estimated: {rows[0]['error']}")
            return
        panel = Panel.from_long(df, **long)
        estimator = build_estimator(method, se, seed)
        result = estimator.fit(panel).result
    except (AnalysisError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        typer.echo(f"error: {first}", err=True)
        raise typer.Exit(code=2) from None
    row = result.to_dict(alpha)
    if as_json:
        typer.echo(json.dumps({k: _json_safe(v) for k, v in row.items()}))
    else:
        typer.echo(_format_table(row))


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


def by_segment(
    df: pd.DataFrame,
    by: str,
    method: str,
    se: str | None,
    seed: int | None,
    alpha: float,
    long: dict[str, Any],
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


def _print_segments(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        for r in rows:
            typer.echo(json.dumps({k: _json_safe(v) for k, v in r.items()}))
        return

    def fmt(v: Any) -> str:
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            return "-"
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    table = [list(_SEGMENT_COLUMNS)] + [[fmt(r.get(c)) for c in _SEGMENT_COLUMNS] for r in rows]
    width = [max(len(row[i]) for row in table) for i in range(len(_SEGMENT_COLUMNS))]
    for row in table:
        typer.echo("  ".join(c.rjust(w) for c, w in zip(row, width, strict=True)))
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


def register(app: typer.Typer) -> None:
    """Add the ``analyze`` command to the ``pricelab`` app."""
    app.command("analyze")(analyze)


__all__ = ["analyze", "build_estimator", "read_table", "register"]
