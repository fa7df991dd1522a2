"""Between one and four expected held draws a period the adaptive floor is accepted but warned
about (docs/adaptive.md, "The floor against the products and the carryover"): the sequences
are valid there but wide. One sentence on stderr from ``experiment create``, ``schedule`` and
``simulate --spec``, naming the floor that keeps four (``floor_for`` with ``target=4``).
Every expected value below is worked out by hand in its comment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controller.adaptive import (
    WIDE_HELD_DRAWS,
    AdaptiveAllocation,
    check_held,
    floor_for,
    warn_held,
)
from controller.spec import load_spec
from streams.cli import main

PRODUCTS = ("product", "products")


def test_an_accepted_floor_under_four_held_draws_is_warned_about() -> None:
    s = AdaptiveAllocation(floor=0.05)
    assert WIDE_HELD_DRAWS == 4.0  # the sentences below say "under 4"
    # 4 arms over 28 daily periods: step 25, delta = 0.5 * 25^-0.2 = 0.262653; the lowest
    # probability 0.05 + 0.8 * 0.262653 / 4 = 0.102531. 30 products: 3.0759 held, accepted
    assert check_held(s, 4, 30, PRODUCTS, 1, 28) is None
    why = warn_held(s, 4, 30, PRODUCTS, 1, 28)
    assert why is not None and why.count(". ") == 0 and why.endswith(").")
    assert why.startswith(
        "adaptive.floor 0.05 leaves an arm 3.08 expected products a period whose window "
        "held it, under 4: valid, but that arm's sequences will be wide; "
    )
    # four held: (4/30 - 0.065663) / 0.737347 = (0.133333 - 0.065663) / 0.737347 = 0.0918,
    # 0.10 in hundredths (30 * (0.1 * 0.737347 + 0.065663) = 4.18; 0.09 gives 3.96)
    assert "a floor of 0.1 keeps 4" in why
    assert floor_for(s, 4, 30, 1, 25, target=4.0) == 0.1
    # one held (the default target) needs a lowest of 1/30 < delta / 4: any floor, 0
    assert floor_for(s, 4, 30, 1, 25) == 0.0
    # 40 products: 4.10 held, no warning; 9: refused (0.923), so not warned either
    assert warn_held(s, 4, 40, PRODUCTS, 1, 28) is None
    assert check_held(s, 4, 9, PRODUCTS, 1, 28) is not None
    assert warn_held(s, 4, 9, PRODUCTS, 1, 28) is None


def test_no_floor_keeps_four_on_too_few_products() -> None:
    s = AdaptiveAllocation(floor=0.05)
    # 10 products: 1.025 held (accepted); four would need a lowest probability of 0.4 > 1/4
    why = warn_held(s, 4, 10, PRODUCTS, 1, 28)
    assert why is not None and "1.03 expected products" in why
    assert "no floor below 1/4 keeps 4: use more products or fewer arms" in why


def _spec(tmp_path: Path) -> Path:
    import yaml

    products = [f"P{i:02d}" for i in range(16)]
    doc: dict[str, Any] = {
        "id": "wide", "products": products, "start": "2026-05-04", "end": "2026-05-14",
        "seed": 3, "unit_costs": dict.fromkeys(products, 60),
        "arms": [
            {"name": "list", "policy": "list-price", "price_ratio": 1.0, "allocation": 0.34,
             "control": True},
            {"name": "p85", "policy": "price-85", "price_ratio": 0.85, "allocation": 0.33},
            {"name": "p120", "policy": "price-120", "price_ratio": 1.2, "allocation": 0.33},
        ],
        "adaptive": {"rule": "thompson", "warmup": 3},
    }  # fmt: skip
    path = tmp_path / "wide.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


#: 16 products, 3 arms, 10 daily periods, warmup 3: step 7, delta = 0.5 * 7^-0.2 = 0.338805;
#: the lowest probability 0.05 + 0.85 * 0.338805 / 3 = 0.145995, 16 x 0.145995 = 2.336 held;
#: four: (0.25 - 0.112935) / 0.661195 = 0.2073, 0.21 (16 x 0.251786 = 4.03)
SENTENCE = "warning: adaptive.floor 0.05 leaves an arm 2.34 expected products a period"


def test_the_cli_warns_in_one_sentence_and_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    path = _spec(tmp_path)
    assert load_spec(yaml.safe_load(path.read_text())).held_warning() is not None
    out = tmp_path / "wide.csv"
    for args in (
        ["experiment", "create", "--dry-run", str(path)],
        ["schedule", str(path)],
        ["simulate", "--spec", str(path), "--out", str(out)],
    ):
        capsys.readouterr()
        try:
            main(args)
        except SystemExit as exit_:
            assert exit_.code in (0, None), args
        err = capsys.readouterr().err
        warned = [line for line in err.splitlines() if line.startswith("warning: ")]
        assert len(warned) == 1, (args, err)
        assert warned[0].startswith(SENTENCE) and "a floor of 0.21 keeps 4" in warned[0]
    assert out.exists()  # warned, not refused
