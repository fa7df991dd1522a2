"""`pricelab estimates`: the latest message per estimator and segment, shown as a table."""

from __future__ import annotations

from streams.estimates_cli import latest_of, render


def _doc(estimator: str, effect: float, segment: str | None = None) -> dict[str, object]:
    doc: dict[str, object] = {"estimator": estimator, "effect": effect, "se": 1.0}
    if segment is not None:
        doc |= {"segment": segment, "pvalue_bh": 0.04}
    return doc


def test_segments_do_not_overwrite_the_whole_experiments_estimate() -> None:
    docs = [
        _doc("dm", 1.0),
        _doc("dm", 5.0, "shoes"),
        _doc("ht", 2.0),
        _doc("dm", 7.0, "bags"),
        _doc("dm", 1.5),  # a later look of the whole experiment
    ]
    latest = latest_of(docs)
    assert [(k, d["effect"]) for k, d in latest.items()] == [
        (("dm", ""), 1.5),
        (("ht", ""), 2.0),
        (("dm", "bags"), 7.0),
        (("dm", "shoes"), 5.0),
    ]
    lines = render(list(latest.values())).splitlines()
    assert lines[0].split()[0] == "segment" and lines[0].split()[-1] == "pvalue_bh"
    assert lines[1].split()[:2] == ["-", "dm"] and lines[3].split()[:2] == ["bags", "dm"]
    assert lines[3].split()[-1] == "0.04"


def test_no_segment_column_without_segments() -> None:
    header = render([_doc("dm", 1.0)]).splitlines()[0].split()
    assert header[0] == "estimator" and "segment" not in header
