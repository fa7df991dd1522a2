"""The columns that say where a panel's cell sits, the same in the live panel (``pricelab
panel export``, the notebook API's ``pricelab.panel``) and the simulated one (``pricelab
simulate --out``): ``product``, ``period`` (the experiment's period index), ``period_start``
(the period's start in the experiment's time zone) and, when the spec names product
segments, ``segment`` (the segment each product is in; blank for a product in none), so that
``pricelab analyze ... --unit product --time period --by segment`` reads either file.
"""

from __future__ import annotations

import pandas as pd

from controller.periods import period_bounds
from controller.spec import ExperimentSpec


def period_starts(spec: ExperimentSpec, periods: pd.Series) -> pd.Series:
    """Each row's period start, in the experiment's time zone (a DST change shows as a new
    offset, never as a shifted hour)."""
    if len(periods) == 0:
        return pd.Series([], index=periods.index, dtype=f"datetime64[ns, {spec.timezone}]")
    ks = sorted({int(k) for k in periods.unique()})
    starts = pd.DatetimeIndex([period_bounds(spec, k)[0] for k in ks]).tz_convert(spec.zone)
    at = pd.Series(starts, index=ks)
    return pd.Series(at.reindex(periods.astype(int)).to_numpy(), index=periods.index)


def segments_of(spec: ExperimentSpec, products: pd.Series) -> pd.Series:
    """The spec's segment of each row's product (a categorical over the segment names;
    missing for a product in no segment)."""
    name = {p: seg for seg, members in spec.segments.items() for p in members}
    codes, uniques = pd.factorize(products)  # per distinct product, not per row
    each = pd.Categorical([name.get(str(u)) for u in uniques], categories=list(spec.segments))
    return pd.Series(
        pd.Categorical.from_codes(each.codes[codes], dtype=each.dtype), index=products.index
    )


def label(df: pd.DataFrame, spec: ExperimentSpec) -> pd.DataFrame:
    """``df`` (columns ``product`` and ``period``) with ``period_start`` in the experiment's
    time zone right after ``period``, and ``segment`` after ``product`` when the spec names
    segments; the other columns as they were."""
    if df.empty:
        return df
    out = df.drop(columns=[c for c in ("period_start", "segment") if c in df.columns])
    out.insert(out.columns.get_loc("period") + 1, "period_start", period_starts(spec, df["period"]))
    if spec.segments:
        out.insert(out.columns.get_loc("product") + 1, "segment", segments_of(spec, df["product"]))
    return out
