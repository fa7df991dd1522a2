"""``pricelab analyze --by COL``: one estimate per segment with Benjamini-Hochberg p-values."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from streams.cli import main

EFFECTS = {"audio": 0.0, "cameras": 0.0, "phones": 4.0, "tv": 1.0}


def _panel() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    rows = []
    for s, (segment, effect) in enumerate(EFFECTS.items()):
        for i in range(30):
            for t in range(20):
                w = int(rng.random() < 0.5)
                y = 50 + 3 * s + rng.normal(0, 2) + effect * w
                rows.append({"sku": f"{segment}-{i}", "day": t, "units": y, "treated": w,
                             "category": segment})  # fmt: skip
    return pd.DataFrame(rows)


def _run(tmp_path, capsys, *extra: str, df: pd.DataFrame | None = None) -> tuple[int, str, str]:
    path = tmp_path / "panel.csv"
    (_panel() if df is None else df).to_csv(path, index=False)
    argv = ["analyze", str(path), "--unit", "sku", "--time", "day", "--outcome", "units"]
    argv += ["--treated", "treated", "--method", "dm", *extra]
    with pytest.raises(SystemExit) as done:
        main(argv)
    out = capsys.readouterr()
    return int(done.value.code or 0), out.out, out.err


def test_each_segment_gets_its_own_effect_and_an_adjusted_p_value(tmp_path, capsys) -> None:
    code, out, err = _run(tmp_path, capsys, "--by", "category", "--json")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["segment"] for r in rows] == list(EFFECTS)
    for r in rows:
        # 600 cells, noise SD 2: the estimate's SD is about 0.17
        assert r["effect"] == pytest.approx(EFFECTS[r["segment"]], abs=0.6)
        assert r["n_units"] == 30
    # Benjamini-Hochberg by hand: sort, m p_(k) / k, running minimum from the largest
    p = np.array([r["pvalue"] for r in rows])
    order = np.argsort(p)
    m = len(p)
    adj_sorted = np.minimum.accumulate((p[order] * m / np.arange(1, m + 1))[::-1])[::-1]
    expected = np.empty(m)
    expected[order] = np.minimum(adj_sorted, 1.0)
    assert [r["pvalue_bh"] for r in rows] == pytest.approx(list(expected))
    assert all(r["pvalue_bh"] >= r["pvalue"] for r in rows)
    by = {r["segment"]: r for r in rows}
    assert by["phones"]["pvalue_bh"] < 1e-6 and by["audio"]["pvalue_bh"] > 0.05


def test_the_table_shows_raw_and_adjusted_p_values(tmp_path, capsys) -> None:
    code, out, err = _run(tmp_path, capsys, "--by", "category")
    assert code == 0, err
    header = out.splitlines()[0].split()
    assert header == [
        "segment",
        "effect",
        "se",
        "ci_low",
        "ci_high",
        "pvalue",
        "pvalue_bh",
        "n_units",
    ]
    assert [line.split()[0] for line in out.splitlines()[1:5]] == list(EFFECTS)


def test_a_segment_must_be_a_set_of_units(tmp_path, capsys) -> None:
    df = _panel()
    df.loc[df["day"] == 3, "category"] = "mixed"
    code, _, err = _run(tmp_path, capsys, "--by", "category", df=df)
    assert code == 2
    assert (
        err.startswith("error: Segment column 'category' varies within unit")
        and err.count("\n") == 1
    )
    code, _, err = _run(tmp_path, capsys, "--by", "brand")
    assert code == 2 and "['brand'] not found" in err


def test_a_segment_that_cannot_be_estimated_is_not_one_of_the_tests(tmp_path, capsys) -> None:
    df = _panel()
    # a one-product segment, and a segment that only covers days 10-19 (a later launch)
    df.loc[df["sku"] == "tv-0", "category"] = "solo"
    df = df[~((df["category"] == "cameras") & (df["day"] < 10))]
    code, out, err = _run(tmp_path, capsys, "--by", "category", "--json", df=df)
    assert code == 0, err
    rows = {r["segment"]: r for r in map(json.loads, out.splitlines())}
    assert rows["solo"]["error"] and rows["solo"]["pvalue_bh"] is None
    assert rows["cameras"]["error"] == "" and rows["cameras"]["n_periods"] == 10
    assert len({tuple(sorted(r)) for r in rows.values()}) == 1  # the same keys in every object
    estimated = [r for r in rows.values() if not r["error"]]
    m = len(estimated)  # 4 tests, not 5
    smallest = min(estimated, key=lambda r: r["pvalue"])
    assert smallest["pvalue_bh"] == pytest.approx(min(1.0, smallest["pvalue"] * m))


def test_no_segment_estimable_is_one_sentence_and_exit_2(tmp_path, capsys) -> None:
    df = _panel().assign(category=lambda d: d["sku"])  # every product its own segment
    code, _, err = _run(tmp_path, capsys, "--by", "category", df=df)
    assert code == 2 and err.startswith("error: no segment could be estimated")
    assert err.count("\n") == 1


def test_a_segment_named_na_is_a_segment_not_a_blank(tmp_path, capsys) -> None:
    """A region ``NA`` (North America) beside ``EU``: pandas reads ``NA`` as missing, and
    ``--by region`` refused the file, saying the column had blank values."""
    df = _panel()
    df = df[df["category"].isin(["phones", "tv"])]
    df = df.assign(category=df["category"].map({"phones": "NA", "tv": "EU"}))
    code, out, err = _run(tmp_path, capsys, "--by", "category", "--json", df=df)
    assert code == 0, err
    rows = {r["segment"]: r for r in map(json.loads, out.splitlines())}
    assert rows["NA"]["effect"] == pytest.approx(4.0, abs=0.6)
    assert rows["EU"]["effect"] == pytest.approx(1.0, abs=0.6)


@pytest.mark.parametrize("as_json", [True, False])
def test_a_numeric_segment_column_prints_and_sorts_as_numbers(
    tmp_path, capsys, as_json: bool
) -> None:
    """Segments numbered 1, 2 and 10 (a price band, a store number): read as text so that a
    region ``NA`` stays a name, they printed as "1" in ``--json`` and sorted 1, 10, 2."""
    numbered = {"audio": 10, "cameras": 2, "phones": 1, "tv": 20}
    df = _panel().assign(category=lambda d: d["category"].map(numbered))
    code, out, err = _run(tmp_path, capsys, "--by", "category", *(["--json"] * as_json), df=df)
    assert code == 0, err
    if as_json:
        rows = [json.loads(line) for line in out.splitlines()]
        assert [r["segment"] for r in rows] == [1, 2, 10, 20]
        assert rows[0]["effect"] == pytest.approx(EFFECTS["phones"], abs=0.6)
    else:
        assert [line.split()[0] for line in out.splitlines()[1:5]] == ["1", "2", "10", "20"]


def test_segments_with_leading_zeros_keep_them(tmp_path, capsys) -> None:
    """Store numbers written 0042 are labels: read as numbers they would print as 42."""
    stores = {"audio": "0042", "cameras": "0007", "phones": "0100", "tv": "0013"}
    df = _panel().assign(category=lambda d: d["category"].map(stores))
    code, out, err = _run(tmp_path, capsys, "--by", "category", "--json", df=df)
    assert code == 0, err
    rows = {r["segment"]: r for r in map(json.loads, out.splitlines())}
    assert set(rows) == set(stores.values())
    assert rows["0100"]["effect"] == pytest.approx(EFFECTS["phones"], abs=0.6)
