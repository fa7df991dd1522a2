"""The soak's pure parts (benchmarks/soak.py): its fault schedule, and every check and
statistic it makes of what it recorded. No process, broker or Redis here: the soak hands in
what it saw, so each check is tested on its own (tests/unit/project/test_soak_checks.py).

What each check takes:

- messages read from the assignments topic, in the order one partition delivered them (a
  product's messages share its partition): ``{"experiment", "product", "period", "seq"}``;
- what the soak sent and what Redis counted, per experiment (events and units);
- RSS samples ``(slot, pid, seconds, bytes)`` of every worker process;
- the faults with the wall times at which they began and were repaired, and the estimates
  received after them;
- the alert rules (deploy/prometheus/alerts.yml), the longest stretch each rule's condition
  held as the soak measured it itself, and what a real Prometheus said fired.
"""

from __future__ import annotations

import bisect
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: the faults the soak injects (issue #42, item 5)
FAULT_KINDS = (
    "kill9-controller",
    "kill9-analysis",
    "redis-restart",
    "broker-restart",
    "redis-pause",
)


@dataclass(frozen=True)
class Fault:
    at: float  # seconds after the soak's start at which it is due
    kind: str


def fault_schedule(
    seed: int,
    seconds: float,
    every: float,
    warmup: float,
    kinds: Sequence[str] | None = None,
) -> list[Fault]:
    """One fault every ``every`` seconds (jittered by up to a fifth) from ``warmup`` until
    ``seconds`` (the last at least ``every`` before the end, so that its recovery is seen).
    The kinds are drawn by a generator seeded with ``seed``, :data:`FAULT_KINDS` shuffled
    afresh for every five faults, so that any five in a row hold one of each; with ``kinds``,
    they are taken in that order instead (cycling), and the seed only jitters their times."""
    rng = np.random.default_rng(seed)
    out: list[Fault] = []
    t = warmup
    i = 0
    order: list[str] = []
    while t + every <= seconds:
        jitter = float(rng.uniform(-0.2, 0.2)) * every
        if not order:
            order = [FAULT_KINDS[j] for j in rng.permutation(len(FAULT_KINDS))]
        drawn = order.pop(0)
        kind = kinds[i % len(kinds)] if kinds else drawn
        out.append(Fault(at=max(warmup, t + jitter), kind=kind))
        t += every
        i += 1
    return out


# ---------------------------------------------------------------------------- the topic
def seq_regressions(messages: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every message whose ``seq`` is lower than the one before it for the same experiment and
    product, in the order read (a repeat of the same ``seq``, a flip redone, is no regression)."""
    last: dict[tuple[str, str], int] = {}
    out = []
    for m in messages:
        key = (str(m["experiment"]), str(m["product"]))
        seq = int(m["seq"])
        prev = last.get(key)
        if prev is not None and seq < prev:
            out.append({"experiment": key[0], "product": key[1], "seq": seq, "after": prev})
        last[key] = seq if prev is None else max(prev, seq)
    return out


def flip_problems(
    messages: Iterable[Mapping[str, Any]],
    products: Mapping[str, Sequence[str]],
    periods: Mapping[str, Sequence[int]],
) -> list[str]:
    """Each boundary (experiment, period) in ``periods`` must have been flipped exactly once:
    its messages carry one ``seq`` (a redone flip repeats it) and name every product of the
    experiment. A sentence per boundary that was not."""
    seqs: dict[tuple[str, int], set[int]] = defaultdict(set)
    seen: dict[tuple[str, int], set[str]] = defaultdict(set)
    for m in messages:
        key = (str(m["experiment"]), int(m["period"]))
        seqs[key].add(int(m["seq"]))
        seen[key].add(str(m["product"]))
    out = []
    for exp, ks in periods.items():
        want = set(products[exp])
        for k in ks:
            if not seqs.get((exp, k)):
                out.append(f"{exp} period {k}: never flipped")
                continue
            if len(seqs[(exp, k)]) > 1:
                out.append(f"{exp} period {k}: flipped {len(seqs[(exp, k)])} times "
                           f"(seq {sorted(seqs[(exp, k)])})")  # fmt: skip
            missing = want - seen[(exp, k)]
            if missing:
                out.append(f"{exp} period {k}: {len(missing)} products without an assignment")
    return out


def count_problems(
    sent: Mapping[str, tuple[int, int]], totals: Mapping[str, Mapping[str, int]]
) -> list[str]:
    """Every distinct sale counted exactly once: per experiment, the events and units Redis
    counted under any status (ok, head, washout, ...; a duplicate adds nothing, and a sale
    refused as late is counted nowhere) must equal the distinct sales sent and their units."""
    out = []
    for exp, (events, units) in sent.items():
        t = totals.get(exp, {})
        got_e = sum(v for k, v in t.items() if k.startswith("events:"))
        got_u = sum(v for k, v in t.items() if k.startswith("units:"))
        if (got_e, got_u) != (events, units):
            out.append(f"{exp}: sent {events} sales ({units} units), counted {got_e} ({got_u})")
    return out


# ---------------------------------------------------------------------------- memory
def rss_slopes(
    samples: Sequence[tuple[str, int, float, int]], settle: float = 30.0
) -> dict[str, dict[str, float]]:
    """Per worker slot (a slot keeps its role across restarts), the slope of RSS over time in
    MB per minute: least squares with one intercept per process (a restarted process starts
    lower, which is no trend), over each process's samples after its first ``settle``
    seconds. Also the slot's median RSS and the growth the slope implies over the samples'
    span, as a share of that median."""
    by_slot: dict[str, list[tuple[int, float, int]]] = defaultdict(list)
    for slot, pid, t, rss in samples:
        by_slot[slot].append((pid, t, rss))
    out = {}
    for slot, rows in by_slot.items():
        first: dict[int, float] = {}
        for pid, t, _ in rows:
            first[pid] = min(first.get(pid, t), t)
        kept = [(pid, t, rss) for pid, t, rss in rows if t - first[pid] >= settle]
        xs, ys = [], []
        for pid in {p for p, _, _ in kept}:
            tt = np.array([t for p, t, _ in kept if p == pid])
            rr = np.array([r for p, _, r in kept if p == pid], dtype=float) / 2**20
            if len(tt) < 2:
                continue
            xs.append(tt - tt.mean())  # within each process: its own intercept
            ys.append(rr - rr.mean())
        x = np.concatenate(xs) if xs else np.zeros(0)
        y = np.concatenate(ys) if ys else np.zeros(0)
        denom = float((x * x).sum())
        slope = float((x * y).sum() / denom) * 60 if denom > 0 else math.nan
        all_rss = np.array([r for _, _, r in rows], dtype=float) / 2**20
        span = (max(t for _, t, _ in rows) - min(t for _, t, _ in rows)) / 60
        median = float(np.median(all_rss)) if len(all_rss) else math.nan
        out[slot] = {
            "mb_per_min": slope,
            "median_mb": median,
            "max_mb": float(all_rss.max()) if len(all_rss) else math.nan,
            "processes": len(first),
            "samples": len(kept),
            "growth_share": slope * span / median if median and math.isfinite(slope) else math.nan,
        }
    return out


def rss_problems(slopes: Mapping[str, Mapping[str, float]], max_share: float = 0.10) -> list[str]:
    """RSS is flat when the growth its slope implies over the run stays within ``max_share``
    of the slot's median RSS (no slope measured is a problem too: nothing was sampled)."""
    out = []
    for slot, s in slopes.items():
        g = s["growth_share"]
        if not math.isfinite(g):
            out.append(f"{slot}: no RSS trend could be measured ({s['samples']} samples)")
        elif g > max_share:
            out.append(
                f"{slot}: RSS grows {s['mb_per_min']:+.2f} MB/min, {g:.0%} of its median "
                f"{s['median_mb']:.0f} MB over the run (more than {max_share:.0%})"
            )
    return out


# ---------------------------------------------------------------------------- estimates
def resumed_after(
    faults: Sequence[Mapping[str, Any]], received: Mapping[str, Sequence[float]]
) -> list[dict[str, Any]]:
    """For each fault (the wall times it ``began`` and was ``repaired``), the seconds from
    its repair until every experiment that had an estimate before it had one again, or None
    when one never did; ``without``: those experiments. An experiment with no estimate before
    a fault (its arms not comparable yet) is not waited for."""
    out = []
    for f in faults:
        began, t0 = float(f["began"]), float(f["repaired"])
        waits: dict[str, float | None] = {}
        for exp, times in received.items():
            if not any(t < began for t in times):
                continue
            after = [t for t in times if t >= t0]
            waits[exp] = min(after) - t0 if after else None
        missing = sorted(e for e, w in waits.items() if w is None)
        done = None if missing else max((w for w in waits.values() if w is not None), default=0.0)
        out.append({"kind": f["kind"], "seconds": done, "without": missing,
                    "experiments": len(waits)})  # fmt: skip
    return out


# ---------------------------------------------------------------------------- alerts
_DURATION = re.compile(r"^(\d+)([smh])$")


def duration_seconds(text: str | None) -> float:
    """A Prometheus ``for:`` (``2m``, ``30s``, ``1h``; none: 0)."""
    if not text:
        return 0.0
    m = _DURATION.match(str(text).strip())
    if m is None:
        raise ValueError(f"unsupported duration {text!r}")
    return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600}[m.group(2)]


def rule_waits(rules_doc: Mapping[str, Any]) -> dict[str, float]:
    """alert name -> its ``for:`` in seconds, from an alerts.yml document."""
    return {
        r["alert"]: duration_seconds(r.get("for"))
        for g in rules_doc["groups"]
        for r in g["rules"]
        if "alert" in r
    }


#: what the soak measures of each rule's condition itself (independent of Prometheus): the
#: longest stretch, in wall seconds, over which it held
MEASURED = {
    "PricelabControllerDown": "no controller worker answered",
    "PricelabAnalysisDown": "no analysis worker answered",
    "PricelabWorkerNotReady": "a worker's /ready did not answer 200",
    "PricelabMissedFlips": "missed flips recorded in Redis (a count, not seconds)",
    "PricelabLateFlip": "p99 of the flips' lateness in clock seconds over 15 min above 60",
    "PricelabEstimateStale": "an estimator's last estimate more than 3 clock hours old",
}


def expected_alerts(
    waits: Mapping[str, float], held: Mapping[str, float], slack: float
) -> dict[str, bool]:
    """Per rule, whether it must have fired: its condition held (``held``, seconds) for at
    least its ``for:`` plus ``slack`` (scrape and evaluation intervals). A rule without a
    ``for:`` (a counter's increase) must fire once its condition held at all; a rule whose
    condition the soak does not measure must stay silent (the soak injects nothing it
    exists for)."""
    out = {}
    for name, wait in waits.items():
        h = held.get(name, 0.0)
        out[name] = h > 0 if wait == 0 else h >= wait + slack
    return out


def alert_problems(expected: Mapping[str, bool], fired: Iterable[str]) -> list[str]:
    fired = set(fired)
    out = []
    for name, want in sorted(expected.items()):
        if want and name not in fired:
            out.append(f"{name}: its condition held past its 'for:', and it did not fire")
        if not want and name in fired:
            out.append(f"{name}: fired, and no fault held its condition past its 'for:'")
    for name in sorted(fired - set(expected)):
        out.append(f"{name}: fired, and is no rule of alerts.yml")
    return out


def longest_run(times: Sequence[float], flags: Sequence[bool], step: float) -> float:
    """The longest stretch of consecutive True samples, in seconds (a sample stands for
    ``step`` seconds: one alone is ``step`` long)."""
    best = cur = 0.0
    start = None
    for t, f in zip(times, flags, strict=True):
        if f:
            start = t if start is None else start
            cur = t - start + step
            best = max(best, cur)
        else:
            start = None
    return best


# ---------------------------------------------------------------------------- clock-time rules
class ClockHistory:
    """The simulated clock (epoch seconds) as the soak set it, from ``(wall, sim)`` pairs in
    wall order; :meth:`at` is the last value set at or before a wall time (the first value
    before any)."""

    def __init__(self, history: Sequence[tuple[float, float]]) -> None:
        self.walls = [w for w, _ in history]
        self.sims = [x for _, x in history]

    def at(self, t: float) -> float:
        i = bisect.bisect_right(self.walls, t) - 1
        return self.sims[max(i, 0)]


def late_flip_held(
    flips: Sequence[tuple[float, float]],
    history: ClockHistory,
    until: float,
    threshold: float = 60.0,
    window: float = 900.0,
) -> float:
    """The longest stretch (wall seconds) over which PricelabLateFlip's condition held as the
    soak saw it: the 99th percentile of the flips' lateness in *clock* seconds (the simulated
    clock when the flip was read from the topic, less its boundary) over the trailing
    ``window`` above ``threshold``. ``flips``: (boundary as simulated epoch seconds, wall time
    the flip was first read)."""
    late = sorted((seen, history.at(seen) - boundary) for boundary, seen in flips)
    times, flags = [], []
    t = 0.0
    while t <= until:
        recent = [x for s, x in late if t - window < s <= t]
        flags.append(bool(recent) and float(np.percentile(recent, 99)) > threshold)
        times.append(t)
        t += 1.0
    return longest_run(times, flags, 1.0)


def stale_estimate_held(
    receipts: Mapping[str, Sequence[float]],
    history: ClockHistory,
    until: float,
    threshold: float = 3 * 3600.0,
) -> float:
    """The longest stretch (wall seconds) over which PricelabEstimateStale's condition held as
    the soak saw it: some (experiment, estimator) published once had no estimate for more
    than ``threshold`` *clock* seconds. ``receipts``: per key, the wall times its estimates
    were read."""
    times, flags = [], []
    keyed = [sorted(v) for v in receipts.values() if v]
    t = 0.0
    while t <= until:
        now = history.at(t)
        stale = False
        for v in keyed:
            i = bisect.bisect_right(v, t)
            if i and now - history.at(v[i - 1]) > threshold:
                stale = True
                break
        flags.append(stale)
        times.append(t)
        t += 1.0
    return longest_run(times, flags, 1.0)
