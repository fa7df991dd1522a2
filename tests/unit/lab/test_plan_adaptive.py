"""``pricelab plan`` refuses an adaptive ladder in one sentence (it planned it as a fixed one):
the planner adds an effect to past outcomes, and an adaptive allocation needs the outcomes
each price causes (docs/adaptive.md, "The lab")."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from streams.cli import app

SPEC = """
id: plan-adaptive
products: [a, b, c, d, e, f]
start: "2026-05-04T00:00:00+00:00"
end: "2026-05-18T00:00:00+00:00"
arms:
  - {name: list, policy: list-price, price_ratio: 1.0, allocation: 0.34, control: true}
  - {name: p90, policy: price-90, price_ratio: 0.9, allocation: 0.33}
  - {name: p110, policy: price-110, price_ratio: 1.1, allocation: 0.33}
"""


def _plan(tmp_path: Path, spec_text: str, history: Path) -> tuple[int, str, str]:
    spec = tmp_path / "ladder.yaml"
    spec.write_text(spec_text)
    res = CliRunner().invoke(
        app,
        ["plan", str(spec), "--history", str(history), "--unit", "product", "--time", "day",
         "--outcome", "units", "--sims", "10", "--jobs", "1"],
    )  # fmt: skip
    return res.exit_code, res.stdout, res.stderr


def test_an_adaptive_ladder_is_refused_before_the_history_is_read(tmp_path: Path) -> None:
    # a floor the spec check takes for 6 products (it refuses the default 0.05 first)
    code, out, err = _plan(tmp_path, SPEC + "adaptive: {floor: 0.2}\n", tmp_path / "absent.csv")
    assert code == 2
    assert out == ""
    (line,) = err.strip().splitlines()
    assert "ladder: plan cannot plan an adaptive ladder" in line
    assert "compare-designs --ladder RATIOS --adaptive" in line


def test_the_same_ladder_fixed_is_planned(tmp_path: Path) -> None:
    rows = ["product,day,units"] + [
        f"{p},2026-04-{d:02d},{(i * 7 + d * 3) % 11 + 5}"
        for i, p in enumerate("abcdef")
        for d in range(1, 29)
    ]
    history = tmp_path / "history.csv"
    history.write_text("\n".join(rows) + "\n")
    code, out, err = _plan(tmp_path, SPEC, history)
    assert code == 0, err
    assert "fe" in out and "p110" in out
