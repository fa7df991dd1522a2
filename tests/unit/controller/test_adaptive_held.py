"""The adaptive floor against the products and the carryover (docs/adaptive.md, "The floor
against the products and the carryover"): a spec whose floor leaves some arm fewer than one
expected draw a period whose window held it is refused in one sentence, at the spec, the CLI
and the console. Every expected value below is worked out by hand in its comment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controller.adaptive import (
    MIN_HELD_DRAWS,
    AdaptiveAllocation,
    check_held,
    floor_for,
    held_draws,
    window_draws,
)
from controller.designs.optimal_switchback import randomisation_points
from controller.errors import SpecError
from controller.spec import load_spec
from streams.cli import main

#: delta of step 25 (the last of 28 daily periods after a warmup of 3) at the defaults:
#: 0.5 * 25^-0.2 = 0.5 * exp(-0.2 ln 25) = 0.5 * 0.525306 = 0.262653
DELTA_25 = 0.262653


def _arms(k: int) -> list[dict[str, Any]]:
    return [
        {"name": f"a{i}", "policy": f"q{i}", "allocation": 1.0 / k} | ({"control": True} if i == 0 else {})
        for i in range(k)
    ]  # fmt: skip


def _spec(n: int, k: int = 4, floor: float = 0.05, **extra: Any) -> dict[str, Any]:
    return {
        "id": "ladder",
        "products": [f"p{i:03d}" for i in range(n)],
        "start": "2026-05-04",
        "end": "2026-06-01",  # 28 daily periods
        "seed": 1,
        "arms": _arms(k),
        "adaptive": {"floor": floor},
        **extra,
    }


def test_the_window_spans_one_draw_without_carryover_and_two_with_it() -> None:
    assert window_draws(0) == 1
    assert [window_draws(m) for m in (1, 2, 3, 7)] == [2, 2, 2, 2]
    # the optimal switchback's own blocks: the most distinct blocks any m + 1 periods touch
    for m in (1, 2, 3, 4):
        for n in (4, 5, 9):
            pts = randomisation_points(n * m, m)
            block = [max(p for p in pts if p <= s) for s in range(n * m)]
            most = max(len(set(block[t - m : t + 1])) for t in range(m, n * m))
            assert most == window_draws(m), (m, n)
    with pytest.raises(ValueError):
        window_draws(-1)


def test_held_draws_are_the_units_times_the_path_probability() -> None:
    assert held_draws(80, 0.1, 1) == pytest.approx(8.0)
    assert held_draws(80, 0.1, 2) == pytest.approx(0.8)  # 80 * 0.01
    assert held_draws(320, 0.103, 3) == pytest.approx(320 * 0.001092727)  # 0.35: the lab's


def test_nine_products_on_four_arms_are_refused_and_ten_are_not() -> None:
    s = AdaptiveAllocation(floor=0.05)
    # the lowest probability of period 27 (step 25): 0.05 + (1 - 4 * 0.05) * delta / 4
    # = 0.05 + 0.8 * 0.262653 / 4 = 0.102531; 9 products: 0.922778, 10: 1.025306
    why = check_held(s, 4, 9, ("product", "products"), 1, 28)
    assert why is not None
    assert why.startswith(
        "floor 0.05 leaves an arm 0.923 expected products a period whose window held it "
        "(9 products x 0.103: the lowest probability of the last period), fewer than 1: a "
        "held product would weigh more than all 9 together; "
    )
    # the floor: (1/9 - delta/4) / (1 - delta) = (0.111111 - 0.065663) / 0.737347 = 0.0616,
    # 0.07 in hundredths (9 * (0.07 * 0.737347 + 0.065663) = 1.0555)
    assert why.endswith("use a floor of at least 0.07 or more products")
    assert floor_for(s, 4, 9, 1, 25) == 0.07
    assert check_held(s, 4, 10, ("product", "products"), 1, 28) is None


def test_carryover_squares_the_lowest_probability() -> None:
    s = AdaptiveAllocation(floor=0.05)
    # three arms: 0.05 + 0.85 * 0.262653 / 3 = 0.124418; squared 0.015480; x 40 = 0.6192
    why = check_held(s, 3, 40, ("product", "products"), 2, 28)
    assert why is not None and "0.619 expected products" in why and "0.124^2" in why
    assert "once for each of the window's 2 draws" in why
    # (sqrt(1/40) - 0.262653/3) / 0.737347 = (0.158114 - 0.087551) / 0.737347 = 0.0957 -> 0.10
    # (40 * (0.1 * 0.737347 + 0.087551)^2 = 40 * 0.160286^2 = 1.0277)
    assert why.endswith("use a floor of at least 0.1 or more products")
    # the same products without carryover: 40 * 0.124418 = 4.98
    assert check_held(s, 3, 40, ("product", "products"), 1, 28) is None


def test_too_few_units_for_any_floor_say_so() -> None:
    s = AdaptiveAllocation(floor=0.05)
    # three products, three arms: a floor f < 1/3 gives at most 3 * (f (1 - d) + d / 3) < 1
    why = check_held(s, 3, 3, ("product", "products"), 1, 28)
    assert why is not None
    assert why.endswith("no floor below 1/3 reaches it: use more products or fewer arms")


def test_a_ladder_that_never_adapts_is_not_checked() -> None:
    s = AdaptiveAllocation(floor=0.05, warmup=5)
    assert check_held(s, 4, 2, ("product", "products"), 1, 5) is None  # periods 0-4: warmup
    assert check_held(s, 4, 2, ("product", "products"), 1, 6) is not None


def test_the_spec_refuses_by_its_design_s_units_and_carryover() -> None:
    with pytest.raises(SpecError) as err:
        load_spec(_spec(9))
    assert err.value.field == "adaptive.floor" and "0.923 expected products" in str(err.value)
    assert load_spec(_spec(10)).adaptive is not None
    assert load_spec(_spec(9, floor=0.07)).adaptive is not None  # the floor it names
    # the cluster design draws classes: 9 classes of 10 products are 9 draws, not 90
    products = [f"p{i:03d}" for i in range(90)]
    clusters = {f"c{j}": products[j::9] for j in range(9)}
    doc = _spec(0, design="cluster", clusters=clusters)
    del doc["products"]
    with pytest.raises(SpecError, match="0.923 expected classes .* all 9 together"):
        load_spec(doc)
    # an optimal switchback of order 2 (28 = 14 * 2 periods): two draws a window
    osb: dict[str, Any] = {
        "design": "optimal-switchback",
        "optimal_switchback": {"carryover_order": 2},
    }
    with pytest.raises(SpecError, match="0.619 expected products"):
        load_spec(_spec(40, k=3, **osb))
    assert load_spec(_spec(40, k=3, floor=0.1, **osb)).adaptive is not None
    # order 0 is random days: one draw
    assert load_spec(_spec(40, k=3, design="optimal-switchback",
                           optimal_switchback={"carryover_order": 0})).adaptive  # fmt: skip
    assert MIN_HELD_DRAWS == 1.0  # the sentences above say "fewer than 1"


def test_the_cli_refuses_it_in_one_sentence_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    path = tmp_path / "ladder.yaml"
    path.write_text(yaml.safe_dump(_spec(9)))
    for args in (["experiment", "create", "--dry-run", str(path)], ["schedule", str(path)]):
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_:
            main(args)
        err = capsys.readouterr().err
        assert exit_.value.code == 2, args
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert err.startswith("error: ")  # create names the file first, schedule does not
        assert "adaptive.floor: floor 0.05 leaves an arm 0.923 expected products" in err
        assert err.rstrip("\n").endswith("use a floor of at least 0.07 or more products")
