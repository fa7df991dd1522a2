"""Exclusion windows get a sale status (paused/stopped), never the operator's reason text."""

from __future__ import annotations

import math

from controller.sales import _status_windows


def _doc(start: int, end: int | None, reason: str) -> dict[str, object]:
    return {"start_ms": start, "end_ms": end, "reason": reason}


def test_operator_text_never_becomes_a_status():
    docs = [_doc(100, 200, "price war | urgent\\n"), _doc(300, None, "paused by operator")]
    got = _status_windows(docs, "paused")
    assert {w.reason for w in got} == {"paused"}
    assert [(w.start_ms, w.end_ms) for w in sorted(got, key=lambda w: w.start_ms)] == [
        (100, 200),
        (300, math.inf),
    ]


def test_the_last_open_window_of_a_stopped_experiment_is_the_stop():
    docs = [_doc(100, 200, "a"), _doc(300, None, "paused first"), _doc(400, None, "guardrail")]
    got = _status_windows(docs, "stopped")
    labels = {w.start_ms: w.reason for w in got}
    assert labels == {100: "paused", 300: "paused", 400: "stopped"}
    assert got[0].reason == "stopped"  # matched first: a sale after the stop is 'stopped'
