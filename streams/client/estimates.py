"""``pricelab estimates EXPERIMENT [--follow]``: the latest verdict and estimates, read from the
topic (a verdict is a message of its own there: ``kind: verdict``).

The estimates topic is read from the beginning until every partition has caught up: it has
delivered a message stamped at or after the moment reading began, or the broker has answered
its fetches for ``idle`` seconds without delivering anything new (timed on the broker's
answers, so a broker slow to answer delays the reader rather than cutting it short). It does
not stop at the partitions' end offsets, because the embedded broker (Tansu) reports a high
watermark that lags the data after batched writes (docs/broker.md): a reader that stops there
misses the last messages. And it does not wait for the whole topic to fall quiet, because a
running analysis worker publishes every cycle: a reader that waits for silence never returns
while the experiment runs. (The stamps are the producers' clocks: a producer whose clock runs
behind the reader's makes its partitions stop on the idle rule instead, and one whose clock
runs ahead may end a partition a little early.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from analysis.evidence import demand_reading
from analysis.verdict import latest
from controller.clock import Clock, WallClock
from controller.settings import Settings
from core.ports import EFFECT_UNITS, metric_name
from streams.errors import ServiceUnavailable, services_answer

#: what ``pricelab estimates`` opens on Kafka (``TopicSettings`` fields; no consumer group):
#: streams/cli/kafka_acl.py
KAFKA_READS = ("estimates",)
KAFKA_WRITES: tuple[str, ...] = ()

COLUMNS = (
    ("metric", "{}"),
    ("estimator", "{}"),
    ("as_of", "{}"),
    ("n_periods", "{}"),
    ("effect", "{:+.4g}"),
    ("se", "{:.4g}"),
    ("df", "{:.4g}"),
    ("ci_low", "{:+.4g}"),
    ("ci_high", "{:+.4g}"),
    ("cs_low", "{:+.4g}"),
    ("cs_high", "{:+.4g}"),
    ("pvalue", "{:.3g}"),
    ("control_mean", "{:.4g}"),
    ("relative_effect", "{:+.2%}"),
    ("relative_ci_low", "{:+.2%}"),
    ("relative_ci_high", "{:+.2%}"),
)


async def _consumer(settings: Settings) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(**settings.kafka.client_kwargs(), enable_auto_commit=False)  # type: ignore[arg-type]
    try:
        await consumer.start()
        topic = settings.topics.estimates
        await consumer._client.force_metadata_update()  # noqa: SLF001 - an unsubscribed topic
        parts = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or {0})]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
    except BaseException:
        await consumer.stop()
        raise
    return consumer


def _mine(record: Any, experiment: str | None) -> dict[str, Any] | None:
    """The record's estimate message, if it is one of ``experiment``'s (None: of any)."""
    try:
        doc = json.loads(record.value)
    except (TypeError, ValueError):
        return None
    if (
        isinstance(doc, dict)
        and "estimator" in doc
        and (experiment is None or doc.get("experiment") == experiment)
    ):
        return doc
    return None


async def all_estimates(
    settings: Settings,
    experiment: str | None,
    idle: float = 2.0,
    then: Callable[[list[dict[str, Any]]], Callable[[dict[str, Any]], None] | None] | None = None,
    stop: asyncio.Event | None = None,
) -> list[dict[str, Any]]:
    """Every estimate message of ``experiment`` so far: read until each partition has caught
    up with the moment reading began, or the broker has answered its fetches for ``idle``
    seconds without a new message (see the module docstring for why neither the end offsets nor silence of the whole topic will do).
    ``experiment`` None: every experiment's estimate messages (the console's one reader).

    With ``then``: it gets what was read and may return an ``emit`` callback; the same
    consumer then goes on from where it stopped and hands every new estimate to ``emit``
    until ``stop`` is set (``--follow``; checked at least once a second). Going on from the
    last message read, rather than seeking to the end offsets, means no estimate is shown
    twice or skipped.
    """
    async with services_answer(
        bootstrap_servers=settings.kafka.bootstrap_servers, settings=settings
    ):
        consumer = await _consumer(settings)
        out: list[dict[str, Any]] = []
        try:
            if consumer.partitions_for_topic(settings.topics.estimates):
                await _read_until_caught_up(
                    consumer, experiment, idle, out, broker=str(settings.kafka.bootstrap_servers)
                )  # else no such topic yet: nothing published, and no leader would answer
            emit = then(out) if then is not None else None
            while emit is not None and not (stop is not None and stop.is_set()):
                for doc in _docs(await consumer.getmany(timeout_ms=500), experiment):
                    emit(doc)
            return out
        finally:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(consumer.stop(), 10)


async def _read_until_caught_up(
    consumer: AIOKafkaConsumer,
    experiment: str | None,
    idle: float,
    out: list[dict[str, Any]],
    clock: Clock | None = None,
    stall: float | None = None,
    broker: str = "",
    pick: Callable[[Any], dict[str, Any] | None] | None = None,
    topic: str = "estimates",
) -> None:
    """Read into ``out`` until every assigned partition has caught up (module docstring).
    ``pick``: what to keep of a record (default: ``experiment``'s estimates); ``topic``: what
    the stall's sentence calls the topic (``pricelab dead-letters`` reads its topic so too).

    "Quiet" is measured on the broker's answers, not on the reader's waits: a partition ends
    on the idle rule when the broker has answered its fetches for ``idle`` seconds after the
    last message it delivered. aiokafka marks each partition's fetch answers
    (``last_poll_timestamp``, the client's clock when one arrived); the mark is read *before*
    each ``getmany``, which hands over every record that answer brought, so a partition never
    ends on an answer whose records are still in the client's buffer; the seconds are timed on
    the monotonic clock when a new mark is seen. A broker too busy to answer therefore delays
    the reader instead of cutting it short; one that answers no fetch of a pending partition
    for ``stall`` seconds (default: ten times ``idle``, at least 30 s) is a service that does
    not answer.
    """
    began_ms = (clock or WallClock()).now().timestamp() * 1000.0
    stall_s = max(30.0, 10.0 * idle) if stall is None else stall
    pending = set(consumer.assignment())
    mark: dict[Any, int] = {}  # the last answer mark seen per partition
    quiet_since: dict[Any, float] = {}  # monotonic: the last records, or the first answer
    progress = time.monotonic()
    while pending:
        answered = set()
        seen_at = time.monotonic()
        for tp in pending:
            m = consumer.last_poll_timestamp(tp)
            if m is not None and m != mark.get(tp):
                mark[tp] = m
                answered.add(tp)
        if answered:
            progress = seen_at
        batch = await consumer.getmany(timeout_ms=int(min(idle, 0.5) * 1000))
        if pick is None:
            out.extend(_docs(batch, experiment))
        else:
            out.extend(d for rs in batch.values() for r in rs if (d := pick(r)) is not None)
        now = time.monotonic()
        for tp in list(pending):
            records = batch.get(tp)
            if records:
                quiet_since[tp] = now
                if max(r.timestamp for r in records) >= began_ms:
                    pending.discard(tp)
            elif tp in answered:  # a new answer, seen before this getmany: nothing more
                quiet_since.setdefault(tp, seen_at)
                if seen_at - quiet_since[tp] >= idle:
                    pending.discard(tp)
        if pending and time.monotonic() - progress > stall_s:
            raise ServiceUnavailable(
                f"the Kafka broker{' at ' + broker if broker else ''} answered no fetch of the "
                f"{topic} topic for {stall_s:.0f} s"
            )


def _docs(batch: dict[Any, list[Any]], experiment: str | None) -> list[dict[str, Any]]:
    return [
        doc
        for records in batch.values()
        for r in records
        if (doc := _mine(r, experiment)) is not None
    ]


#: the order metrics are shown in (a v1 message, before metrics, measured units)
_METRIC_ORDER = {m: i for i, m in enumerate(("units", "revenue", "profit", "price", "elasticity"))}


def is_verdict(doc: dict[str, Any]) -> bool:
    """Whether a message of the estimates topic is a verdict (``kind: verdict``) rather
    than an estimate."""
    return doc.get("kind") == "verdict"


def is_demand(doc: dict[str, Any]) -> bool:
    """Whether a message of the estimates topic is a price ladder's demand curve (``kind:
    demand``)."""
    return doc.get("kind") == "demand"


def is_adaptive(doc: dict[str, Any]) -> bool:
    """Whether a message of the estimates topic is an adaptive ladder's look (``kind:
    adaptive``: its arms' means, best set and recorded probabilities per period)."""
    return doc.get("kind") == "adaptive"


def is_estimate(doc: dict[str, Any]) -> bool:
    """Whether a message of the estimates topic is an estimate (not a verdict, a demand
    curve or an adaptive ladder's look)."""
    return not (is_verdict(doc) or is_demand(doc) or is_adaptive(doc))


def latest_adaptive(docs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The adaptive ladder's look of the latest look among ``docs`` (None: none published)."""
    return latest([d for d in docs if is_adaptive(d)])


def allocation_table(doc: dict[str, Any]) -> tuple[list[str], list[tuple[int, list[float]]]]:
    """An adaptive look's allocation over time: the arms' names (spec order) and, per period
    recorded, its probabilities."""
    names = [str(a["arm"]) for a in doc.get("arms") or ()]
    rows = [
        (int(p["period"]), [float(x) for x in p["probabilities"]])
        for p in doc.get("allocation") or ()
    ]
    return names, rows


def render_adaptive(doc: dict[str, Any]) -> str:
    """An adaptive ladder's look as an analyst reads it: each arm's mean and its contrast with
    the control (with the simultaneous anytime-valid sequence), the best set, the
    allocation over time (the probabilities recorded for every period), and which methods
    are not published and why."""
    alpha = float(doc.get("alpha") or 0.05)
    lines = [
        f"ADAPTIVE LADDER (as of {doc.get('as_of')}): {doc.get('metric')} by "
        f"{str(doc.get('method', 'aipw')).upper()} on the recorded probabilities, "
        f"{doc.get('n_periods')} periods, carryover lag {doc.get('lag')}; contrasts with "
        f"{1 - alpha:.0%} simultaneous anytime-valid sequences"
    ]
    names, rows = allocation_table(doc)
    now = rows[-1][1] if rows else []
    for i, a in enumerate(doc.get("arms") or ()):
        share = f"  now {now[i]:.0%}" if i < len(now) else ""
        if a.get("control"):
            vs = "(control)"
        else:
            vs = (
                f"vs control {_cell(a.get('effect'), '{:+.4g}')} "
                f"[{_cell(a.get('cs_low'), '{:+.4g}')}, {_cell(a.get('cs_high'), '{:+.4g}')}]"
            )
        best = "  in the best set" if a.get("in_best_set") else ""
        lines.append(
            f"  {a['arm']:>12}  mean {_cell(a.get('mean'), '{:.4g}')} "
            f"(se {_cell(a.get('mean_se'), '{:.2g}')})  {vs}{best}{share}"
        )
    lines.append(
        f"  best set: {', '.join(doc.get('best_set') or ()) or '-'}; largest mean: "
        f"{doc.get('recommended')}"
    )
    if rows:
        width = max(6, *(len(n) for n in names))
        lines.append("  allocation by period: " + " ".join(n.rjust(width) for n in names))
        for period, probs in rows:
            lines.append(f"  {period:>20}: " + " ".join(f"{p:.1%}".rjust(width) for p in probs))
    if doc.get("note"):
        lines.append(f"  ! {doc['note']}")
    return "\n".join(lines)


def latest_demand(docs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The demand curve of the latest look among ``docs`` (None: none published)."""
    return latest([d for d in docs if is_demand(d)])


def demand_reading_of(doc: dict[str, Any], verdict: dict[str, Any] | None = None) -> dict[str, Any]:
    """How the demand message's recommended price reads beside ``verdict``
    (analysis.evidence); without one, the reading the worker published with the message (its
    look's verdict), else the reading of no verdict."""
    if verdict is None and isinstance(doc.get("reading"), dict):
        return dict(doc["reading"])
    return demand_reading(doc, verdict).to_dict()


def render_demand(doc: dict[str, Any], verdict: dict[str, Any] | None = None) -> str:
    """A demand message as an analyst reads it: each arm's point, the elasticity and the
    curvature test, and where the fitted profit curve peaks with its interval (and the edge
    flag), labelled as evidence beside ``verdict`` (:func:`demand_reading_of`): the verdict
    decides, and while it keeps running the price is where the evidence points."""

    def num(v: Any, fmt: str = "{:.4g}") -> str:
        return _cell(v, fmt)

    lines = [f"DEMAND CURVE (as of {doc.get('as_of')}), {doc.get('n_units')} products"]
    lines.append(
        f"  elasticity {num(doc.get('elasticity'), '{:+.3f}')} "
        f"[{num(doc.get('elasticity_ci_low'), '{:+.3f}')}, "
        f"{num(doc.get('elasticity_ci_high'), '{:+.3f}')}]; curvature p = "
        f"{num(doc.get('curvature_pvalue'), '{:.3g}')}"
    )
    for p in doc.get("points") or ():
        lines.append(
            f"  {p['arm']:>12}  price x{p['price_ratio']:.3f}  units x{num(p.get('units_ratio'))} "
            f"[{num(p.get('units_ratio_ci_low'))}, {num(p.get('units_ratio_ci_high'))}]  "
            f"profit/cell {num(p.get('profit_per_cell'))}"
        )
    if doc.get("optimal_price_ratio") is not None:
        r = demand_reading_of(doc, verdict)
        edge = " - AT THE EDGE of the tested range" if doc.get("at_range_edge") else ""
        shown = doc.get("identified") is not False

        def ci(key: str, fmt: str) -> str:
            if not shown:
                return " (no interval)"
            return f" [{num(doc.get(key + '_ci_low'), fmt)}, {num(doc.get(key + '_ci_high'), fmt)}]"

        lines.append(
            f"  {r.get('headline', '')}: the fitted profit curve peaks at "
            f"x{doc['optimal_price_ratio']:.3f}{ci('optimal_price_ratio', '{:.3f}')}{edge}; "
            f"profit change there against the control "
            f"{num(doc.get('profit_change_at_optimum'), '{:+.4g}')}"
            f"{ci('profit_change_at_optimum', '{:+.4g}')} per product-period"
        )
        lines.append(f"  {r.get('text', '')}")
    lines += [f"  ! {n}" for n in doc.get("notes") or ()]
    return "\n".join(lines)


def latest_verdict(docs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The verdict of the latest look among ``docs`` (None: none published yet): the one
    rule every reader follows (:func:`analysis.verdict.latest`)."""
    return latest([d for d in docs if is_verdict(d)])


_WORDS = {
    "ship": "SHIP",
    "do_not_ship": "DO NOT SHIP",
    "no_difference": "NO DIFFERENCE - KEEP THE CONTROL",
    "keep_running": "KEEP RUNNING",
}


def _pct(x: Any) -> str:
    return "-" if x is None else f"{100.0 * x:+.1f}%"


def render_verdict(doc: dict[str, Any]) -> str:
    """A verdict message as the lines an operator reads first: the word and its reason, the
    decision metric's anytime-valid figures, each guardrail, and the rule."""
    word = _WORDS.get(str(doc.get("verdict")), str(doc.get("verdict")))
    if doc.get("verdict") == "ship" and doc.get("arm"):  # k arms: which one
        word += f" arm {doc['arm']}"
    head = f"VERDICT after {doc.get('n_periods')} periods (as of {doc.get('as_of')}): {word}"
    if doc.get("verdict") == "keep_running":
        if doc.get("more_days") is not None:
            days = float(doc["more_days"])
            head += (
                f" - inconclusive: about {math.ceil(days)} more days needed for 80% power at "
                f"the MDE of {doc.get('mde_pct'):g}%"
                if days > 0
                else " - inconclusive"
            )
        else:
            head += " - inconclusive"
    lines = [head, f"  {doc.get('reason')}"]
    if doc.get("more_days_note"):
        lines.append(f"  {doc['more_days_note']}")
    rel = doc.get("relative_effect")
    figures = (
        f"{_pct(rel)} [{_pct(doc.get('relative_cs_low'))}, {_pct(doc.get('relative_cs_high'))}]"
        if rel is not None and doc.get("relative_cs_low") is not None
        else f"{_cell(doc.get('effect'), '{:+.4g}')} [{_cell(doc.get('cs_low'), '{:+.4g}')}, "
        f"{_cell(doc.get('cs_high'), '{:+.4g}')}] {EFFECT_UNITS.get(str(doc.get('metric')), '')}"
        + ("" if rel is None else f" ({_pct(rel)}; its relative interval is not bounded yet)")
    )
    lines.append(
        f"  decision metric {doc.get('metric')} ({doc.get('estimator')}): {figures}, "
        f"{1 - float(doc.get('alpha') or 0.05):.0%} anytime-valid"
    )
    for g in doc.get("guardrails") or ():
        whose = f"arm {g['arm']}: " if g.get("arm") else ""  # k arms: each arm's
        lines.append(
            f"  {whose}guardrail {g['metric']} not below -{g['max_drop_pct']:g}%: "
            f"{_pct(g.get('relative_effect'))} [{_pct(g.get('relative_cs_low'))}, "
            f"{_pct(g.get('relative_cs_high'))}] {g.get('status')}"
        )
    lines.append(f"  rule: {doc.get('rule')}")
    return "\n".join(lines)


def primary_estimators(docs: list[dict[str, Any]]) -> dict[tuple[str, str, str], str]:
    """(metric, segment, arm) -> the design's primary estimator of it: the first estimator
    the worker published at that metric's latest look (it publishes the design's estimators
    in order, so the first is the design's own choice, as the report's scorecard picks). An
    estimate said not identified is passed over, except the elasticity's, and except where
    no estimate of that metric is identified yet (its first estimator then shows why)."""
    first: dict[tuple[str, str, str], tuple[tuple[str, int], str]] = {}
    unidentified: dict[tuple[str, str, str], tuple[tuple[str, int], str]] = {}
    for doc in docs:
        if not is_estimate(doc):
            continue
        metric = metric_name(doc.get("metric"))
        key = (metric, doc.get("segment") or "", doc.get("arm") or "")
        # the look is its as_of; estimators count periods their own way at one look (a
        # crossover leaves washout periods out), so n_periods only orders looks without one
        as_of = str(doc.get("as_of") or "")
        look = (as_of, 0 if as_of else int(doc.get("n_periods") or 0))
        held = unidentified if doc.get("identified") is False and metric != "elasticity" else first
        if key not in held or look > held[key][0]:
            held[key] = (look, doc["estimator"])  # a later look: its first estimator leads
    return {key: estimator for key, (_, estimator) in (unidentified | first).items()}


def latest_of(
    docs: list[dict[str, Any]], *, primary_only: bool = False, lead: str | None = None
) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    """(metric, estimator, segment, arm) -> its latest estimate message (segment "" for the
    whole experiment; arm "" for treatment against control, else the arm a k-arm experiment's
    estimate compares with the control): the overall estimates first, then each segment's;
    within them by metric (``lead``, the decision metric, first), then arm, the primary
    estimator (:func:`primary_estimators`) before the others. ``primary_only`` keeps the
    primary estimator's alone. Verdicts and demand curves are not estimates
    (:func:`latest_verdict`, :func:`latest_demand`)."""
    latest = {
        (
            metric_name(doc.get("metric")),
            doc["estimator"],
            doc.get("segment") or "",
            doc.get("arm") or "",
        ): doc
        for doc in docs
        if is_estimate(doc)
    }
    primary = primary_estimators(docs)

    def is_primary(key: tuple[str, str, str, str]) -> bool:
        return primary.get((key[0], key[2], key[3])) == key[1]

    if primary_only:
        latest = {k: v for k, v in latest.items() if is_primary(k)}

    def order(key: tuple[str, str, str, str]) -> tuple[Any, ...]:
        metric, _, segment, arm = key
        rank = -1 if metric == lead else _METRIC_ORDER.get(metric, 9)
        return (segment != "", segment, rank, arm, not is_primary(key))

    return dict(sorted(latest.items(), key=lambda kv: order(kv[0])))


def _cell(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if fmt != "{}" and isinstance(value, int | float):
        return fmt.format(value)
    return str(value)


def render(rows: list[dict[str, Any]], as_json: bool = False) -> str:
    """A table of estimates (or JSON lines); with segment columns when any row has one, and
    the arm and its simultaneous interval when any row has an arm."""
    if as_json:
        return "\n".join(json.dumps(r) for r in rows)
    columns: tuple[tuple[str, str], ...] = COLUMNS
    if any(r.get("segment") for r in rows):
        columns = (("segment", "{}"), *COLUMNS, ("pvalue_bh", "{:.3g}"))
    if any(r.get("arm") for r in rows):  # a k-arm experiment: each arm against the control
        sim = (("sim_ci_low", "{:+.4g}"), ("sim_ci_high", "{:+.4g}"), ("sim_method", "{}"))
        columns = (("arm", "{}"), *columns, *sim)
    if any(r.get("identified") is False for r in rows):
        columns = (*columns, ("note", "{}"))
    table = [[name for name, _ in columns]]
    table += [[_cell(r.get(name), fmt) for name, fmt in columns] for r in rows]
    width = [max(len(row[i]) for row in table) for i in range(len(columns))]
    return "\n".join(
        "  ".join(c.rjust(w) for c, w in zip(row, width, strict=True)) for row in table
    )
