"""The soak's section of docs/operations.md, rendered from a saved report
(docs/figures/soak.json, written by ``benchmarks/soak.py --save``):

    .venv/bin/python -m benchmarks.soak --render
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

BEGIN, END = "<!-- soak:begin (benchmarks/soak.py --render) -->", "<!-- soak:end -->"


def _left_out(judged: Mapping[str, Any]) -> str:
    """Which minutes of each process the RSS check leaves out, in words."""
    analysis, controller = judged["warmup_s"] / 60, judged.get("controller_warmup_s")
    if controller is None or abs(controller / 60 - analysis) < 0.05:
        said = f"each process's first {analysis:.0f} minutes left out"
    else:
        said = (
            f"each analysis process's first {analysis:.0f} minutes and each controller's first "
            f"{controller / 60:.1f} left out"
        )
    unjudged = judged.get("not_judged")
    if judged.get("blocks_s"):  # judged on block means, with an interval
        said += f"; slopes fitted to {judged['blocks_s'] / 60:.0f}-minute means"
    if unjudged and judged.get("blocks_s"):
        said += (
            "; not judged, too few means for an interval or an interval holding both 10% and "
            f"less: {', '.join(unjudged)}"
        )
    elif unjudged:  # every process of these slots died before its warm-up ended
        said += f"; not judged, no process lived past its warm-up: {', '.join(unjudged)}"
    return said


def _interval(s: Mapping[str, Any]) -> str:
    """The 95% interval of a judged slope's growth, where the report has one."""
    low, high = s.get("growth_low"), s.get("growth_high")
    if low is None or high is None or low != low or high != high:  # NaN: not judged
        return ""
    return f", 95% interval {low:+.1%} to {high:+.1%}"


def render(report: dict[str, Any]) -> str:
    """The figures of a saved soak as the section's body in docs/operations.md."""
    c, r = report["config"], report["rate"]
    lines = [
        BEGIN,
        f"Last saved run: `.venv/bin/python -m benchmarks.soak --minutes {c['minutes']:g} "
        f"--seed {c['seed']} --save` ({report['machine']}; load {report['load_at_end'][0]:.1f} at its end).",
        "",
        f"- **{report['wall_seconds'] / 60:.1f} minutes** of wall time, **{report['simulated']['days']:.1f} "
        f"simulated days** ({report['simulated']['start'][:10]} on), {len(report['experiments'])} experiments "
        f"({', '.join(sorted({e['design'] for e in report['experiments']}))}; periods of "
        f"{', '.join(f'{h:g}' for h in sorted({e['period_hours'] for e in report['experiments']}))} hours; "
        f"{sum(e['arms'] > 2 for e in report['experiments'])} with more than two arms), "
        f"{sum(e['boundaries'] for e in report['experiments']):,} boundaries.",
        f"- Sales: {r['distinct']:,} distinct at {r['achieved_per_s']:,.0f}/s"
        + (f" (ingest capacity measured at the start {r['capacity_per_s']:,.0f}/s"
           + (f", the median of {', '.join(f'{m:,.0f}' for m in r['capacity_measures_per_s'])}"
              if len(r.get("capacity_measures_per_s", ())) > 1 else "")
           + "; "
           f"{c['capacity_share']:g} of it is {r['target_per_s']:,.0f}/s"
           + (f", capped at {c['max_rate']:,.0f}/s" if r["run_per_s"] < r["target_per_s"] else "")
           + ")" if r["capacity_per_s"] else "")
        + f", {r['duplicates']:,} sent twice, {r['junk']:,} junk ({r['dead_letters_read']:,} dead letters read).",
        *_generations(report),
        *_triggers(report),
        *_sharding(report),
        f"- {len(report['faults'])} faults: "
        + "; ".join(f"{f['kind']} at {f['began']:.0f} s ({'verified' if f['verified'] else 'NOT verified'})"
                    for f in report["faults"]) + ".",
        "",
        "| check | result |",
        "|---|---|",
    ]  # fmt: skip
    names = {
        "faults_verified": "every fault happened (pid gone, PING again, port closed and open)",
        "waits_in_time": "every wait of the soak ended in time (settling, quiesce)",
        "every_sale_counted_once": "every sale counted exactly once",
        "no_seq_backwards": "no `seq` went backwards on the assignments topic",
        "every_boundary_flipped_once": "every boundary flipped exactly once",
        "handed_over": "every ended experiment published its end, last; its successor created over its products, whose messages came after the old holder's",
        "estimates_resumed": "after each fault, an estimate of every experiment estimated before it (and not ended by its repair)",
        "rss_flat": "controller RSS flat (an analysis worker's RSS keeps its largest look's peak: reported below, its live memory judged)",
        "live_memory_flat": "every worker's live memory flat: malloc bytes in use and interpreter blocks between looks",
        "triggers_as_the_rule_says": "every undercut that met the trigger rule opened its product's window once; no other did",
        "alerts_as_expected": "the alerts that fired are the ones called for",
        "analysis_shared": "both analysis workers shared the looks (parts in Redis, estimates from each)",
        "no_exit_nobody_caused": "no worker exited by itself (each outage ridden out)",
    }
    if "live_memory_flat" not in report["problems"]:  # saved before the live memory was judged
        names["rss_flat"] = "worker RSS flat"
    judged = report.get("rss_judged")
    if judged and judged["judged"]:
        names["rss_flat"] = (
            f"every worker's RSS flat after its warm-up ({_left_out(judged)})"
            if judged.get("workers") == "every"
            else "every worker's RSS flat (an analysis worker's after its warm-up: each "
            f"process's first {judged['warmup_s'] / 60:.0f} minutes left out)"
        )
    for key, label in names.items():
        if key not in report["problems"]:
            continue
        probs = report["problems"][key]
        lines.append(
            f"| {label} | {'**pass**' if not probs else 'FAIL: ' + '; '.join(probs)[:300]} |"
        )
    waits = [
        f"{x['kind']} {x['seconds']:.0f} s" for x in report["resumed"] if x["seconds"] is not None
    ]
    lines += [
        "",
        "Estimates after each fault (until every experiment had one): " + ", ".join(waits) + ".",
        "",
    ]
    live = report.get("live_memory")
    if live is None:  # a report saved before the live memory was sampled
        lines += ["| worker slot | RSS slope (MB/min) | median RSS (MB) | growth over the run | processes |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for slot, s in sorted(report["rss"].items()):
            lines.append(f"| {slot} | {s['mb_per_min']:+.2f} | {s['median_mb']:.0f} | "
                         f"{s['growth_share']:+.1%} | {s['processes']} |")  # fmt: skip
    else:
        lines += ["Memory per worker slot (slopes per minute fitted with one intercept per process; "
                  "growth: what the slope implies over the run, as a share of the median; live "
                  "memory: each minute's trough, between looks):",
                  "",
                  "| worker slot | processes | RSS (MB) median, max | RSS slope, growth | malloc in use (MB) median, slope, growth | malloc held at most (MB) | interpreter blocks (thousands) median, slope, growth |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for slot, s in sorted(report["rss"].items()):
            m = live["malloc_in_use_mb"].get(slot)
            b = live["python_kblocks"].get(slot)
            held = live["malloc_held_max_mb"].get(slot)
            cells = [
                slot,
                str(s["processes"]),
                f"{s['median_mb']:.0f}, {s['max_mb']:.0f}",
                f"{s['mb_per_min']:+.2f} MB, {s['growth_share']:+.1%}",
                f"{m['median']:.0f}, {m['per_min']:+.2f} MB, {m['growth_share']:+.1%}" if m else "not sampled",
                f"{held:.0f}" if held is not None else "not sampled",
                f"{b['median']:,.0f}, {b['per_min']:+,.1f}, {b['growth_share']:+.1%}" if b else "not sampled",
            ]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
        if judged:
            whose = "workers'" if judged.get("workers") == "every" else "analysis workers'"
            lines += ["", f"The {whose} RSS as {'judged' if judged['judged'] else 'it would be judged'} "
                      f"({_left_out(judged)}): "
                      + "; ".join(f"{slot} {s['mb_per_min']:+.2f} MB/min, {s['growth_share']:+.1%} of its "
                                  f"median {s['median_mb']:.0f} MB over the run{_interval(s)} ({s['samples']} samples, "
                                  f"{s['processes']} processes)"
                                  for slot, s in sorted(judged["slopes"].items())) + "."]  # fmt: skip
        gcs = live.get("gc_full") or {}
        done = [f"{n} {v[0]:.0f}" + (f" ({v[1] * 1000:.0f} ms each)" if v[0] else "")
                for n, v in sorted(gcs.items()) if v]  # fmt: skip
        if done:
            lines += ["", "Full garbage collections (every 60 s) since each worker's last start, and their mean time: "
                      + ", ".join(done) + "."]  # fmt: skip
    per_min = report.get("estimates_per_minute")
    if per_min:
        lines += [
            "",
            "Estimates read per wall minute: " + ", ".join(f"{n:,}" for n in per_min) + ".",
        ]
    a = report["alerts"]
    lines += [
        "",
        f"Alerts (a real Prometheus, {a['rules_loaded']} rules of alerts.yml, {a['targets_scraped']} "
        f"targets scraped every 2 s): expected {', '.join(a['expected']) or 'none'}; fired "
        f"{', '.join(a['fired']) or 'none'}; went pending at some point: {', '.join(a['pending_seen']) or 'none'}. "
        "How long each measured condition held, as the soak saw it (wall seconds; missed flips: a count): "
        + ", ".join(f"{k} {v:.0f}" for k, v in a["measured"].items()) + ".",
        *_stale(a),
        END,
    ]  # fmt: skip
    return "\n".join(lines)


def _stale(alerts: dict[str, Any]) -> list[str]:
    """The series stale longest, one by one (a report saved before they were named has none)."""
    rows = alerts.get("stale_longest")
    if not rows:
        return []
    told = "; ".join(
        f"{r['key'].replace('|', ' ')} {r['held']:.0f} s" + (
            f" (largest age a worker exported {r['max_age_exported'] / 3600:.1f} clock hours)"
            if r.get("max_age_exported") is not None else " (no worker exported its age)")
        for r in rows
    )  # fmt: skip
    return [
        "",
        f"Series stale longest (wall seconds over 3 clock hours, one series at a time): {told}.",
    ]


def _generations(report: dict[str, Any]) -> list[str]:
    """The generations' line (a report saved before they ran has none)."""
    g = report.get("generations")
    if not g or not g["experiment_days"]:
        return []
    hand = g["handovers"]
    waits = [h["created"] - h["ended_seen"] for h in hand if h["ended_seen"] is not None]
    tries = sum(h["tries"] for h in hand)
    return [
        f"- Generations: each slot's experiments last {g['experiment_days']} to "
        f"{g['experiment_days'] + 2} simulated days, one after another over the slot's products; "
        f"{g['ended']} ended, {len(hand)} successors created through the commands topic "
        f"({tries} creates tried"
        + (
            f", the slowest {max(waits):.0f} s after its predecessor was seen ended"
            if waits
            else ""
        )
        + f"); experiments per slot: {', '.join(str(n) for n in g['per_slot'])}."
    ]


def _triggers(report: dict[str, Any]) -> list[str]:
    """The triggered experiment's line (a report saved before it ran has none)."""
    t = report.get("triggers")
    if not t:
        return []
    kinds = ", ".join(f"{n} {k}" for k, n in t["undercuts"].items())
    return [
        f"- Triggers ({t['experiment']}): {t['competitor_events']:,} competitor prices sent; "
        f"undercuts {kinds}; {t['fires_due']} fires due with their window begun "
        f"({len(t['unjudged'])} more after the clock stopped), {t['recorded']} recorded in "
        f"Redis, {t['stale']} events stale."
    ]


def _sharding(report: dict[str, Any]) -> list[str]:
    """How the analysis workers shared the looks (a report saved before it ran has none)."""
    sh = report.get("sharding")
    if not sh or not sh["shards"]:
        return []
    by = ", ".join(f"{n} {v:,.0f}" if v is not None else f"{n} not answering"
                   for n, v in sorted(sh["published_by"].items()))  # fmt: skip
    return [
        f"- Analysis sharded: {sh['shards']} shards, chunks of {sh['chunk_products']} products "
        f"(every experiment's look spread over both analysis workers); {sh['parts_in_redis']:,} "
        f"parts in Redis at the end; estimates published since each worker's last start: {by}"
        + (
            f"; the shard topic had {sh['topic_partitions']} partitions at the end"
            if sh.get("topic_partitions") is not None
            else ""
        )
        + "."
    ]


def render_into(doc: Path, report: dict[str, Any]) -> None:
    text = doc.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{doc} has no soak section markers ({BEGIN} ... {END})")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    doc.write_text(head + render(report) + tail)
