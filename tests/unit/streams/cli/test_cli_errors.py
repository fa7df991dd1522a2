"""Every subcommand answers a mistake with one sentence and exit status 2, never a traceback.

The sweep runs the real entry point (``streams.cli.main``) in-process, with the broker and
Redis pointed at ports where nothing listens.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from streams.cli import app, main

ROOT = Path(__file__).resolve().parents[4]
GOOD = ROOT / "docs" / "examples" / "random-days.yaml"
TRIGGERED = ROOT / "docs" / "examples" / "triggered.yaml"


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again: nothing listens there


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    monkeypatch.setenv("PRICELAB_KAFKA__BOOTSTRAP_SERVERS", f"127.0.0.1:{_dead_port()}")
    monkeypatch.setenv("PRICELAB_REDIS__URL", f"redis://:hunter2@127.0.0.1:{_dead_port()}/0")
    monkeypatch.setenv("PRICELAB_START_TIMEOUT", "PT1S")  # a worker gives up at once
    bad_spec = tmp_path / "bad.yaml"
    bad_spec.write_text(GOOD.read_text().replace("washout: PT2H", "washout: P3D"))
    misspelt = tmp_path / "misspelt.yaml"
    misspelt.write_text(GOOD.read_text().replace("treatment_policy", "treatmnt_policy"))
    not_yaml = tmp_path / "broken.yaml"
    not_yaml.write_text("id: x\nproducts: [a\n  b: c\n")
    panel = tmp_path / "panel.csv"
    panel.write_text(
        "product,period,units,treated,probability\n"
        + "".join(f"p{i},{k},{10 + i + k},{(i + k) % 2},0.5\n" for i in range(4) for k in range(4))
    )
    text = tmp_path / "text.csv"
    text.write_text(panel.read_text().replace(",10,", ",ten,"))
    no_treated = tmp_path / "no_treated.csv"
    no_treated.write_text(panel.read_text().replace("treated", "arm"))
    market = tmp_path / "market.yaml"
    market.write_text("n_prodcts: 20\n")
    not_json = tmp_path / "graph.json"
    not_json.write_text("{not json")
    plan_spec = tmp_path / "plan.yaml"
    plan_spec.write_text(
        "id: plan\ndesign: random-days\nproducts: [p0, p1, p2, p3]\ntreatment_policy: a\n"
        "control_policy: b\nstart: 2026-03-02T00:00:00+00:00\nend: 2026-03-05T00:00:00+00:00\n"
    )
    neg_cost = tmp_path / "neg_cost.yaml"
    neg_cost.write_text(plan_spec.read_text() + "unit_costs: {p0: 3.5, p1: -1.0}\n")
    nan_cost = tmp_path / "nan_cost.yaml"
    nan_cost.write_text(plan_spec.read_text() + "unit_costs: {p0: .nan}\n")
    stray_cost = tmp_path / "stray_cost.yaml"
    stray_cost.write_text(plan_spec.read_text() + "unit_costs: {p0: 3.5, q9: 2.0}\n")
    classes_spec = tmp_path / "classes.yaml"
    classes_spec.write_text(
        plan_spec.read_text()
        .replace("design: random-days", "design: cluster")
        .replace("products: [p0, p1, p2, p3]", "clusters: {c1: [x0, x1], c2: [x2, x3]}")
    )
    block = tmp_path / "block.csv"  # a block design HPTE can fit: p0-p9 treated from period 3
    block.write_text(
        "product,period,units,treated,size\n"
        + "".join(f"p{i},{k},{10 + i + k + (i * 7 + k * 3) % 5 + (k >= 3) * (i < 10)},"
                  f"{int(k >= 3 and i < 10)},{i % 3}\n" for i in range(60) for k in range(6))
    )  # fmt: skip
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("id: caf\xe9\n".encode("latin-1"))
    graph = tmp_path / "subs.json"
    graph.write_text(
        '{"directed": false, "multigraph": false, "graph": {}, "nodes": [{"id": "p0"}, '
        '{"id": "p1"}], "links": [{"source": "p0", "target": "p1", "weight": 1.0}]}'
    )
    other_graph = tmp_path / "other.json"
    other_graph.write_text(graph.read_text().replace('"p', '"q'))
    return {
        "graph": graph, "other_graph": other_graph,
        "plan_spec": plan_spec, "classes_spec": classes_spec, "latin1": latin1,
        "neg_cost": neg_cost, "nan_cost": nan_cost, "stray_cost": stray_cost,
        "bad_spec": bad_spec, "not_yaml": not_yaml, "misspelt": misspelt, "panel": panel, "text": text,
        "no_treated": no_treated, "block": block,
        "market": market, "not_json": not_json, "out": tmp_path / "out",
    }  # fmt: skip


CASES: list[tuple[str, list[str], str]] = [
    # (id, argv with {placeholders}, what the sentence must name)
    ("create-missing", ["experiment", "create", "nope.yaml"], "nope.yaml: no such file"),
    ("create-bad-spec", ["experiment", "create", "{bad_spec}"], "washout"),
    ("create-not-yaml", ["experiment", "create", "{not_yaml}"], "not valid YAML"),
    ("create-misspelt", ["experiment", "create", "{misspelt}"],
     "treatment_policy: is required, and 'treatmnt_policy' is not a known spec field"),
    ("create-no-broker", ["experiment", "create", str(GOOD)], "Kafka broker at 127.0.0.1"),
    ("pause-no-broker", ["experiment", "pause", "x", "--reason", "r"], "does not answer"),
    ("pause-no-reason", ["experiment", "pause", "x"], "a pause needs --reason"),
    ("stop-no-broker", ["experiment", "stop", "x", "--reason", "r"], "does not answer"),
    ("stop-no-reason", ["experiment", "stop", "x", "--reason", " "], "a stop needs --reason"),
    ("stop-bad-actor", ["experiment", "stop", "x", "--reason", "r", "--as", "a b"],
     "--as: 'a b' is not an actor"),
    ("freeze-no-offset", ["experiment", "freeze", "--all", "--start", "2026-01-01", "--end", "x",
                          "--reason", "r"], "UTC offset"),
    ("freeze-backwards", ["experiment", "freeze", "--all", "--start", "2026-01-02T00:00:00Z",
                          "--end", "2026-01-01T00:00:00Z", "--reason", "r"], "end"),
    ("freeze-no-reason", ["experiment", "freeze", "--all", "--start", "2026-01-01T00:00:00Z",
                          "--end", "2026-01-02T00:00:00Z"], "a freeze needs --reason"),
    ("freeze-no-broker", ["experiment", "freeze", "--all", "--start", "2026-01-01T00:00:00Z",
                          "--end", "2026-01-02T00:00:00Z", "--reason", "r"], "does not answer"),
    ("freeze-names-nothing", ["experiment", "freeze", "--start", "now", "--end", "+P1D",
                              "--reason", "r"],
     "a freeze names what it freezes: --experiment ID (repeatable), or --all to freeze every "
     "experiment"),
    ("freeze-all-and-one", ["experiment", "freeze", "--all", "--experiment", "x", "--start",
                            "now", "--end", "+P1D", "--reason", "r"], "not both"),
    ("history-no-broker", ["experiment", "history", "x"], "does not answer"),
    ("health-no-redis", ["health", "x"], "Redis at 127.0.0.1"),
    ("list-no-redis", ["experiment", "list"], "Redis at 127.0.0.1"),
    ("worker-no-broker", ["worker", "--role", "controller"],
     "Kafka broker at 127.0.0.1"),
    ("freezes-no-redis", ["experiment", "freezes"], "Redis at 127.0.0.1"),
    ("unfreeze-no-broker", ["experiment", "unfreeze", "f1"], "does not answer"),
    ("decide-no-broker", ["experiment", "decide", "x", "--ship", "b", "--reason", "r"],
     "does not answer"),
    ("decide-no-arm", ["experiment", "decide", "x", "--reason", "r"],
     "give --ship ARM or --keep-control"),
    ("decide-both", ["experiment", "decide", "x", "--ship", "b", "--keep-control",
                     "--reason", "r"], "give --ship ARM or --keep-control"),
    ("decide-no-reason", ["experiment", "decide", "x", "--keep-control"],
     "a decision needs --reason"),
    ("comment-no-broker", ["experiment", "comment", "x", "a note"], "does not answer"),
    ("comment-no-text", ["experiment", "comment", "x", "  "], "a comment needs its text"),
    ("comment-too-long", ["experiment", "comment", "x", "n" * 501],
     "a comment is at most 500 characters, not 501"),
    ("draft-bad-spec", ["experiment", "draft", "{bad_spec}"], "washout"),
    ("draft-not-yaml", ["experiment", "draft", "{not_yaml}"], "not valid YAML"),
    ("draft-no-broker", ["experiment", "draft", str(GOOD)], "Kafka broker at 127.0.0.1"),
    ("drafts-no-redis", ["experiment", "drafts"], "Redis at 127.0.0.1"),
    ("discard-no-reason", ["experiment", "discard", "x"], "a discard needs --reason"),
    ("discard-no-broker", ["experiment", "discard", "x", "--reason", "r"], "does not answer"),
    ("decide-bad-arm", ["experiment", "decide", "x", "--ship", "a b", "--reason", "r"],
     "is not an arm's name"),
    ("show-no-redis", ["experiment", "show", "x"], "Redis at 127.0.0.1"),
    ("assignments-no-redis", ["assignments", "P0001"], "Redis at 127.0.0.1"),
    ("estimates-no-broker", ["estimates", "x"], "does not answer"),
    ("dead-letters-no-broker", ["dead-letters"], "does not answer"),
    ("dead-letters-replay-unchosen", ["dead-letters", "--replay"],
     "--replay needs --reason or --offset"),
    ("export-no-redis", ["panel", "export", "x", "--out", "{out}/p.csv"], "Redis at"),
    ("export-bad-suffix", ["panel", "export", "x", "--out", "{out}/p.txt"], ".csv or .parquet"),
    ("topics-no-broker", ["topics"], "does not answer"),
    ("schedule-missing", ["schedule", "nope.yaml"], "nope.yaml"),
    ("schedule-bad-spec", ["schedule", "{bad_spec}"], "washout"),
    ("schedule-unknown-trigger", ["schedule", str(TRIGGERED), "--trigger", "nosuch=3"], "nosuch"),
    ("schedule-trigger-outside", ["schedule", str(TRIGGERED), "--trigger", "tv-a=99"], "outside"),
    ("schedule-window-outside", ["schedule", str(GOOD), "--start", "2020-01-01", "--end",
                                 "2020-01-05"], "outside"),
    ("schedule-bad-date", ["schedule", str(GOOD), "--start", "soon"], "soon"),
    ("schedule-day-first-date", ["schedule", str(GOOD), "--start", "01/12/2026"],
     "Invalid value for --start: '01/12/2026' is not an ISO 8601 date"),
    ("analyze-missing", ["analyze", "nope.csv", "--unit", "product", "--time", "period",
                         "--outcome", "units", "--treated", "treated", "--method", "dm"], "nope.csv"),
    ("analyze-no-column", ["analyze", "{panel}", "--unit", "product", "--time", "period",
                           "--outcome", "revenue", "--treated", "treated", "--method", "dm"], "revenue"),
    ("analyze-text-outcome", ["analyze", "{text}", "--unit", "product", "--time", "period",
                              "--outcome", "units", "--treated", "treated", "--method", "dm"],
     "non-numeric"),
    ("analyze-alpha", ["analyze", "{panel}", "--unit", "product", "--time", "period", "--outcome",
                       "units", "--treated", "treated", "--method", "dm", "--alpha", "2"], "alpha"),
    ("analyze-by-missing", ["analyze", "{panel}", "--unit", "product", "--time", "period",
                            "--outcome", "units", "--treated", "treated", "--method", "dm",
                            "--by", "brand"], "brand"),
    ("analyze-method", ["analyze", "{panel}", "--unit", "product", "--time", "period", "--outcome",
                        "units", "--treated", "treated", "--method", "nosuch"], "nosuch"),
    ("analyze-unit-effects-method", ["analyze", "{panel}", "--unit", "product", "--time", "period",
                                     "--outcome", "units", "--treated", "treated", "--method", "dm",
                                     "--unit-effects", "{out}/u.csv"],
     "--unit-effects needs --method hpte"),
    ("analyze-unit-effects-by", ["analyze", "{block}", "--unit", "product", "--time", "period",
                                 "--outcome", "units", "--treated", "treated", "--method", "hpte",
                                 "--covariates", "size", "--by", "size", "--unit-effects",
                                 "{out}/u.csv"], "--unit-effects does not take --by"),
    ("analyze-unit-effects-unwritable", ["analyze", "{block}", "--unit", "product", "--time",
                                         "period", "--outcome", "units", "--treated", "treated",
                                         "--method", "hpte", "--covariates", "size",
                                         "--unit-effects", "/nonexistent-dir/x.csv"],
     "/nonexistent-dir"),
    ("spillover-no-spec", ["analyze", "{panel}", "--unit", "product", "--time", "period",
                           "--outcome", "units", "--treated", "treated", "--method", "spillover",
                           "--graph", "{graph}"], "needs --graph GRAPH.json"),
    ("spillover-graph-missing", ["analyze", "{panel}", "--unit", "product", "--time", "period",
                                 "--outcome", "units", "--treated", "treated", "--method",
                                 "spillover", "--graph", "nope.json", "--spec", "{plan_spec}"],
     "nope.json"),
    ("spillover-not-periods", ["analyze", "{panel}", "--unit", "product", "--time", "period",
                               "--outcome", "units", "--treated", "treated", "--method",
                               "spillover", "--graph", "{graph}", "--spec", "{plan_spec}"],
     "period indices 0..2"),
    ("spillover-other-graph", ["analyze", "{panel}", "--unit", "product", "--time", "period",
                               "--outcome", "units", "--treated", "treated", "--method",
                               "spillover", "--graph", "{other_graph}", "--spec", "{plan_spec}"],
     "no product of the panel is a node"),
    ("spillover-by", ["analyze", "{panel}", "--unit", "product", "--time", "period", "--outcome",
                      "units", "--treated", "treated", "--method", "spillover", "--graph",
                      "{graph}", "--spec", "{plan_spec}", "--by", "product"], "--by"),
    ("graph-not-spillover", ["analyze", "{panel}", "--unit", "product", "--time", "period",
                             "--outcome", "units", "--treated", "treated", "--method", "dm",
                             "--graph", "{graph}"], "--graph is for --method spillover"),
    ("compare-runs", ["compare-designs", "--runs", "1"], "runs"),
    ("compare-products", ["compare-designs", "--products", "1", "--runs", "2"], "n_products"),
    ("compare-market-field", ["compare-designs", "--market", "{market}", "--runs", "2"], "n_prodcts"),
    ("compare-design", ["compare-designs", "--designs", "zigzag", "--runs", "2"], "zigzag"),
    ("simulate-missing", ["simulate", "--spec", "nope.yaml", "--out", "{out}/p.csv"], "nope.yaml"),
    ("graph-build-missing", ["graph", "build", "nope.csv", "--out", "{out}/g.json"], "nope.csv"),
    ("graph-show-missing", ["graph", "show", "nope.json"], "nope.json"),
    ("graph-show-not-json", ["graph", "show", "{not_json}"], "graph.json"),
    ("graph-cluster-missing", ["graph", "cluster", "nope.json", "--out", "{out}/c.json"], "nope.json"),
    ("report-no-design", ["report", "x", "--out", "{out}", "--panel", "{panel}"], "--design"),
    ("report-bogus-design", ["report", "x", "--out", "{out}", "--panel", "{panel}",
                             "--design", "bogus"], "bogus"),
    ("report-no-column", ["report", "x", "--out", "{out}", "--panel", "{no_treated}", "--design",
                          "random-days"], "treated"),
    ("report-text-outcome", ["report", "x", "--out", "{out}", "--panel", "{text}", "--design",
                             "random-days"], "units"),
    ("report-no-redis", ["report", "x", "--out", "{out}"], "Redis at"),
    ("demo-products", ["demo", "--products", "1"], "--products"),
    ("demo-adaptive-alone", ["demo", "--adaptive"], "--ladder"),
    ("demo-adaptive-few", ["demo", "--ladder", "--adaptive", "--products", "12"], "more products"),
    ("plan-missing-spec", ["plan", "nope.yaml", "--history", "{panel}", "--unit", "product",
                           "--time", "period", "--outcome", "units"], "nope.yaml"),
    ("plan-missing-history", ["plan", "{plan_spec}", "--history", "nope.csv", "--unit", "product",
                              "--time", "period", "--outcome", "units"], "nope.csv"),
    ("plan-no-column", ["plan", "{plan_spec}", "--history", "{panel}", "--unit", "product",
                        "--time", "period", "--outcome", "revenue"], "revenue"),
    ("plan-text-outcome", ["plan", "{plan_spec}", "--history", "{text}", "--unit", "product",
                           "--time", "period", "--outcome", "units"], "not numeric"),
    ("plan-too-long", ["plan", "{plan_spec}", "--history", "{panel}", "--unit", "product",
                       "--time", "period", "--outcome", "units", "--durations", "10"],
     "4 periods, too few for a duration of 10"),
    ("plan-unknown-units", ["plan", "{classes_spec}", "--history", "{panel}", "--unit", "product",
                            "--time", "period", "--outcome", "units"], "none of experiment"),
    ("plan-bad-durations", ["plan", "{plan_spec}", "--history", "{panel}", "--unit", "product",
                            "--time", "period", "--outcome", "units", "--durations", "3,x"],
     "--durations"),
    ("plan-not-utf8", ["plan", "{latin1}", "--history", "{panel}", "--unit", "product",
                       "--time", "period", "--outcome", "units"], "not a UTF-8 text file"),
    ("plan-sims", ["plan", "{plan_spec}", "--history", "{panel}", "--unit", "product",
                   "--time", "period", "--outcome", "units", "--sims", "1"], "--sims"),
    ("worker-role", ["worker", "--role", "bogus"], "bogus"),
    ("contracts-out-is-a-file", ["contracts", "--out", "{panel}"], "Not a directory"),
    ("acl-no-password", ["acl"], "PRICELAB_ACL_PASSWORD_CONTROLLER is not set"),
    ("console-user-role", ["console", "user", "alice", "--role", "boss"],
     "the new user: 'boss' is not a role (one of viewer, analyst, operator, admin)"),
    ("cost-negative", ["schedule", "{neg_cost}"],
     "unit_costs: product 'p1' has unit cost -1.0: a cost must be a finite number of at least 0"),
    ("cost-nan", ["experiment", "create", "{nan_cost}"], "product 'p0' has unit cost nan"),
    ("cost-stray", ["schedule", "{stray_cost}"],
     "unit_costs: names products not in the experiment: ['q9']"),
]  # fmt: skip


@pytest.mark.parametrize("argv, says", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_mistake_is_one_sentence_and_exit_status_2(
    argv: list[str], says: str, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    args = [a.format(**files) for a in argv]
    with pytest.raises(SystemExit) as exit_:
        main(args)
    out, err = capsys.readouterr()
    assert exit_.value.code == 2, (out, err)
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert says in lines[0], lines[0]
    assert "hunter2" not in out + err  # the Redis password never shows


def test_a_bad_setting_is_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PRICELAB_KAFKA__PARTITIONS", "many")
    with pytest.raises(SystemExit) as exit_:
        main(["topics"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("error: PRICELAB_KAFKA__PARTITIONS:"), err


def test_the_sweep_covers_every_subcommand() -> None:
    """A new subcommand must join the sweep. `up` only starts processes (its runs are in the
    integration tests); `experiment resume` shares pause's and stop's code."""
    import typer.main

    group = typer.main.get_command(app)
    commands = group.commands  # type: ignore[attr-defined]
    every = set()
    for name, cmd in commands.items():
        subs = getattr(cmd, "commands", None)
        every |= {f"{name} {s}" for s in subs} if subs else {name}

    def command_of(argv: list[str]) -> str:
        return f"{argv[0]} {argv[1]}" if getattr(commands[argv[0]], "commands", None) else argv[0]

    swept = {command_of(argv) for _, argv, _ in CASES} | {"topics"}
    assert sorted(every - swept - {"up", "experiment resume"}) == []
