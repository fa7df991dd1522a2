"""The catch-up memory probe's pure parts (benchmarks/probe_catchup_memory.py): reading the
worker's memory, a round's troughs, peak and retained step, when a backlog is caught up, the
sales it sends, and its ``--depth`` hook."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

from benchmarks._common import NOW, START
from benchmarks.probe_catchup_memory import (
    DEPTH_SITE,
    Leg,
    Marks,
    Sample,
    caught_up,
    extreme,
    parse_memtrace,
    parse_status,
    round_figures,
    sale,
    summary,
    within,
)
from streams.worker.sale_decoder import decode_sale

ROOT = Path(__file__).resolve().parents[3]
MB = 2**20


def test_memtrace_lines_are_read_with_the_moment_they_were_seen() -> None:
    lines = [
        json.dumps(
            {
                "pid": 1,
                "t": 3.0,
                "rss": 100,
                "anon": 60,
                "file": 40,
                "malloc_in_use": 7,
                "malloc_free": 1,
                "blocks": 500_000,
            }
        ),  # fmt: skip
        "",
        json.dumps(
            {
                "pid": 1,
                "t": 4.0,
                "rss": 110,
                "anon": 70,
                "blocks": 510_000,
                "malloc_in_use": None,
                "arenas": [[0, 1, 2]],
            }
        ),  # fmt: skip
    ]
    got = parse_memtrace(lines, 12.5)
    assert got == [Sample(12.5, 100, 60, 500_000, 7), Sample(12.5, 110, 70, 510_000, None)]


def test_proc_status_gives_rss_and_anon_in_bytes() -> None:
    text = "Name:\tpython\nVmPeak:\t  999 kB\nVmRSS:\t  2048 kB\nRssAnon:\t  1024 kB\nRssFile:\t 1024 kB\n"
    assert parse_status(text, 3.0) == Sample(3.0, rss=2048 * 1024, anon=1024 * 1024)


def test_extremes_skip_fields_a_sample_lacks() -> None:
    samples = [
        Sample(1.0, rss=10, anon=5),  # from /proc: no blocks
        Sample(2.0, rss=12, anon=4, blocks=300, malloc_in_use=9),
        Sample(3.0, rss=11, anon=6, blocks=200, malloc_in_use=None),
    ]
    assert extreme(samples, "min") == {"rss": 10, "anon": 4, "blocks": 200, "malloc_in_use": 9}
    assert extreme(samples, "max") == {"rss": 12, "anon": 6, "blocks": 300, "malloc_in_use": 9}
    assert extreme([Sample(1.0)], "max") == dict.fromkeys(
        ("rss", "anon", "blocks", "malloc_in_use")
    )
    assert [s.at for s in within(samples, 1.5, 3.0)] == [2.0, 3.0]


def _series() -> list[Sample]:
    """A worker at 100 MB anon / 500k blocks, a catch-up from 100 to 130 s rising to 140 MB and
    900k blocks, then 110 MB / 505k blocks; one early sample lower than any in the tail."""
    out = [Sample(5.0, rss=90 * MB, anon=90 * MB, blocks=450_000)]  # warm-up, outside the tail
    out += [
        Sample(float(t), rss=150 * MB, anon=100 * MB, blocks=500_000 + t) for t in range(70, 100)
    ]
    out += [Sample(float(t), rss=190 * MB, anon=140 * MB, blocks=900_000) for t in range(100, 131)]
    out += [Sample(float(t), rss=160 * MB, anon=110 * MB, blocks=505_000) for t in range(131, 196)]
    return out


def test_a_round_takes_troughs_over_the_tails_and_the_peak_over_the_catch_up() -> None:
    m = Marks(quiet_from=0.0, fault=100.0, resumed=120.0, caught_up=128.0, quiet_to=195.0)
    fig = round_figures(_series(), m, tail=30.0, settle=5.0)
    assert fig["before"] == {"rss": 150 * MB, "anon": 100 * MB, "blocks": 500_070,
                             "malloc_in_use": None}  # fmt: skip
    assert fig["peak"]["anon"] == 140 * MB and fig["peak"]["blocks"] == 900_000
    assert fig["after"]["anon"] == 110 * MB and fig["after"]["blocks"] == 505_000
    assert fig["step"] == {"rss": 10 * MB, "anon": 10 * MB, "blocks": 505_000 - 500_070,
                           "malloc_in_use": None}  # fmt: skip


def test_the_trough_after_leaves_out_the_catch_up_when_the_quiet_is_short() -> None:
    # a quiet of 10 s against a tail of 30: the trough after starts once the peak window ends
    m = Marks(quiet_from=0.0, fault=100.0, resumed=120.0, caught_up=125.0, quiet_to=140.0)
    fig = round_figures(_series(), m, tail=30.0, settle=5.0)
    assert fig["after"]["anon"] == 110 * MB  # not the 140 MB of 130 s


def test_caught_up_allows_the_last_seconds_sales_in_flight() -> None:
    assert caught_up(sent=300_000, counted=285_000, slack=15_000)
    assert not caught_up(sent=300_000, counted=284_999, slack=15_000)
    assert caught_up(sent=10, counted=10, slack=0)


def test_sales_are_distinct_valid_and_in_the_flipped_periods() -> None:
    rng = random.Random(1)
    seen = set()
    for n in range(500):
        product, body = sale("l1", n, rng, 3000)
        doc = json.loads(body)
        decoded = decode_sale(body)
        assert decoded.event_id == f"l1-{n}" and decoded.product == product == doc["product"]
        assert START <= decoded.occurred_at < NOW
        assert doc["revenue"] == doc["units"] * doc["unit_price"]
        assert 0 <= int(product[1:]) < 3000
        seen.add(decoded.event_id)
    assert len(seen) == 500


def test_the_summary_pools_the_legs_of_a_batch_size() -> None:
    def leg(size: int, steps: list[int]) -> Leg:
        rounds = [{"step": {"anon": s * MB}, "peak": {"blocks": 800_000}} for s in steps]
        return Leg(size, None, rounds=rounds)

    lines = summary([leg(2000, [8, 0]), leg(500, [2]), leg(2000, [4])])
    assert lines[0].startswith("batch 2000: anon step per round +8.0, +0.0, +4.0 MB (sum +12.0")
    assert "median +4.0" in lines[0] and lines[1].startswith("batch 500: anon step per round +2.0")


def test_the_depth_hook_sets_the_consumers_default_depth_and_keeps_the_trace(
    tmp_path: Path,
) -> None:
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join([str(DEPTH_SITE), str(ROOT)]),
        "PRICELAB_PROBE_SALES_DEPTH": "1",
        "PRICELAB_MEMTRACE_OUT": str(tmp_path / "trace.jsonl"),
    }
    code = (
        "import threading\n"
        "from streams.worker.consumer import BatchConsumer\n"
        "names = [t.name for t in threading.enumerate()]\n"
        "print(BatchConsumer.__init__.__kwdefaults__['depth'], 'memtrace' in names)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout.split()  # fmt: skip
    assert out == ["1", "True"]
