"""MAD's validity needs some uniform share in every period (delta_t > 0, omega(t^-1/4)): an
adaptive block with neither a uniform share nor a floor is refused (controller.spec)."""

from __future__ import annotations

from typing import Any

import pytest

from controller.errors import SpecError
from controller.spec import load_spec


def _spec(adaptive: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "ladder",
        "products": [f"p{i:02d}" for i in range(40)],  # enough for the floor's held cells
        "arms": [
            {
                "name": "base",
                "policy": "p0",
                "price_ratio": 1.0,
                "allocation": 0.5,
                "control": True,
            },
            {"name": "up", "policy": "p1", "price_ratio": 1.1, "allocation": 0.5},
        ],  # fmt: skip
        "start": "2026-05-04T00:00:00+00:00",
        "end": "2026-05-20T00:00:00+00:00",
        "adaptive": adaptive,
    }


def test_no_uniform_share_and_no_floor_is_refused() -> None:
    with pytest.raises(SpecError, match="uniform"):
        load_spec(_spec({"floor": 0.0, "uniform_mix": {"start": 0.0}}))


def test_either_a_uniform_share_or_a_floor_is_enough() -> None:
    assert load_spec(_spec({"floor": 0.0, "uniform_mix": {"start": 0.1}})).adaptive
    assert load_spec(_spec({"floor": 0.05, "uniform_mix": {"start": 0.0}})).adaptive
