"""What an analyst types, through the real entry point (``streams.cli.main``): dates never
guessed, decimal commas, ``--probability`` as a constant or a column, the methods `analyze`
takes. Every refusal is one sentence on stderr with exit status 2."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.estimators import registry
from controller.spec import ExperimentSpec
from lab.plan import read_history
from streams.cli import main

UNITS = tuple(f"u{i:02d}" for i in range(12))
START = datetime(2026, 3, 2, tzinfo=UTC)


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(argv)
    out = capsys.readouterr()
    return int(done.value.code or 0), out.out, out.err


def _refusal(err: str) -> str:
    """The one line of a refusal (never a traceback)."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def _history(first_day: int, last_day: int, seed: int = 0) -> pd.DataFrame:
    """Units x the days first_day..last_day of March 2025, written day-first (03/03/2025)."""
    rng = np.random.default_rng(seed)
    days = [f"{d:02d}/03/2025" for d in range(first_day, last_day + 1)]
    return pd.DataFrame(
        {
            "sku": np.repeat(UNITS, len(days)),
            "day": np.tile(days, len(UNITS)),
            "units": rng.normal(10.0, 2.0, len(UNITS) * len(days)).round(2),
            "treated": rng.integers(0, 2, len(UNITS) * len(days)),
        }
    )


def _spec(tmp_path: Path, days: int = 7) -> Path:
    spec = ExperimentSpec(
        id="myspec",
        design="random-days",
        products=UNITS,
        treatment_policy="new",
        control_policy="old",
        start=START,
        end=START + timedelta(days=days),
        seed=3,
    )
    path = tmp_path / "myspec.json"
    path.write_text(spec.to_json())
    return path


def _plan(tmp_path: Path, history: Path, *extra: str) -> list[str]:
    argv = ["plan", str(_spec(tmp_path)), "--history", str(history), "--unit", "sku"]
    return argv + ["--time", "day", "--outcome", "units", "--sims", "20", "--jobs", "1", *extra]


# --------------------------------------------------------------------------- dates
def test_the_issues_fortnight_of_day_first_dates_is_read_as_fourteen_consecutive_days() -> None:
    """14 consecutive days 03/03/2025 .. 16/03/2025: 13..16 prove day-first (read month-first,
    they spread from March to December, mostly empty)."""
    h = read_history(_history(3, 16), "sku", "day", "units")
    assert h.n_periods == 14 and not np.isnan(h.Y).any()
    assert pd.Timestamp(h.times[0]) == pd.Timestamp("2025-03-03", tz="UTC")
    assert pd.Timestamp(h.times[-1]) == pd.Timestamp("2025-03-16", tz="UTC")


def test_plan_on_the_issues_history_plans_fourteen_days_without_failed_fits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    history = tmp_path / "history.csv"
    _history(3, 16).to_csv(history, index=False)
    code, out, err = _run(_plan(tmp_path, history, "--json"), capsys)
    assert code == 0, err
    assert "failed" not in err
    rows = json.loads(out)
    assert rows and all(r["mde"] is not None and np.isfinite(r["mde"]) for r in rows)


def test_plan_refuses_ambiguous_dates_naming_the_options_and_takes_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """01/03/2025 .. 12/03/2025 read as 1..12 March or as the 3rd of 12 months: never guessed."""
    history = tmp_path / "history.csv"
    _history(1, 12).to_csv(history, index=False)
    code, _, err = _run(_plan(tmp_path, history), capsys)
    line = _refusal(err)
    assert code == 2
    assert "'01/03/2025'" in line and "1 March 2025" in line and "3 January 2025" in line
    assert "--dayfirst" in line and "--date-format" in line
    for settle in (["--dayfirst"], ["--date-format", "%d/%m/%Y"]):
        code, out, err = _run(_plan(tmp_path, history, "--json", *settle), capsys)
        assert code == 0, err
        assert "failed" not in err
    # read month-first, the days are a month apart: the spec's daily periods do not fit them
    code, _, err = _run(_plan(tmp_path, history, "--monthfirst"), capsys)
    assert code == 2 and "spaced" in _refusal(err)


def test_dates_the_options_contradict_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    history = tmp_path / "history.csv"
    _history(3, 16).to_csv(history, index=False)
    code, _, err = _run(_plan(tmp_path, history, "--monthfirst"), capsys)
    assert code == 2 and "'13/03/2025'" in _refusal(err) and "--monthfirst" in err
    code, _, err = _run(_plan(tmp_path, history, "--date-format", "%Y-%m-%d"), capsys)
    assert code == 2 and "does not match --date-format" in _refusal(err)


def test_iso_dates_and_period_numbers_keep_working() -> None:
    iso = _history(3, 16).assign(day=lambda d: pd.to_datetime(d["day"], format="%d/%m/%Y"))
    iso["day"] = iso["day"].dt.strftime("%Y-%m-%d")
    assert read_history(iso, "sku", "day", "units").n_periods == 14
    numbered = _history(3, 16).assign(day=lambda d: d["day"].str[:2].astype(int))
    h = read_history(numbered, "sku", "day", "units")
    assert h.n_periods == 14 and h.times[0] == 3


@pytest.mark.parametrize(
    ("values", "why"),
    [
        (["03/03/25", "04/03/25"], "--date-format"),  # which field is the year?
        (["2025-03-03", "04/03/2025"], "more than one way"),
        (["13/03/2025", "03/13/2025"], "not a date in the order"),
        # a word among ISO dates was said to be dates "whose order is not settled"
        (["2026-03-01", "yesterday"], r"not values like 'yesterday' \(its other values are"),
        (["2026-03-01", "03/02/26"], r"more than one way \(e.g. '2026-03-01' and '03/02/26'\)"),
        # a date written in words or as yyyymmdd beside ISO dates was said to be no date
        (["2026-03-01", "1 March 2026"], r"^time column 'day' writes dates in more than one way"),
        (["2026-03-01", "20260301"], r"more than one way \(e.g. '2026-03-01' and '20260301'\)"),
        # and a word beside day-month dates was said to be a date written another way
        (["03/04/2025", "14/04/2025", "total"], r"not values like 'total' \(its other values"),
    ],
)
def test_dates_that_nothing_settles_are_refused(values: list[str], why: str) -> None:
    from analysis.errors import PanelError
    from analysis.table_input import read_dates

    with pytest.raises(PanelError, match=why):
        read_dates(pd.Series(values), "day")


def test_analyze_orders_day_first_dates_in_time_and_refuses_ambiguous_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """As text, 16/03/2025 sorted before 04/03/2025; a time-ordered estimator saw days
    shuffled. Read as dates they are in order; an ambiguous column is refused."""
    rng = np.random.default_rng(1)
    rows = []
    for i, unit in enumerate(UNITS):
        for d in range(3, 17):  # treated from 10 March on for half the units: a staggered DiD
            y = 10.0 + i + 0.5 * d + (3.0 if i < 6 and d >= 10 else 0.0) + rng.normal(0, 0.1)
            rows.append((unit, f"{d:02d}/03/2025", y, int(i < 6 and d >= 10)))
    panel = pd.DataFrame(rows, columns=["sku", "day", "units", "treated"])
    path = tmp_path / "panel.csv"
    panel.to_csv(path, index=False)
    cols = ["--unit", "sku", "--time", "day", "--outcome", "units", "--treated", "treated"]
    code, out, err = _run(["analyze", str(path), *cols, "--method", "did", "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["effect"] == pytest.approx(3.0, abs=0.1)
    early = tmp_path / "early.csv"
    panel[panel["day"].str[:2].astype(int) <= 12].to_csv(early, index=False)
    code, _, err = _run(["analyze", str(early), *cols, "--method", "did"], capsys)
    assert code == 2 and "--dayfirst" in _refusal(err)
    code, out, err = _run(["analyze", str(early), *cols, "--method", "did", "--dayfirst"], capsys)
    assert code == 0, err


def test_graph_build_reads_day_first_dates_and_refuses_ambiguous_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(2)
    days = [f"{d:02d}/{m:02d}/2025" for m in (1, 2, 3) for d in range(1, 29)]
    history = pd.DataFrame(
        {
            "product": np.repeat(["a", "b", "c"], len(days)),
            "date": np.tile(days, 3),
            "price": rng.uniform(8, 12, 3 * len(days)).round(2),
            "units": rng.poisson(20, 3 * len(days)),
            "category": "x",
        }
    )
    path = tmp_path / "history.csv"
    history.to_csv(path, index=False)
    out = tmp_path / "graph.json"
    code, _, err = _run(["graph", "build", str(path), "--out", str(out)], capsys)
    assert code == 0, err
    ambiguous = tmp_path / "ambiguous.csv"
    history[history["date"].str[:2].astype(int) <= 12].to_csv(ambiguous, index=False)
    code, _, err = _run(["graph", "build", str(ambiguous), "--out", str(out)], capsys)
    assert code == 2 and "--dayfirst" in _refusal(err)


# --------------------------------------------------------------------------- decimals
def _semicolon_decimal_commas(panel: pd.DataFrame, path: Path) -> None:
    text = panel.assign(units=panel["units"].map(lambda v: f"{v:.2f}".replace(".", ",")))
    text.to_csv(path, index=False, sep=";")


@pytest.mark.parametrize(
    ("values", "said"),
    [
        # a US export's thousands commas beside decimals or millions: no odd value in it
        (["1,234.56", "17.5", "2,000"], "holds values like '2,000', which is 2 with a decimal"),
        (["1,200", "12,345,678"], "holds values like '1,200', which is 1.2 with a decimal"),
        # numbers pandas reads with --decimal , (1,5e3  ,5  5,): the advice is --decimal ,
        (["169,83", "1,5e3"], "holds values like '169,83', which looks like decimal commas"),
        ([",5", "169,83", "5,"], "holds values like '169,83', which looks like decimal commas"),
    ],
)
def test_numbers_in_another_notation_are_not_called_no_number(values: list[str], said: str) -> None:
    """The refusal of a value that is no number (١٨, 12 kg) took a US ``1,234.56`` and a
    German ``1,5e3`` for such values, and said so instead of the advice that fits them."""
    from analysis.errors import PanelError
    from analysis.table_input import check_decimal_commas

    with pytest.raises(PanelError) as err:
        check_decimal_commas(pd.DataFrame({"revenue": values}), ["revenue"])
    assert str(err.value).startswith(f"column 'revenue' {said}")
    assert "which is not a number" not in str(err.value)


@pytest.mark.parametrize(
    ("values", "said"),
    [
        # a US export's thousands commas: --decimal , read a revenue of 1,200 as 1.2
        (
            ["1,200", "960", "-1,440"],
            "holds values like '1,200', which is 1.2 with a decimal "
            "comma or 1200 with a thousands separator: pass --decimal , if commas are decimal "
            "marks, or write the numbers without thousands separators.",
        ),  # fmt: skip
        # two decimals, or a leading zero, can only be decimal commas
        (["1,200", "169,83"], "holds values like '169,83', which looks like decimal commas"),
        (["0,125", "1,500"], "holds values like '0,125', which looks like decimal commas"),
    ],
)
def test_a_comma_before_three_digits_alone_is_not_taken_for_a_decimal_mark(
    values: list[str], said: str
) -> None:
    from analysis.errors import PanelError
    from analysis.table_input import check_decimal_commas

    with pytest.raises(PanelError) as err:
        check_decimal_commas(pd.DataFrame({"revenue": values}), ["revenue"])
    assert str(err.value).startswith(f"column 'revenue' {said}")


def test_decimal_commas_are_named_and_read_with_decimal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    panel = _history(3, 16).assign(day=lambda d: d["day"].str[:2].astype(int))
    path = tmp_path / "panel.csv"
    _semicolon_decimal_commas(panel, path)
    cols = ["--unit", "sku", "--time", "day", "--outcome", "units", "--treated", "treated"]
    code, _, err = _run(["analyze", str(path), *cols, "--method", "dm"], capsys)
    line = _refusal(err)
    assert code == 2 and "looks like decimal commas: pass --decimal ," in line
    code, out, err = _run(["analyze", str(path), *cols, "--method", "dm", "--decimal", ","], capsys)
    assert code == 0, err
    dot = tmp_path / "dot.csv"
    panel.to_csv(dot, index=False)
    _, same, _ = _run(["analyze", str(dot), *cols, "--method", "dm"], capsys)
    assert out == same
    code, _, err = _run(_plan(tmp_path, path), capsys)
    assert code == 2 and "pass --decimal ," in _refusal(err)
    code, _, err = _run(_plan(tmp_path, path, "--decimal", ",", "--sep", ";"), capsys)
    assert code == 0, err


def test_a_comma_separated_file_with_quoted_decimal_commas_is_read(tmp_path: Path) -> None:
    from analysis.cli import read_table

    path = tmp_path / "quoted.csv"
    path.write_text('sku,day,units\na,1,"169,83"\nb,1,"1.234,5"\nc,1,3\n')
    df = read_table(path, decimal=",")
    assert df["units"].tolist() == [169.83, 1234.5, 3.0]


@pytest.mark.parametrize(
    ("cell", "shown"),
    [
        ("\u0661\u0668", "'\u0661\u0668'"),  # 18 in Arabic-Indic digits
        ("\u0661\u0668,5", "'\u0661\u0668,5'"),
        ("18,5\u00a0", "'18,5\\xa0'"),  # a no-break space after it
        ("12 kg", "'12 kg'"),
    ],
)
def test_a_value_no_parser_reads_in_a_decimal_comma_column_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cell: str, shown: str
) -> None:
    """``\\d`` matched other scripts' digits: a decimal-comma column holding ``١٨`` was taken
    for numbers and pandas stopped at it ("cannot read history ...: Unable to parse string"),
    and once it was left as text the column was said to need --decimal , (given already)."""
    panel = _history(3, 16).assign(day=lambda d: d["day"].str[:2].astype(int))
    path = tmp_path / "panel.csv"
    _semicolon_decimal_commas(panel, path)
    lines = path.read_text().splitlines()
    head = lines[0].split(";")
    row = lines[1].split(";")
    row[head.index("units")] = cell
    path.write_text("\n".join([lines[0], ";".join(row), *lines[2:]]) + "\n")
    cols = ["--unit", "sku", "--time", "day", "--outcome", "units", "--treated", "treated"]
    for argv in (
        ["analyze", str(path), *cols, "--method", "dm", "--decimal", ","],
        _plan(tmp_path, path, "--decimal", ",", "--sep", ";"),
    ):
        code, _, err = _run(argv, capsys)
        line = _refusal(err)
        assert code == 2
        assert (
            f"column 'units' holds {shown}, which is not a number, beside numbers written like"
            in line
        )
        assert "--decimal" not in line


# --------------------------------------------------------------------------- probability
def test_probability_is_a_constant_or_a_column_and_the_error_says_what_to_type(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    panel = _history(3, 16).assign(day=lambda d: d["day"].str[:2].astype(int))
    path = tmp_path / "panel.csv"
    panel.assign(p=0.5).to_csv(path, index=False)
    cols = ["--unit", "sku", "--time", "day", "--outcome", "units", "--treated", "treated"]
    ht = ["analyze", str(path), *cols, "--method", "ht", "--json"]
    code, _, err = _run(ht, capsys)
    assert code == 2 and "--probability 0.5" in _refusal(err)
    code, constant, err = _run([*ht, "--probability", "0.5"], capsys)
    assert code == 0, err
    code, column, err = _run([*ht, "--probability", "p"], capsys)
    assert code == 0, err
    assert json.loads(constant)["effect"] == json.loads(column)["effect"]
    code, _, err = _run([*ht, "--probability", "1.5"], capsys)
    assert code == 2 and "strictly between 0 and 1" in _refusal(err)
    code, _, err = _run([*ht, "--probability", "prob"], capsys)
    line = _refusal(err)
    assert code == 2 and "not a column" in line and "--probability 0.5" in line


# --------------------------------------------------------------------------- methods
def test_every_method_is_in_the_help_and_in_the_unknown_method_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    every = {*registry.methods(), "demand", "elasticity", "spillover"}
    assert {"fe", "dm", "ht", "elasticity"} <= every
    code, out, _ = _run(["analyze", "--help"], capsys)
    assert code == 0
    help_words = set(out.replace(",", " ").replace("│", " ").split())
    assert every <= help_words, every - help_words
    path = tmp_path / "panel.csv"
    _history(3, 16).to_csv(path, index=False)
    cols = ["--unit", "sku", "--time", "day", "--outcome", "units", "--treated", "treated"]
    code, _, err = _run(["analyze", str(path), *cols, "--method", "nope"], capsys)
    line = _refusal(err)
    assert code == 2
    listed = set(line.split("choose one of ")[1].rstrip(".").split(", "))
    assert listed == every


def test_a_product_first_sold_after_the_first_day_names_launch_not_adding_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A transaction export of slow movers: one product sells first on day 3. Its days 1-2
    are outside its span (--missing zero fills from a product's first row), so a balanced
    estimator refuses; the sentence says how to give the span (--launch), not 'add the missing
    unit-periods', which the reader says it does."""
    rows = [(u, d, 1.0, w, "2025-03-01") for u, w in (("00001", 1), ("00002", 0), ("00003", 1),
            ("00004", 0)) for d in ("2025-03-01", "2025-03-02", "2025-03-03", "2025-03-04")]  # fmt: skip
    df = pd.DataFrame(rows, columns=["sku", "day", "units", "treated", "launch"])
    df = df[~((df["sku"] == "00004") & (df["day"] < "2025-03-03"))]
    path = tmp_path / "tx.csv"
    df.to_csv(path, index=False)
    cols = ["--unit", "sku", "--time", "day", "--outcome", "units", "--treated", "treated"]
    code, _, err = _run(["analyze", str(path), *cols, "--method", "dm"], capsys)
    line = [x for x in err.splitlines() if x.startswith("error: ")]
    assert code == 2 and len(line) == 1, err
    assert "'00004' from 2025-03-03" in line[0] and "--launch COL" in line[0]
    code, out, err = _run(["analyze", str(path), *cols, "--method", "dm", "--launch", "launch"],
                          capsys)  # fmt: skip
    assert code == 0, err
    import pricelab
    from analysis.errors import AnalysisError

    with pytest.raises(AnalysisError, match=r"'00004' from 2025-03-03.*launch=\"COLUMN\""):
        pricelab.analyze(df, "units", unit="sku", time="day", method="dm")


def test_text_far_down_a_number_column_is_one_sentence_without_pandas_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """pandas reads a long CSV in chunks (131,072 rows of five columns) and infers each alone:
    ``4 kg`` in the last rows made ``units`` numbers above and text below, and pandas'
    DtypeWarning ("Specify dtype option on import or set low_memory=False", with its file and
    line) was printed above the sentence that names the value."""
    n = 150_000
    units = [str(3 + i % 4) for i in range(n)]
    units[-3] = "4 kg"
    body = "".join(
        f"u{i % 500:03d},{1 + i // 500},{'A' if i % 500 < 250 else 'B'},{u},9.99\n"
        for i, u in enumerate(units)
    )
    path = tmp_path / "late_text.csv"
    path.write_text("sku,day,arm,units,price\n" + body)
    argv = ["analyze", str(path), "--unit", "sku", "--time", "day", "--arm", "arm"]
    code, _, err = _run(argv + ["--control", "A", "--outcome", "units", "--method", "dm"], capsys)
    assert code == 2
    assert _refusal(err) == (
        "error: column 'units' is not numeric: it has non-numeric values such as '4 kg'."
    )
