"""The panel: units x periods outcome and treatment matrices, validated at the door.

A ``Panel`` holds everything an estimator may use:

- ``Y`` (N x T float): outcomes; NaN only where ``blackout`` or ``~observed`` is set;
- ``W`` (N x T bool): treatment actually in force;
- ``blackout`` (N x T bool): cells excluded from analysis (washout, operator freeze);
- ``probability`` (N x T float or None): design probability that W = 1, when the design knows it;
- ``covariates`` (DataFrame indexed by unit, or None);
- ``groups`` (N labels or None): each unit's class, for estimators that cluster by class;
- ``units`` and ``times``: the labels of rows and columns, times sorted ascending;
- ``part``: a chunk of a larger panel (``analysis.estimators.sums``), which may be 1 x 1.

Build it from a long DataFrame with :meth:`Panel.from_long`. Every problem is a
``PanelError`` with a sentence the user can act on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from analysis.errors import PanelError


def shown(label: Any) -> str:
    """A unit or period label as a sentence shows it: ``'A'``, ``2``, ``2026-03-02T00:00:00+00:00``
    (not numpy's ``np.str_('A')``, ``np.int64(2)`` or ``Timestamp('2026-03-02 ...', tz='UTC')``)."""
    if isinstance(label, pd.Timestamp | np.datetime64):
        return pd.Timestamp(label).isoformat()
    return repr(label.item() if isinstance(label, np.generic) else label)


def blackout_flags(df: pd.DataFrame, column: str) -> pd.Series:
    """A blackout column as booleans: 0/1 or true/false in every row; anything else (an empty
    cell, a word) is one sentence, not a guess."""
    return zero_one(df, column, "Blackout")


def zero_one(df: pd.DataFrame, column: str, role: str) -> pd.Series:
    """A 0/1 column (``role``: Blackout, Treatment) as booleans: 0/1 or true/false in every
    row; anything else (an empty cell, ``yes``, 0.5) is one sentence, not a guess."""
    col = df[column]
    v = col if pd.api.types.is_bool_dtype(col) else pd.to_numeric(col, errors="coerce")
    ok = v.isin((0, 1)) & v.notna()
    if not ok.all():
        bad = col[~ok].iloc[0]
        shown = (
            "an empty cell" if pd.isna(bad) else repr(bad.item() if hasattr(bad, "item") else bad)
        )
        raise PanelError(
            f"{role} column {column!r} must be 0/1 (or boolean) in every row; it has {shown}."
        )
    return v.astype(bool)


@dataclass(frozen=True, eq=False)
class Panel:
    Y: np.ndarray
    W: np.ndarray
    units: np.ndarray
    times: np.ndarray
    blackout: np.ndarray
    probability: np.ndarray | None = None
    covariates: pd.DataFrame | None = None
    groups: np.ndarray | None = None
    #: a part of a panel (some of its products or periods, read in chunks: issue #42), from
    #: which an estimator computes its partial statistics; the whole panel's 2 x 2 minimum is
    #: not a part's (one product, one new period), and the estimators check what they need
    #: when the parts are merged
    part: bool = False

    def __post_init__(self) -> None:
        Y = np.asarray(self.Y, dtype=float)
        W = np.asarray(self.W, dtype=bool)  # no copy of a boolean matrix
        B = np.asarray(self.blackout, dtype=bool)
        object.__setattr__(self, "Y", Y)
        object.__setattr__(self, "W", W)
        object.__setattr__(self, "blackout", B)
        if Y.ndim != 2:
            raise PanelError(f"Y must be a units x periods matrix; got {Y.ndim} dimension(s).")
        N, T = Y.shape
        if W.shape != (N, T) or B.shape != (N, T):
            raise PanelError(
                f"Y is {N}x{T} but W is {W.shape[0]}x{W.shape[1]} and blackout is "
                f"{B.shape[0]}x{B.shape[1]}; all three must have the same shape."
            )
        if len(self.units) != N or len(self.times) != T:
            raise PanelError(
                f"{len(self.units)} unit labels and {len(self.times)} period labels "
                f"do not match a {N}x{T} outcome matrix."
            )
        if (N < 2 or T < 2) and not (self.part and N and T):
            raise PanelError(f"A panel needs at least 2 units and 2 periods; got {N}x{T}.")
        bad = ~np.isfinite(Y) & ~B
        if bad.any():
            i, t = np.argwhere(bad)[0]
            raise PanelError(
                f"Outcome is missing or not finite for unit {shown(self.units[i])} at period "
                f"{shown(self.times[t])} ({int(bad.sum())} cell(s) in all) outside blackout; "
                "fill it, drop the unit, or mark the cell as blackout."
            )
        if self.probability is not None:
            P = np.asarray(self.probability, dtype=float)
            if P.shape != (N, T):
                raise PanelError("probability must have the same shape as Y.")
            if np.any((P < 0) | (P > 1) | ~np.isfinite(P)):
                raise PanelError("probability must lie in [0, 1] in every cell.")
            object.__setattr__(self, "probability", P)
        if self.groups is not None:
            g = np.asarray(self.groups)
            if g.shape != (N,):
                raise PanelError(f"groups must give one class per unit ({N}); got {g.shape}.")
            object.__setattr__(self, "groups", g)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_long(
        cls,
        df: pd.DataFrame,
        *,
        unit: str,
        time: str,
        outcome: str,
        treated: str,
        blackout: str | None = None,
        probability: str | None = None,
        covariates: Sequence[str] = (),
        group: str | None = None,
    ) -> Panel:
        """Pivot a long table (one row per unit and period) into a validated panel; ``group``
        names a column holding each unit's class (constant within a unit)."""
        needed = [unit, time, outcome, treated]
        needed += [c for c in (blackout, probability, group) if c is not None]
        needed += list(covariates)
        missing = [c for c in needed if c not in df.columns]
        if missing:
            raise PanelError(f"Column(s) {missing} not found; the table has {list(df.columns)}.")
        if df.empty:
            raise PanelError("The table has no rows.")
        y = df[outcome]
        if not pd.api.types.is_numeric_dtype(y):
            y = pd.to_numeric(y, errors="coerce")
            if (y.isna() & df[outcome].notna()).any():
                raise PanelError(f"Outcome column {outcome!r} has non-numeric values.")
        w = pd.to_numeric(df[treated], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        if not ((w == 0.0) | (w == 1.0)).all():  # NaN is neither
            raise PanelError(f"Treatment column {treated!r} must be 0/1 (or boolean) in every row.")
        # each row's cell, by label codes in sorted order: the pivot is a scatter, O(rows)
        # (pandas' pivot sorted a MultiIndex per column: ~1.5 s a column at 4.5M rows)
        ucode, units = _sorted_codes(df[unit])
        tcode, times = _sorted_codes(df[time])
        N, T = len(units), len(times)
        flat = ucode * T + tcode
        if np.bincount(flat, minlength=N * T).max(initial=0) > 1:
            dup = df.duplicated([unit, time])
            row = df.loc[dup, [unit, time]].iloc[0]
            raise PanelError(
                f"Unit {shown(row[unit])} appears more than once at period {shown(row[time])}; "
                "aggregate to one row per unit and period first."
            )
        n_expected = N * T
        if len(df) != n_expected:
            raise PanelError(
                f"The panel is unbalanced: {len(df)} rows for {N} units x "
                f"{T} periods ({n_expected} expected). Add the missing unit-periods "
                "(with blackout set if they carry no data)."
            )

        def grid(values: np.ndarray, dtype: type) -> np.ndarray:
            out: np.ndarray = np.empty(n_expected, dtype=dtype)
            out[flat] = values
            return out.reshape(N, T)

        Y = grid(y.to_numpy(dtype=float), float)
        W = grid(w == 1.0, bool)
        if blackout is not None:
            B = grid(blackout_flags(df, blackout).to_numpy(), bool)
        else:
            B = np.zeros((N, T), dtype=bool)
        P = None
        if probability is not None:
            p = pd.to_numeric(df[probability], errors="coerce")
            bad = p.isna() & df[probability].notna()
            if bad.any():  # "50%": pandas said "Unable to parse string '50%' at position 0"
                raise PanelError(
                    f"Probability column {probability!r} must hold numbers between 0 and 1; it "
                    f"has {shown(df.loc[bad, probability].iloc[0])}."
                )
            P = grid(p.to_numpy(dtype=float), float)
        X = None
        if covariates:
            per_unit = df.groupby(unit)[list(covariates)].nunique()
            varying = [c for c in covariates if (per_unit[c] > 1).any()]
            if varying:
                raise PanelError(
                    f"Covariate(s) {varying} vary within a unit; unit covariates must be constant."
                )
            X = df.groupby(unit)[list(covariates)].first().reindex(units)
        groups = None
        if group is not None:
            gcode, _ = pd.factorize(df[group], use_na_sentinel=False)
            first = np.full(N, -1, dtype=np.intp)
            first[ucode[::-1]] = np.arange(len(df))[::-1]  # each unit's first row
            mixed = gcode != gcode[first[ucode]]
            if mixed.any():
                raise PanelError(
                    f"Class column {group!r} varies within unit "
                    f"{units.tolist()[ucode[mixed].min()]!r}; a unit belongs to one class."
                )
            groups = df[group].to_numpy()[first].astype(str)
        return cls(
            Y=Y,
            W=W,
            units=units,
            times=times,
            blackout=B,
            probability=P,
            covariates=X,
            groups=groups,
        )

    def outcome_of(self, df: pd.DataFrame, column: str, *, unit: str, time: str) -> Panel:
        """This panel with another numeric column of the long table it was pivoted from as its
        outcome (the same cells: a second metric of one experiment), NaN-free."""
        if column not in df.columns:
            raise PanelError(f"Column {column!r} not found; the table has {list(df.columns)}.")
        ucode, units = _sorted_codes(df[unit])
        tcode, times = _sorted_codes(df[time])
        if len(units) != len(self.units) or len(times) != len(self.times):
            raise PanelError("the table is not the one this panel was pivoted from")
        values = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=float)
        if not np.isfinite(values).all():
            raise PanelError(f"Outcome column {column!r} has missing or non-finite values.")
        Y = np.empty(self.Y.size)
        Y[ucode * len(times) + tcode] = values
        return self.with_outcome(Y.reshape(self.Y.shape))

    # ------------------------------------------------------------------ views
    @property
    def shape(self) -> tuple[int, int]:
        return self.Y.shape  # type: ignore[return-value]

    @property
    def n_units(self) -> int:
        return int(self.Y.shape[0])

    @property
    def n_periods(self) -> int:
        return int(self.Y.shape[1])

    @property
    def usable(self) -> np.ndarray:
        """Cells that may enter an estimate (not in blackout)."""
        return ~self.blackout

    @property
    def randomised(self) -> np.ndarray:
        """The usable cells the design randomised: 0 < P < 1 where probabilities are known
        (what the difference in means, the within-product difference, the price paid and the
        elasticity compare)."""
        if self.probability is None:
            return self.usable
        return self.usable & (self.probability > 0.0) & (self.probability < 1.0)

    @property
    def treated_units(self) -> np.ndarray:
        """Boolean mask of units treated in at least one usable period."""
        return np.asarray((self.W & self.usable).any(axis=1))

    @property
    def is_block(self) -> bool:
        """True for a block design: treated units all switch on at one period and stay on."""
        tr = self.treated_units
        if not tr.any() or tr.all():
            return False
        first = self.W[tr].argmax(axis=1)
        if len(set(first.tolist())) != 1:
            return False
        t0 = int(first[0])
        return bool(self.W[tr, t0:].all() and not self.W[tr, :t0].any() and not self.W[~tr].any())

    def block_structure(self) -> tuple[int, int]:
        """(number of control units N0, number of pre-periods T0) for a block design.

        Raises PanelError if the design is not a block design, or a treated unit has no
        pre-period. Estimators that need this order units control-first via
        :meth:`sorted_for_block`.
        """
        if not self.is_block:
            raise PanelError(
                "This estimator needs a block design: every treated unit switches on at the "
                "same period and stays treated, and control units are never treated."
            )
        tr = self.treated_units
        t0 = int(self.W[tr].argmax(axis=1)[0])
        if t0 == 0:
            raise PanelError("Treated units have no pre-treatment period; nothing to compare.")
        return int((~tr).sum()), t0

    def sorted_for_block(self) -> Panel:
        """The same panel with control units first (stable order), as block estimators expect."""
        order = np.argsort(self.treated_units, kind="stable")
        return self.take_units(order)

    def take_units(self, idx: np.ndarray) -> Panel:
        idx = np.asarray(idx)
        cov = None if self.covariates is None else self.covariates.iloc[idx]
        return replace(
            self,
            Y=self.Y[idx],
            W=self.W[idx],
            units=self.units[idx],
            blackout=self.blackout[idx],
            probability=None if self.probability is None else self.probability[idx],
            covariates=cov,
            groups=None if self.groups is None else self.groups[idx],
        )

    def with_outcome(self, Y: np.ndarray) -> Panel:
        return replace(self, Y=np.asarray(Y, dtype=float))

    def with_treatment(self, W: np.ndarray) -> Panel:
        return replace(self, W=np.asarray(W).astype(bool))

    def to_long(self) -> pd.DataFrame:
        N, T = self.shape
        out = pd.DataFrame(
            {
                "unit": np.repeat(self.units, T),
                "time": np.tile(self.times, N),
                "outcome": self.Y.ravel(),
                "treated": self.W.ravel().astype(int),
                "blackout": self.blackout.ravel(),
            }
        )
        if self.probability is not None:
            out["probability"] = self.probability.ravel()
        return out


def _sorted_codes(col: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Each row's position among the column's distinct labels sorted by ``_sort_key``, and
    those labels (as ``np.array`` makes them of a list: strings as ``<U``, as before).

    Two columns skip hashing every row (the live panel's 9M rows: ~0.2 s each): a categorical
    without missing values (its codes, over the categories that occur) and whole numbers in a
    range no wider than the rows (an offset, over the values that occur)."""
    fast = _present_codes(col)
    if fast is not None:
        codes, uniques = fast
        # int64 labels come out ascending; a categorical's strings are often already sorted:
        # the order _sort_key gives, without a Python key per label (~0.15 s for 100,000)
        if uniques.dtype == np.int64:
            return codes, uniques
        if pd.api.types.infer_dtype(uniques, skipna=False) == "string" and bool(
            pd.Index(uniques).is_monotonic_increasing
        ):
            return codes, np.array(uniques.tolist())
    else:
        codes, uniques = pd.factorize(col, use_na_sentinel=False)
    labels = list(uniques)
    order = sorted(range(len(labels)), key=lambda i: _sort_key(labels[i]))
    rank = np.empty(len(labels), dtype=np.intp)
    rank[order] = np.arange(len(labels))
    return rank[codes], np.array([labels[i] for i in order])


def _present_codes(col: pd.Series) -> tuple[np.ndarray, np.ndarray] | None:
    """(each row's code, the distinct labels that occur) without hashing, or None. Only where
    the labels are the ones pd.factorize gives: a categorical of strings (object categories;
    sorted or not), and signed numpy integers (int64 labels); anything else (unsigned, nullable,
    other categories) takes the general path."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        labels = col.cat.categories.to_numpy()
        if labels.dtype != object or pd.api.types.infer_dtype(labels, skipna=False) != "string":
            return None
        raw = col.cat.codes.to_numpy()
        lo = 0
    elif isinstance(col.dtype, np.dtype) and col.dtype.kind == "i" and len(col):
        raw = col.to_numpy()
        lo, hi = int(raw.min()), int(raw.max())
        if hi - lo >= max(len(raw), 1 << 16):
            return None
        labels = np.arange(lo, hi + 1, dtype=np.int64)  # the labels pd.factorize gives
    else:
        return None
    if len(raw) and raw.min() < 0:  # a missing category
        return None
    present = np.bincount(raw - lo if lo else raw, minlength=len(labels)) > 0
    code_of = np.cumsum(present) - 1
    return code_of[raw - lo if lo else raw], labels[present]


def _sort_key(v: object) -> tuple[int, object]:
    # numbers before strings, each in natural order, so mixed labels still sort
    if isinstance(v, int | float | np.integer | np.floating):
        return (0, float(v))  # type: ignore[arg-type]
    return (1, str(v))
