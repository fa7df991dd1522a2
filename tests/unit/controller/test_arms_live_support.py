"""What the live path gives an experiment of more than two arms, said where an analyst plans
it (issue #54, item 5): ``pricelab schedule`` notes it beside the table (on stderr, so a CSV
stays a table), and ``experiment create --help`` says it in the ``arms`` and ``guardrails``
fields: each arm estimated against the control live, a verdict naming an arm, each
guardrail checked on each arm; a k-arm optimal switchback's guardrails refused."""

from __future__ import annotations

from pathlib import Path

import typer
from typer.testing import CliRunner

from controller.schedule_cli import register
from streams.cli.help_text import spec_fields_help

LADDER = """
id: ladder
products: [a, b, c, d]
arms:
  - {name: list, policy: list-price, price_ratio: 1.0, allocation: 0.4, control: true}
  - {name: p95, policy: price-95, price_ratio: 0.95, allocation: 0.3}
  - {name: p105, policy: price-105, price_ratio: 1.05, allocation: 0.3}
guardrails: [{metric: units, max_drop_pct: 5}]
start: 2026-05-04
end: 2026-05-08
seed: 3
"""
SWITCHBACK = (
    LADDER.replace("id: ladder", "id: osb\ndesign: optimal-switchback")
    + "optimal_switchback: {carryover_order: 1}\n"
)
TWO = """
id: two
products: [a, b]
treatment_policy: t
control_policy: c
guardrails: [{metric: units, max_drop_pct: 5}]
start: 2026-05-04
end: 2026-05-08
"""


def _schedule(tmp_path: Path, text: str, *args: str) -> tuple[int, str, str]:
    app = typer.Typer()
    register(app)

    @app.command("noop")  # a second command keeps `schedule` a subcommand, as in pricelab
    def _noop() -> None:
        pass

    path = tmp_path / "spec.yaml"
    path.write_text(text)
    r = CliRunner().invoke(app, ["schedule", str(path), *args])
    return r.exit_code, r.stdout, r.stderr


def test_schedule_says_what_a_ladder_gets_live(tmp_path: Path) -> None:
    code, out, err = _schedule(tmp_path, LADDER)
    assert code == 0 and "p105" in out
    assert "note: 3 arms: the analysis worker estimates each arm against the control" in err
    assert "checks each guardrail on each arm" in err
    code, out, err = _schedule(tmp_path, LADDER, "--csv")
    assert code == 0 and "note:" in err and "note:" not in out


def test_schedule_flags_guardrails_that_create_would_refuse(tmp_path: Path) -> None:
    code, _, err = _schedule(tmp_path, SWITCHBACK)
    assert code == 0
    assert "note: experiment create refuses this spec: guardrails: are not checked on 3-arm" in err


def test_schedule_says_nothing_more_of_two_arms(tmp_path: Path) -> None:
    code, _, err = _schedule(tmp_path, TWO)
    assert code == 0 and "note:" not in err


def test_create_help_says_what_k_arms_get() -> None:
    # the spec's fields as `experiment create --help` lists them (tests/unit/streams/cli/
    # test_help.py checks that the page shows every field's description)
    page = " ".join(spec_fields_help().split())
    assert "without estimates" not in page
    assert "estimates each arm against the control live" in page
    assert "checks each guardrail on each arm" in page
    assert "With k arms, each arm is checked against the control" in page
    assert "'no difference' (keep the control)" in page
