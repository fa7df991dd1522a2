"""The soak's pure parts (benchmarks/soak.py): its fault schedule, and every check and
statistic it makes of what it recorded. No process, broker or Redis here: the soak hands in
what it saw, so each check is tested on its own (tests/unit/project/test_soak_checks.py).

What each check takes:

- messages read from the assignments topic, in the order one partition delivered them (a
  product's messages share its partition): ``{"experiment", "product", "period", "seq"}``,
  and ``probability`` (the design's P(not control)) for the triggered experiment's checks;
- the undercuts the competitor-price source sent for the triggered experiment (first and last
  stamp, depth) and the trigger periods Redis recorded;
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
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from scipy.stats import t as student_t

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


def announcements(
    messages: Iterable[Mapping[str, Any]],
    products: Mapping[str, Sequence[str]],
    triggered: Collection[str],
) -> set[tuple[str, int, int]]:
    """The (experiment, period, seq) under which a trigger fire announced windows: in a
    triggered experiment a fire publishes its products' first window period under a seq of
    its own, ahead of that period's flip (the assignment contract), naming only the products
    it fired, each with the randomised window's design probability (above 0). A seq of a
    period that names every product is that period's flip. (A matched control's announcement
    has probability 0: it would count as a flip; the soak's rule has no matched controls.)"""
    named: dict[tuple[str, int, int], set[str]] = defaultdict(set)
    positive: dict[tuple[str, int, int], bool] = {}
    for m in messages:
        exp = str(m["experiment"])
        if exp not in triggered:
            continue
        key = (exp, int(m["period"]), int(m["seq"]))
        named[key].add(str(m["product"]))
        positive[key] = positive.get(key, True) and float(m.get("probability") or 0.0) > 0
    return {k for k, ps in named.items() if positive[k] and not set(products[k[0]]) <= ps}


def flip_problems(
    messages: Iterable[Mapping[str, Any]],
    products: Mapping[str, Sequence[str]],
    periods: Mapping[str, Sequence[int]],
    triggered: Collection[str] = (),
) -> list[str]:
    """Each boundary (experiment, period) in ``periods`` must have been flipped exactly once:
    its messages carry one ``seq`` (a redone flip repeats it) and name every product of the
    experiment. In the ``triggered`` experiments, a fire's announcement (:func:`announcements`)
    is no flip, and neither is an experiment's end or stop (its messages' ``status``, where
    given, is ``ended`` or ``stopped``: :func:`end_problems`). A sentence per boundary that
    was not."""
    messages = list(messages)
    announced = announcements(messages, products, triggered) if triggered else set()
    seqs: dict[tuple[str, int], set[int]] = defaultdict(set)
    seen: dict[tuple[str, int], set[str]] = defaultdict(set)
    for m in messages:
        if m.get("status") in FINAL_STATUSES:  # an end or a stop, no flip (end_problems)
            continue
        if announced and (str(m["experiment"]), int(m["period"]), int(m["seq"])) in announced:
            continue
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


#: the ``status`` of an assignment message that releases its product (no flip)
FINAL_STATUSES = frozenset({"ended", "stopped"})


def end_problems(
    messages: Iterable[Mapping[str, Any]],
    products: Mapping[str, Sequence[str]],
    ended: Collection[str],
) -> list[str]:
    """Each experiment in ``ended`` (its end passed) must have published its end: every one
    of its products has a message with ``status`` ``ended``, all under one ``seq``, and that
    ``seq`` is the highest of the experiment's for the product (the decision in force). A
    sentence per experiment that did not."""
    ends: dict[str, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    top: dict[tuple[str, str], int] = {}
    wanted = set(ended)
    for m in messages:
        exp = str(m["experiment"])
        if exp not in wanted:
            continue
        product, seq = str(m["product"]), int(m["seq"])
        top[(exp, product)] = max(top.get((exp, product), seq), seq)
        if m.get("status") == "ended":
            ends[exp][product].add(seq)
    out = []
    for exp in sorted(wanted):
        got = ends.get(exp, {})
        missing = [p for p in products[exp] if p not in got]
        if len(missing) == len(products[exp]):
            out.append(f"{exp}: its end passed, and no 'ended' message was read")
            continue
        if missing:
            out.append(f"{exp}: {len(missing)} products without an 'ended' message")
        seqs = {q for p in got for q in got[p]}
        if len(seqs) > 1:
            out.append(f"{exp}: its end published under {len(seqs)} seqs {sorted(seqs)}")
        later = sorted(p for p in got if top[(exp, p)] > max(got[p]))
        if later:
            out.append(f"{exp}: {len(later)} products have a message after their end "
                       f"(first {later[0]})")  # fmt: skip
    return out


def handover_problems(
    messages: Iterable[Mapping[str, Any]], generation: Mapping[str, tuple[int, int]]
) -> list[str]:
    """Products handed over from an ended experiment to its successor: ``generation`` maps an
    experiment to its (slot, generation), the successors of a slot sharing its products. In
    the order one partition delivered them (a product's messages share its partition), once
    a product's message of a later generation was read, none of an earlier one may follow:
    the old holder's last messages come first, so the compacted topic keeps the new
    holder's. A sentence per product where one did (the first such message)."""
    latest: dict[tuple[int, str], tuple[int, str]] = {}
    out = []
    told: set[tuple[int, str]] = set()
    for m in messages:
        exp = str(m["experiment"])
        if exp not in generation:
            continue
        slot, gen = generation[exp]
        key = (slot, str(m["product"]))
        seen = latest.get(key)
        if seen is None or gen >= seen[0]:
            latest[key] = (gen, exp)
        elif key not in told:
            told.add(key)
            out.append(f"{key[1]}: a message of {exp} (generation {gen}) after its successor "
                       f"{seen[1]}'s (generation {seen[0]})")  # fmt: skip
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


# ---------------------------------------------------------------------------- triggers
def rule_fires(
    undercuts: Mapping[str, tuple[float, datetime, datetime]],
    undercut_pct: float,
    sustained_minutes: float,
) -> dict[str, datetime]:
    """The products whose undercut, as sent, meets a trigger rule, and the instant it fires.
    ``undercuts``: per product, its depth (percent below our reference price), the stamp of
    its first event and of the last event sent while it held (the one that ended it
    included: an event at or after the fire instant reports the fire before it changes
    anything). It meets the rule when at least ``undercut_pct`` deep and that last event is
    at least ``sustained_minutes`` after the first; it fires at first + sustained."""
    sustain = timedelta(minutes=sustained_minutes)
    return {
        p: since + sustain
        for p, (depth, since, last) in undercuts.items()
        if depth >= undercut_pct and last - since >= sustain
    }


def trigger_problems(
    messages: Iterable[Mapping[str, Any]],
    experiment: str,
    products: Sequence[str],
    fires: Mapping[str, int],
    periods: Sequence[int],
    window_periods: int,
    recorded: Mapping[str, int] | None = None,
    unjudged: Collection[str] = (),
) -> list[str]:
    """One triggered experiment's triggers as a pricing system reading the assignments topic
    sees them. ``messages``: the topic's (with ``probability``; other experiments' are
    passed over); ``fires``: product ->
    the period the rule opens its window in (:func:`rule_fires`, the next period), for the
    products whose undercut met the rule; ``periods``: the boundaries the clock passed.

    A product in ``fires`` must have been announced once: one seq (a copy repeats it), for
    its trigger period; and the message in force (the highest seq) must be its randomised
    window's (probability above 0) in exactly the passed periods of its window, trigger
    period through ``window_periods`` on, and pending or ended (0) in every other. Any other
    product must never have been triggered: no announcement and no message with a
    probability above 0. ``recorded``: the trigger periods the controller saved in Redis,
    which must be the rule's. ``unjudged``: products left out (a fire whose window opens
    after the clock stopped)."""
    msgs = [m for m in messages if str(m["experiment"]) == experiment]
    everyone = list(products)
    announced = announcements(msgs, {experiment: everyone}, {experiment})
    ann: dict[str, set[tuple[int, int]]] = defaultdict(set)
    in_force: dict[tuple[str, int], tuple[int, float]] = {}
    positive: dict[str, set[int]] = defaultdict(set)
    for m in msgs:
        p, k, seq = str(m["product"]), int(m["period"]), int(m["seq"])
        prob = float(m.get("probability") or 0.0)
        if (experiment, k, seq) in announced:
            ann[p].add((k, seq))
        if prob > 0:
            positive[p].add(k)
        if (p, k) not in in_force or seq > in_force[(p, k)][0]:
            in_force[(p, k)] = (seq, prob)
    passed = set(periods)
    out = []
    for p in everyone:
        if p in unjudged:
            continue
        window = sorted(k for k in passed if in_force.get((p, k), (0, 0.0))[1] > 0)
        name = f"{experiment} {p}"
        if p in fires:
            k0 = fires[p]
            seqs = sorted({seq for _, seq in ann[p]})
            ks = sorted({k for k, _ in ann[p]})
            if not seqs:
                out.append(f"{name}: its undercut met the rule (window from period {k0}), "
                           "and no trigger was announced")  # fmt: skip
            elif len(seqs) > 1 or ks != [k0]:
                out.append(f"{name}: triggered {len(seqs)} times (periods {ks}, seq {seqs}); "
                           f"the rule calls for once, period {k0}")  # fmt: skip
            want = sorted(k for k in passed if k0 <= k < k0 + window_periods)
            if window != want:
                out.append(f"{name}: its window in force in periods {window}, "
                           f"the rule calls for {want}")  # fmt: skip
        elif ann[p] or positive[p]:
            out.append(f"{name}: triggered (window periods {sorted(positive[p])}, "
                       f"{len(ann[p])} announcements), its undercut did not meet the rule")  # fmt: skip
    if recorded is not None:
        want_rec = {p: k for p, k in fires.items() if p not in unjudged}
        got = {p: k for p, k in recorded.items() if p not in unjudged}
        if got != want_rec:
            extra = sorted(set(got) - set(want_rec))
            missing = sorted(set(want_rec) - set(got))
            moved = sorted(p for p in set(got) & set(want_rec) if got[p] != want_rec[p])
            out.append(f"Redis recorded triggers {len(got)}, the rule {len(want_rec)}: "
                       f"not due {extra}, missing {missing}, other period {moved}")  # fmt: skip
    return out


# ---------------------------------------------------------------------------- memory
#: the soak's samples of a process are averaged over blocks of this many seconds before a
#: slope is fitted (:func:`slopes`): RSS steps after a look or a fault (one every
#: ``fault_every`` = 3 minutes) and stays there a while, so samples seconds apart are not
#: independent draws, and 5-minute means are much nearer to it. Not all the way: in the runs of
#: 2026-11-29 (samples every 6 and 16 s) a controller's residuals had a lag-1 correlation of
#: 0.6-0.8 and kept 0.07-0.26 at 2-5 minutes, an analysis worker's 0.98 and 0.19 at 5 minutes;
#: on noise like that the 95% interval holds the true slope in about 79-91% of seeded runs (the
#: review of 805324a), against 93-95% on noise that forgets within a minute (the unit tests).
#: Longer blocks would leave an hour's run too few to judge
BLOCK_S = 300.0


def slopes(
    samples: Sequence[tuple[str, int, float, float]],
    settle: float = 30.0,
    scale: float = 1.0,
    block: float | None = None,
) -> dict[str, dict[str, float]]:
    """Per worker slot (a slot keeps its role across restarts), the slope over time of a
    measure sampled as ``(slot, pid, seconds, value)``, in ``value / scale`` per minute, with
    its noise.

    Each process's samples after its first ``settle`` seconds are averaged over consecutive
    blocks of ``block`` seconds (a last block that spans less than half of that is left out;
    None: each sample is a block of its own, as the troughs of :func:`troughs` are), and the
    slope is fitted to the blocks' means by least squares with one intercept per
    process (a restarted process starts lower, which is no trend). Its standard error
    (``per_min_se``) is least squares' own on those means, with a degree of freedom fewer per
    process, and the 95% interval takes Student's t on the rest (``df``). A process with
    fewer than two blocks adds nothing: over less than two blocks a slope cannot be told from
    the noise. Also the slot's median and largest value over all its samples, and the growth
    the slope implies over the samples' span as a share of that median (``growth_share``;
    ``growth_low`` and ``growth_high``: the 95% interval's ends)."""
    by_slot: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
    for slot, pid, t, v in samples:
        by_slot[slot].append((pid, t, v))
    out = {}
    for slot, rows in by_slot.items():
        first: dict[int, float] = {}
        for pid, t, _ in rows:
            first[pid] = min(first.get(pid, t), t)
        kept = [(pid, t, v) for pid, t, v in rows if t - first[pid] >= settle]
        xs, ys, fitted = [], [], 0
        for pid in sorted({p for p, _, _ in kept}):
            tt = np.array([t for p, t, _ in kept if p == pid])
            bt, bv = _block_means(
                tt, np.array([v for p, _, v in kept if p == pid], dtype=float) / scale, block
            )
            if len(bt) < 2:
                continue
            xs.append(bt - bt.mean())  # within each process: its own intercept
            ys.append(bv - bv.mean())
            fitted += len(tt)
        x = np.concatenate(xs) if xs else np.zeros(0)
        y = np.concatenate(ys) if ys else np.zeros(0)
        denom = float((x * x).sum())
        df = len(x) - len(xs) - 1
        slope = se = q = math.nan
        if denom > 0:
            b = float((x * y).sum() / denom)
            slope = b * 60
            if df > 0:
                r = y - b * x
                se = math.sqrt(float(r @ r) / df / denom) * 60
                q = float(student_t.ppf(0.975, df))
        values = np.array([v for _, _, v in rows], dtype=float) / scale
        span = (max(t for _, t, _ in rows) - min(t for _, t, _ in rows)) / 60
        median = float(np.median(values)) if len(values) else math.nan
        share = span / median if median else math.nan
        out[slot] = {
            "per_min": slope,
            "per_min_se": se,
            "df": float(max(df, 0)),
            "median": median,
            "max": float(values.max()) if len(values) else math.nan,
            "processes": len(first),
            "samples": fitted,
            "blocks": len(x),
            "growth_share": slope * share,
            "growth_low": (slope - q * se) * share,
            "growth_high": (slope + q * se) * share,
        }
    return out


def _block_means(
    t: np.ndarray, v: np.ndarray, block: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """The means of time and value over consecutive ``block``-second windows from the first
    sample; a last window whose samples span less than half a block is left out (a window
    before it is never cut short)."""
    order = np.argsort(t, kind="stable")
    t, v = t[order], v[order]
    if len(t) == 0 or block is None:
        return t, v
    k = ((t - t[0]) // block).astype(int)
    bt, bv = [], []
    for j in np.unique(k):
        m = k == j
        if j == k[-1] and t[-1] - (t[0] + j * block) < block / 2:
            continue
        bt.append(float(t[m].mean()))
        bv.append(float(v[m].mean()))
    return np.array(bt), np.array(bv)


def rss_slopes(
    samples: Sequence[tuple[str, int, float, int]], settle: float = 30.0
) -> dict[str, dict[str, float]]:
    """:func:`slopes` of RSS samples in bytes, in MB (``mb_per_min``, ``mb_per_min_se``,
    ``median_mb``, ``max_mb``)."""
    out = {}
    for slot, s in slopes(samples, settle, 2**20, BLOCK_S).items():
        out[slot] = {"mb_per_min": s["per_min"], "mb_per_min_se": s["per_min_se"],
                     "median_mb": s["median"], "max_mb": s["max"],
                     "processes": s["processes"], "samples": s["samples"],
                     "growth_share": s["growth_share"], "growth_low": s["growth_low"],
                     "growth_high": s["growth_high"]}  # fmt: skip
    return out


def troughs(
    samples: Sequence[tuple[str, int, float, float]], window: float = 60.0, cover: float = 0.75
) -> list[tuple[str, int, float, float]]:
    """Each process's lowest value in each ``window`` seconds of its life (from its first
    sample), at the window's start: live memory between looks, without the looks' peaks. A
    process's last window, when its samples span less than ``cover`` of it (the process was
    killed or the run ended), is left out: its lowest value may be a look's."""
    first: dict[tuple[str, int], float] = {}
    for slot, pid, t, _ in samples:
        first[(slot, pid)] = min(first.get((slot, pid), t), t)
    low: dict[tuple[str, int, int], float] = {}
    last: dict[tuple[str, int, int], float] = {}
    for slot, pid, t, v in samples:
        since = t - first[(slot, pid)]
        k = (slot, pid, int(since // window))
        low[k] = min(low.get(k, v), v)
        last[k] = max(last.get(k, 0.0), since - k[2] * window)
    final: dict[tuple[str, int], int] = {}
    for slot, pid, w in low:
        final[(slot, pid)] = max(final.get((slot, pid), w), w)
    return [
        (slot, pid, first[(slot, pid)] + w * window, v)
        for (slot, pid, w), v in sorted(low.items())
        if w < final[(slot, pid)] or last[(slot, pid, w)] >= cover * window - 1e-9
    ]


def _not_flat(
    found: Mapping[str, Mapping[str, float]], max_share: float
) -> Iterator[tuple[str, Mapping[str, float], float | None]]:
    """The slots whose measure is not flat: the growth its slope implies over the run is
    above ``max_share`` of the slot's median, or no slope was measured (None: nothing was
    sampled, a problem too)."""
    for slot, s in found.items():
        g = s["growth_share"]
        if not math.isfinite(g):
            yield slot, s, None
        elif g > max_share:
            yield slot, s, g


def growth_problems(
    found: Mapping[str, Mapping[str, float]],
    what: str,
    unit: str,
    max_share: float = 0.10,
) -> list[str]:
    """A measure (:func:`slopes`) is flat when its growth over the run stays within
    ``max_share`` of the slot's median."""
    return [
        f"{slot}: no trend of its {what} could be measured (no process with two samples to fit)"
        if g is None
        else f"{slot}: {what} rose {s['per_min']:+,.2f} {unit}/min, {g:.0%} of its median "
        f"{s['median']:,.0f} {unit} over the run (more than {max_share:.0%})"
        for slot, s, g in _not_flat(found, max_share)
    ]


def rss_not_judged(slopes: Mapping[str, Mapping[str, float]], max_share: float = 0.10) -> list[str]:
    """The slots whose RSS could not be judged: their processes lived too few of
    :func:`slopes`' blocks past the warm-up (``settle``) to give an interval (one degree of
    freedom at least: three blocks of one process, or two of each of two), as when a slot's
    worker is killed again before each new process has lived a generation, or what they did
    live was too noisy to tell: the 95% interval of their growth over the run holds both
    ``max_share`` and less. That is no evidence of a leak, nor of flatness: the report names them apart
    (:func:`rss_problems` does not count them on their own)."""
    return [
        slot
        for slot, s in slopes.items()
        if not (math.isfinite(s["growth_low"]) and math.isfinite(s["growth_high"]))
        or s["growth_low"] <= max_share < s["growth_high"]
    ]


def rss_problems(
    slopes: Mapping[str, Mapping[str, float]],
    max_share: float = 0.10,
    roles: Mapping[str, str] | None = None,
) -> list[str]:
    """RSS (:func:`rss_slopes`) is flat when the upper end of the 95% interval of its growth
    over the run is at most ``max_share`` of the slot's median RSS (a shrinking RSS is no
    problem), and grows when the lower end is above it. A slot in between, or not measured (:func:`rss_not_judged`), is not a problem on
    its own; a role (``roles``: slot -> role; without it, all slots are one role) none of whose
    slots was shown flat is."""
    unjudged = set(rss_not_judged(slopes, max_share))
    out = [
        f"{slot}: RSS grows {s['mb_per_min']:+.2f} MB/min, {s['growth_share']:.0%} of its "
        f"median {s['median_mb']:.0f} MB over the run (95% interval {s['growth_low']:.0%} to "
        f"{s['growth_high']:.0%}, above {max_share:.0%})"
        for slot, s in slopes.items()
        if math.isfinite(s["growth_low"]) and s["growth_low"] > max_share
    ]
    by_role: dict[str, list[str]] = defaultdict(list)
    for slot in slopes:
        by_role[(roles or {}).get(slot, "worker")].append(slot)
    for role, slots in sorted(by_role.items()):
        if all(slot in unjudged for slot in slots):
            out.append(
                f"no {role} worker's RSS was shown flat: none of {', '.join(sorted(slots))} "
                f"lived enough {BLOCK_S / 60:.0f}-minute blocks past its warm-up for an "
                f"interval of its growth, or had one below {max_share:.0%}"
            )
    return out


# ---------------------------------------------------------------------------- estimates
def resumed_after(
    faults: Sequence[Mapping[str, Any]],
    received: Mapping[str, Sequence[float]],
    ends: Mapping[str, float] | None = None,
) -> list[dict[str, Any]]:
    """For each fault (the wall times it ``began`` and was ``repaired``), the seconds from
    its repair until every experiment that had an estimate before it had one again, or None
    when one never did; ``without``: those experiments. An experiment with no estimate before
    a fault (its arms not comparable yet) is not waited for, nor one whose end (``ends``: the
    wall time its end passed) came by the repair: its final look may be out already, and an
    ended experiment is not looked at again."""
    ends = ends or {}
    out = []
    for f in faults:
        began, t0 = float(f["began"]), float(f["repaired"])
        waits: dict[str, float | None] = {}
        for exp, times in received.items():
            if not any(t < began for t in times) or ends.get(exp, math.inf) <= t0:
                continue
            after = [t for t in times if t >= t0]
            waits[exp] = min(after) - t0 if after else None
        missing = sorted(e for e, w in waits.items() if w is None)
        done = None if missing else max((w for w in waits.values() if w is not None), default=0.0)
        out.append({"kind": f["kind"], "seconds": done, "without": missing,
                    "experiments": len(waits)})  # fmt: skip
    return out


def exit_problems(own_exits: Mapping[str, Sequence[Sequence[float]]]) -> list[str]:
    """A worker that exited by itself, nobody having killed it: ``own_exits`` is each slot's
    ``[seconds, exit status]``. Every outage the soak causes is one a worker must ride out
    (Redis and Kafka are retried until they answer), so any such exit is a problem, even one
    that lost nothing (status 75: a batch left unacknowledged, read again after the restart)."""
    return [
        f"{slot} exited by itself with status {int(code)} at {t:.0f}s"
        for slot, exits in sorted(own_exits.items())
        for t, code in exits
    ]


def per_minute(times: Iterable[float], end: float) -> list[int]:
    """How many of ``times`` (seconds since the run began) fall in each whole minute of the
    run up to ``end``; a time at or past ``end`` (the settling at the end) counts in the last."""
    n = max(1, math.ceil(end / 60))
    out = [0] * n
    for t in times:
        if t >= 0:
            out[min(int(t // 60), n - 1)] += 1
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
    "PricelabConsoleDown": "no console answered (the soak runs none: the whole run)",
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

    def wall_when(self, sim: float) -> float:
        """The first wall time at which the clock was at ``sim`` or past it (inf: never; the
        clock only moves forward)."""
        i = bisect.bisect_left(self.sims, sim)
        return self.walls[i] if i < len(self.walls) else math.inf


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
    watched_until: Mapping[str, float] | None = None,
) -> float:
    """The longest stretch (wall seconds) over which PricelabEstimateStale's condition held
    for one series as the soak saw it: an (experiment, estimator) published once had no
    estimate for more than ``threshold`` *clock* seconds. Per series, as the rule's ``for:``
    counts (``max by (experiment, estimator)``): two series stale one after the other are two
    short stretches, not one long one. ``receipts``: per key (``experiment|series``), the
    wall times its estimates were read. ``watched_until``: per experiment, the wall time
    after which no worker exports its age (its final look is out), so it cannot be stale."""
    watched_until = watched_until or {}
    times = [float(t) for t in range(int(until) + 1)]
    clock = [history.at(t) for t in times]  # the clock at each second, once for every series
    longest = 0.0
    for key, v in receipts.items():
        if not v:
            continue
        keyed = sorted(v)
        read = [history.at(r) for r in keyed]  # the clock when each estimate was read
        watched = watched_until.get(key.split("|", 1)[0], math.inf)
        flags = []
        for t, now in zip(times, clock, strict=True):
            i = bisect.bisect_right(keyed, t)
            flags.append(bool(i) and t <= watched and now - read[i - 1] > threshold)
        longest = max(longest, longest_run(times, flags, 1.0))
    return longest
