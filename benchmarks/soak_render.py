"""The soak's section of docs/operations.md, rendered from a saved report
(docs/figures/soak.json, written by ``benchmarks/soak.py --save``):

    .venv/bin/python -m benchmarks.soak --render
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

BEGIN, END = "<!-- soak:begin (benchmarks/soak.py --render) -->", "<!-- soak:end -->"


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
        + (f" (ingest capacity measured at the start {r['capacity_per_s']:,.0f}/s; "
           f"{c['capacity_share']:g} of it is {r['target_per_s']:,.0f}/s"
           + (f", capped at {c['max_rate']:,.0f}/s" if r["run_per_s"] < r["target_per_s"] else "")
           + ")" if r["capacity_per_s"] else "")
        + f", {r['duplicates']:,} sent twice, {r['junk']:,} junk ({r['dead_letters_read']:,} dead letters read).",
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
        "estimates_resumed": "after each fault, an estimate of every experiment estimated before it",
        "rss_flat": "worker RSS flat",
        "triggers_as_the_rule_says": "every undercut that met the trigger rule opened its product's window once; no other did",
        "alerts_as_expected": "the alerts that fired are the ones called for",
        "analysis_shared": "both analysis workers shared the looks (parts in Redis, estimates from each)",
    }
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
    lines += ["| worker slot | RSS slope (MB/min) | median RSS (MB) | growth over the run | processes |",
              "|---|---|---|---|---|"]  # fmt: skip
    for slot, s in sorted(report["rss"].items()):
        lines.append(f"| {slot} | {s['mb_per_min']:+.2f} | {s['median_mb']:.0f} | "
                     f"{s['growth_share']:+.1%} | {s['processes']} |")  # fmt: skip
    a = report["alerts"]
    lines += [
        "",
        f"Alerts (a real Prometheus, {a['rules_loaded']} rules of alerts.yml, {a['targets_scraped']} "
        f"targets scraped every 2 s): expected {', '.join(a['expected']) or 'none'}; fired "
        f"{', '.join(a['fired']) or 'none'}; went pending at some point: {', '.join(a['pending_seen']) or 'none'}. "
        "How long each measured condition held, as the soak saw it (wall seconds; missed flips: a count): "
        + ", ".join(f"{k} {v:.0f}" for k, v in a["measured"].items()) + ".",
        END,
    ]  # fmt: skip
    return "\n".join(lines)


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
        f"parts in Redis at the end; estimates published since each worker's last start: {by}."
    ]


def render_into(doc: Path, report: dict[str, Any]) -> None:
    text = doc.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{doc} has no soak section markers ({BEGIN} ... {END})")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    doc.write_text(head + render(report) + tail)
