"""Two more of the Health section's parts: multiple exposure, and traffic over time.

- **Multiple exposure.** The report and the analysis define none, so the console's is read
  from the assignments in force. A product is in one arm for a whole period by design (the
  flip assigns it once a period). It sees a second arm's price within that period only when a
  pause, a stop or an operator freeze begins or ends inside the period, after its washout
  (which no estimate reads): from then the control's price is on every product (the
  controller's exclusion windows, ``Store.windows``, and the freezes). Those product-periods in an arm other than the control are the multiply exposed
  ones. The panel must black them out (an exclusion window overlaps the period's analysis
  window), so that no estimate mixes two arms' prices in one cell. A product in two
  experiments at once cannot happen: a product is claimed by one experiment at a time, and
  ``pricelab experiment create`` refuses a spec whose products a running or paused experiment
  holds.
- **Traffic over time.** Each completed period's units, orders and products in each arm, from
  the panel the sample-ratio check reads.

These are the figures; the flag and the sentence are streams.client.health's
(``multiple_exposure_check``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from controller.periods import period_bounds
from controller.spec import ExperimentSpec
from controller.store import to_ms


def exclusion_edges(
    windows: Sequence[Mapping[str, Any]], freezes: Sequence[Mapping[str, Any]], exp_id: str
) -> list[tuple[int, str]]:
    """Each moment (ms) the control's price was put on, or taken off, every product of
    ``exp_id``, with what did it: the start and end of each pause or stop window
    (``Store.windows``: its id names the phase that opened it, ``stopped-...`` a stop, any
    other a pause) and of each freeze that applies to it (``Store.freezes``). A window still
    open has no end."""
    out: list[tuple[int, str]] = []
    for w in windows:
        kind = "stop" if str(w.get("id") or "").startswith("stopped-") else "pause"
        out += [(int(w["start_ms"]), kind)]
        if w.get("end_ms") is not None:
            out += [(int(w["end_ms"]), kind)]
    for f in freezes:
        if f.get("experiments") is None or exp_id in f["experiments"]:
            out += [(int(f["start_ms"]), "freeze"), (int(f["end_ms"]), "freeze")]
    return sorted(out)


def cut_periods(
    spec: ExperimentSpec, edges: Sequence[tuple[int, str]], done: int
) -> dict[int, str]:
    """The completed periods (``done`` of them) inside whose analysis window an edge falls
    (after the period's washout, before its end: an edge in the washout changes no price an
    estimate reads, and the panel does not black the period out for it,
    ``controller.panel_cells.window_hits``), each with what cut it (the first)."""
    out: dict[int, str] = {}
    bounds = []
    for k in range(done):
        begin, end = period_bounds(spec, k)
        bounds.append((to_ms(begin + spec.washout), to_ms(end)))
    for at, kind in edges:
        for k, (tail, stop) in enumerate(bounds):
            if tail < at < stop:  # tail: the end of the period's washout
                out.setdefault(k, kind)
    return out


def exposed_cells(d: pd.DataFrame, cut: Mapping[int, str], control: str) -> dict[str, Any]:
    """Multiple exposure's figures (see the module): ``d``, the normalised panel with each
    cell's ``arm``; ``cut``, :func:`cut_periods`. The product-periods in an arm other than the
    control inside a cut period (``cells``, of ``products``), the periods with what cut each,
    and how many of those cells the panel did not black out (``not_blacked_out``)."""
    if d.empty or not cut:
        return {"cells": 0, "products": 0, "periods": {}, "not_blacked_out": 0}
    hit = d[d["period"].isin(list(cut)) & (d["arm"] != control)]
    return {
        "cells": len(hit),
        "products": int(hit["product"].nunique()),
        "periods": {int(k): cut[int(k)] for k in sorted(hit["period"].unique())},
        "not_blacked_out": int((~hit["blackout"].astype(bool)).sum()),
    }


def traffic(d: pd.DataFrame, arms: Sequence[str]) -> list[dict[str, Any]]:
    """Traffic over time: per completed period, oldest first, each arm's units, orders and
    products (cells with a record), in the spec's order of the arms."""
    if d.empty:
        return []
    has_orders = "orders" in d.columns
    g = d.groupby(["period", "arm"], observed=True).agg(
        units=("units", "sum"),
        products=("product", "size"),
        **({"orders": ("orders", "sum")} if has_orders else {}),
    )
    out = []
    for k in sorted(int(p) for p in d["period"].unique()):
        row: dict[str, Any] = {"period": k, "arms": {}}
        for a in arms:
            if (k, a) in g.index:
                r = g.loc[(k, a)]
                row["arms"][a] = {
                    "units": float(r["units"]),
                    "orders": float(r["orders"]) if has_orders else None,
                    "products": int(r["products"]),
                }
            else:
                row["arms"][a] = {"units": 0.0, "orders": 0.0 if has_orders else None,
                                  "products": 0}  # fmt: skip
        out.append(row)
    return out
