"""Panel validation at the door: every problem is a PanelError with an actionable sentence."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from analysis.errors import PanelError
from analysis.panel import Panel


def _long(n_units: int = 3, n_periods: int = 4) -> pd.DataFrame:
    rows = []
    for i in range(n_units):
        for t in range(n_periods):
            rows.append(
                {
                    "u": f"s{i}",
                    "t": 2000 + t,
                    "y": float(i + t),
                    "w": int(i == 0 and t >= 2),
                    "x": i * 10,
                }
            )
    return pd.DataFrame(rows)


def _build(df: pd.DataFrame, **kw: object) -> Panel:
    return Panel.from_long(df, unit="u", time="t", outcome="y", treated="w", **kw)  # type: ignore[arg-type]


def test_good_table_builds_a_block_panel() -> None:
    p = _build(_long(), covariates=["x"])
    assert p.shape == (3, 4)
    assert p.is_block and p.block_structure() == (2, 2)
    assert list(p.sorted_for_block().units) == ["s1", "s2", "s0"]
    assert p.covariates is not None and list(p.covariates["x"]) == [0, 10, 20]


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda d: d.drop(columns="y"), "not found"),
        (lambda d: d.iloc[:0], "no rows"),
        (lambda d: pd.concat([d, d.iloc[[0]]]), "more than once"),
        (lambda d: d.iloc[1:], "unbalanced"),
        (lambda d: d.assign(w=d["w"].replace(1, 2)), "0/1"),
        (lambda d: d.assign(y=d["y"].astype(object).where(d.index != 3, "abc")), "non-numeric"),
        (lambda d: d.assign(y=d["y"].where(d.index != 3)), "missing or not finite"),
        (lambda d: d.assign(x=d.index), "vary within a unit"),
    ],
)
def test_bad_tables_are_refused(mutate, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PanelError, match=match):
        _build(mutate(_long()), covariates=["x"])


def test_missing_outcome_is_allowed_in_blackout_cells() -> None:
    df = _long()
    df["b"] = df.index == 3
    df.loc[3, "y"] = np.nan
    p = _build(df, blackout="b")
    assert p.blackout.sum() == 1 and not p.usable.all()


def test_shape_mismatches_are_refused() -> None:
    with pytest.raises(PanelError, match="same shape"):
        Panel(
            Y=np.zeros((3, 4)),
            W=np.zeros((3, 3)),
            units=np.arange(3),
            times=np.arange(4),
            blackout=np.zeros((3, 4)),
        )
    with pytest.raises(PanelError, match="labels"):
        Panel(
            Y=np.zeros((3, 4)),
            W=np.zeros((3, 4)),
            units=np.arange(2),
            times=np.arange(4),
            blackout=np.zeros((3, 4)),
        )
    with pytest.raises(PanelError, match="at least 2 units"):
        Panel(
            Y=np.zeros((1, 4)),
            W=np.zeros((1, 4)),
            units=np.arange(1),
            times=np.arange(4),
            blackout=np.zeros((1, 4)),
        )


def test_probability_must_be_a_probability() -> None:
    df = _long()
    df["p"] = 1.5
    with pytest.raises(PanelError, match=r"\[0, 1\]"):
        _build(df, probability="p")


def test_block_structure_errors() -> None:
    df = _long()
    df.loc[(df["u"] == "s1") & (df["t"] == 2000), "w"] = 1  # second unit starts earlier
    with pytest.raises(PanelError, match="block design"):
        _build(df).block_structure()
    df = _long()
    df.loc[df["u"] == "s0", "w"] = 1  # treated from the first period: no pre-period
    with pytest.raises(PanelError, match="no pre-treatment period"):
        _build(df).block_structure()


def test_boolean_treatment_column_is_accepted() -> None:
    df = _long()
    df["w"] = df["w"].astype(bool)
    assert _build(df).W.sum() == 2


def test_from_long_places_every_row_in_its_cell_whatever_the_row_order() -> None:
    rng = np.random.default_rng(4)
    units = ["b", "a", "10", "9", "ünï"]
    rows = [
        {"u": u, "t": t, "y": float(i * 10 + t), "w": (i + t) % 2, "cls": f"c{i % 2}",
         "p": 0.25 + 0.5 * (t % 2), "bo": t == 3}
        for i, u in enumerate(units) for t in range(6)
    ]  # fmt: skip
    df = pd.DataFrame(rows).sample(frac=1.0, random_state=7).reset_index(drop=True)
    df = df.iloc[rng.permutation(len(df))]
    panel = Panel.from_long(
        df, unit="u", time="t", outcome="y", treated="w", blackout="bo", probability="p",
        group="cls",
    )  # fmt: skip
    assert panel.units.tolist() == ["10", "9", "a", "b", "ünï"]  # strings in natural order
    assert panel.times.tolist() == [0, 1, 2, 3, 4, 5]
    for r in rows:
        i, t = panel.units.tolist().index(r["u"]), r["t"]
        assert panel.Y[i, t] == r["y"]
        assert panel.W[i, t] == bool(r["w"])
        assert panel.probability[i, t] == r["p"]
        assert panel.blackout[i, t] == r["bo"]
    assert panel.groups.tolist() == ["c0", "c1", "c1", "c0", "c0"]  # 10, 9, a, b, ünï


def test_categorical_units_and_narrow_integer_periods_pivot_as_plain_columns() -> None:
    """The live panel's columns - products as a categorical (with categories that have no
    rows), periods as int32 - skip hashing every row; the panel is the one the same table
    with plain object and int64 columns gives."""
    rng = np.random.default_rng(5)
    units, times = ["b", "a", "10", "9"], [-3, 0, 7, 2]
    rows = [(u, t) for t in times for u in units]
    rows = [rows[i] for i in rng.permutation(len(rows))]
    plain = pd.DataFrame(rows, columns=["u", "t"])
    plain["y"] = rng.normal(size=len(plain))
    plain["w"] = rng.integers(0, 2, len(plain))
    live = plain.assign(
        u=pd.Categorical(plain["u"], categories=["zz-none", "b", "a", "10", "9", "aa-none"]),
        t=plain["t"].astype(np.int32),
    )
    a, b = _build_plain(plain), _build_plain(live)
    assert b.units.tolist() == ["10", "9", "a", "b"] and b.times.tolist() == [-3, 0, 2, 7]
    assert a.units.tolist() == b.units.tolist() and b.times.dtype == a.times.dtype == np.int64
    assert np.array_equal(a.Y, b.Y) and np.array_equal(a.W, b.W)
    for u, t, y in zip(plain["u"], plain["t"], plain["y"], strict=True):
        assert b.Y[b.units.tolist().index(u), b.times.tolist().index(t)] == y


@pytest.mark.parametrize(
    "periods",
    [
        pd.Categorical([7, 2, 0, 2, 7, 0], categories=[7, 2, 0]),  # integer categories, unsorted
        pd.array([7, 2, 0, 2, 7, 0], dtype="UInt8"),
        np.array([7, 2, 0, 2, 7, 0], dtype=np.uint32),
        np.array([7, 2, 0, 2, 7, 0], dtype=np.int16),
    ],
)
def test_periods_sort_ascending_whatever_their_column_type(periods: Any) -> None:
    df = pd.DataFrame(
        {"u": ["a", "a", "a", "b", "b", "b"], "t": periods, "y": [7.0, 2.0, 0.0, 12.0, 17.0, 10.0],
         "w": [1, 0, 0, 1, 0, 1]}
    )  # fmt: skip
    panel = _build_plain(df)
    assert [int(t) for t in panel.times] == [0, 2, 7]
    assert panel.Y.tolist() == [[0.0, 2.0, 7.0], [10.0, 12.0, 17.0]]  # y is 10 * unit + period
    assert panel.W.tolist() == [[False, False, True], [True, True, False]]


def _build_plain(df: pd.DataFrame) -> Panel:
    return Panel.from_long(df, unit="u", time="t", outcome="y", treated="w")


def test_from_long_names_a_unit_whose_class_varies() -> None:
    df = pd.DataFrame(
        {"u": ["a", "a", "b", "b"], "t": [0, 1, 0, 1], "y": 1.0, "w": [0, 1, 0, 1],
         "cls": ["x", "x", "y", "z"]}
    )  # fmt: skip
    with pytest.raises(PanelError, match="varies within unit 'b'"):
        Panel.from_long(df, unit="u", time="t", outcome="y", treated="w", group="cls")


def test_a_cell_is_named_as_the_table_writes_it() -> None:
    """The sentence showed numpy's reprs: ``unit np.str_('s0') at period np.int64(2003)``,
    and a date as ``Timestamp('2026-03-02 00:00:00+0000', tz='UTC')``."""
    df = _long()
    df.loc[3, "y"] = np.nan
    with pytest.raises(PanelError, match=r"for unit 's0' at period 2003 \(1 cell"):
        _build(df)
    days = df.assign(t=pd.to_datetime(df["t"].astype(str) + "-03-02", utc=True))
    with pytest.raises(PanelError, match=r"for unit 's0' at period 2003-03-02T00:00:00\+00:00 "):
        _build(days)
    with pytest.raises(PanelError, match=r"^Unit 's0' appears more than once at period 2000;"):
        _build(pd.concat([df, df.iloc[[0]]]))


def test_a_probability_written_as_a_percentage_is_named() -> None:
    """``50%`` in the probability column: the sentence was pandas' own, "Unable to parse
    string '50%' at position 0", naming no column."""
    df = _long().assign(p="50%")
    with pytest.raises(PanelError) as err:
        _build(df, probability="p")
    assert str(err.value) == (
        "Probability column 'p' must hold numbers between 0 and 1; it has '50%'."
    )
