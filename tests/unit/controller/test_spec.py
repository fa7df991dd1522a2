"""Specs: the examples load; a bad spec is refused with the field and the rule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from controller import design_registry
from controller.designs import schedule
from controller.errors import SpecError
from controller.spec import (
    ClusterMode,
    CrossoverSettings,
    TimeBoundSettings,
    load_spec,
    load_spec_file,
)

EXAMPLES = sorted((Path(__file__).parents[3] / "docs" / "examples").glob("*.yaml"))


def test_there_is_an_example_per_design() -> None:
    assert {p.stem for p in EXAMPLES} >= set(design_registry.names())


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_specs_load_and_schedule(path: Path) -> None:
    spec = load_spec_file(path)
    assert spec.design == path.stem
    rows = schedule(spec)
    assert len(rows) >= len(spec.all_products())
    # the same spec as JSON loads to an equal object
    as_json = path.with_suffix(".json").name
    assert load_spec(json.dumps(yaml.safe_load(path.read_text()), default=str)) == spec, as_json
    assert load_spec(spec.to_json()) == spec


def test_json_file_loads(tmp_path: Path) -> None:
    raw = yaml.safe_load(EXAMPLES[0].read_text())
    p = tmp_path / "spec.json"
    p.write_text(json.dumps(raw, default=str))
    assert load_spec_file(p) == load_spec_file(EXAMPLES[0])


def test_optional_design_blocks_get_their_defaults() -> None:
    base = _base()
    assert load_spec({**base, "design": "time-bound"}).time_bound == TimeBoundSettings()
    cl = load_spec({**_base(clusters=True), "design": "cluster"})
    assert cl.cluster is not None and cl.cluster.mode == ClusterMode.SWITCHBACK
    assert load_spec(base).crossover is None


def _base(clusters: bool = False) -> dict[str, Any]:
    b: dict[str, Any] = dict(
        id="e1",
        products=["a", "b", "c"],
        treatment_policy="t",
        control_policy="c",
        start="2026-01-05T00:00:00+00:00",
        end="2026-02-02T00:00:00+00:00",  # 28 days
        timezone="UTC",
    )
    if clusters:
        del b["products"]
        b["clusters"] = {"x": ["a", "b"], "y": ["c"]}
    return b


BAD: list[tuple[dict[str, Any], str, str]] = [
    # (change, field, a word of the rule)
    ({"treatment_policy": None}, "treatment_policy", ""),
    ({"id": "has space"}, "id", "letters"),
    # without an offset a start is read in the spec's timezone (test_spec_times.py), so it
    # is refused only when there is none valid to read it in
    ({"start": "2026-01-05T00:00:00", "timezone": "Mars/Base"}, "start", "offset"),
    ({"period": "PT90M"}, "period", "hours"),
    ({"period": "P1DT6H"}, "period", "days"),
    ({"washout": "-PT1H"}, "washout", "negative"),
    ({"control_policy": "t"}, "treatment_policy", "differ"),
    ({"clusters": {"x": ["a"]}}, "products", "not both"),
    ({"products": ["a", "a"]}, "products", "once"),
    ({"design": "zigzag"}, "design", ""),
    ({"design": "crossover"}, "crossover", "required"),
    ({"design": "triggered"}, "triggered", "required"),
    ({"design": "optimal-switchback"}, "optimal_switchback", "required"),
    ({"design": "cluster"}, "clusters", "classes"),
    ({"crossover": {"phase_periods": 7}}, "crossover", "only allowed"),
    ({"design": "crossover", "crossover": {"phase_periods": 0}}, "crossover.phase_periods", ""),
    (
        {"design": "crossover", "crossover": {"phase_periods": 7, "blackout_periods": 7}},
        "crossover.blackout_periods",
        "shorter",
    ),
    ({"design": "crossover", "crossover": {"phase_periods": 15}}, "crossover.phase_periods", "fit"),
    (
        {"design": "crossover", "crossover": {"phase_periods": 7, "colour": 1}},
        "crossover.colour",
        "not a known",
    ),
    (
        {"design": "time-bound", "time_bound": {"start_period": 28}},
        "time_bound.start_period",
        "0..27",
    ),
    ({"design": "time-bound", "time_bound": {"start_period": -1}}, "time_bound.start_period", ""),
    (
        {"design": "optimal-switchback", "optimal_switchback": {"carryover_order": 5}},
        "optimal_switchback.carryover_order",
        "n*m",
    ),
    (
        {"design": "optimal-switchback", "optimal_switchback": {"carryover_order": 8}},
        "optimal_switchback.carryover_order",
        "n >= 4",
    ),
    (
        {"design": "triggered", "triggered": {"undercut_pct": 0, "window_periods": 3}},
        "triggered.undercut_pct",
        "",
    ),
    (
        {"design": "triggered", "triggered": {"undercut_pct": 5, "window_periods": 0}},
        "triggered.window_periods",
        "",
    ),
    (
        {
            "design": "triggered",
            "triggered": {"undercut_pct": 5, "window_periods": 2, "matched_control": True},
        },
        "triggered.matched_control",
        "clusters",
    ),
    (
        {
            "design": "triggered",
            "triggered": {"undercut_pct": 5, "window_periods": 2, "sustained_minutes": -1},
        },
        "triggered.sustained_minutes",
        "",
    ),
    ({"design": "cluster", "cluster": {"mode": "sometimes"}}, "cluster.mode", ""),
    ({"segments": {"big": ["a", "zz"]}}, "segments", "not in the experiment"),
    ({"segments": {"big": ["a", "b"], "small": ["b"]}}, "segments", "overlap"),
    ({"segments": {"big": []}}, "segments", "no products"),
    ({"currency": "eur"}, "currency", "is not an ISO 4217 code (three capital letters"),
    (
        {
            "design": "cluster",
            "products": None,
            "clusters": {"x": ["a", "b"], "y": ["c"]},
            "segments": {"one": ["a", "b"]},
        },
        "segments",
        "at least two classes",
    ),
]


@pytest.mark.parametrize("change, field, word", BAD, ids=[f"{b[1]}-{i}" for i, b in enumerate(BAD)])
def test_bad_spec_names_the_field_and_the_rule(
    change: dict[str, Any], field: str, word: str
) -> None:
    spec = {
        **_base(
            clusters=change.get("design") == "cluster"
            and "clusters" not in change
            and "cluster" in change
        ),
        **change,
    }
    spec = {k: v for k, v in spec.items() if v is not None}
    with pytest.raises(SpecError) as ei:
        load_spec(spec)
    assert ei.value.field == field, str(ei.value)
    assert str(ei.value).startswith(f"{field}: ")
    assert word in ei.value.rule


@settings(max_examples=40, deadline=None)
@given(
    case=st.sampled_from(
        [
            ("allocation", st.one_of(st.floats(max_value=0.0), st.floats(min_value=1.0))),
            ("seed", st.text(min_size=1).filter(lambda s: not s.strip().lstrip("+-").isdigit())),
            ("timezone", st.sampled_from(["Mars/Olympus", "", "UTC+25", "Europe/Nowhere"])),
            ("washout", st.integers(86400, 10**6)),
            ("end", st.sampled_from(["2026-01-05T00:00:00+00:00", "2025-12-31T00:00:00+00:00"])),
        ]
    ),
    data=st.data(),
)
def test_any_bad_value_is_refused_naming_its_field(case: tuple[str, Any], data: Any) -> None:
    field, values = case
    value = data.draw(values)
    with pytest.raises(SpecError) as ei:
        load_spec({**_base(), field: value})
    assert ei.value.field == field


def test_crossover_settings_are_typed() -> None:
    spec = load_spec({**_base(), "design": "crossover", "crossover": {"phase_periods": 7}})
    assert spec.crossover == CrossoverSettings(phase_periods=7, blackout_periods=0)


@pytest.mark.parametrize(
    "text, suffix, word",
    [
        ("id: [unclosed", ".yaml", "YAML"),
        ("{bad json", ".json", "JSON"),
        ("- a\n- b\n", ".yaml", "mapping"),
    ],
)
def test_unreadable_files_are_refused(tmp_path: Path, text: str, suffix: str, word: str) -> None:
    p = tmp_path / f"spec{suffix}"
    p.write_text(text)
    with pytest.raises(SpecError) as ei:
        load_spec_file(p)
    assert word in ei.value.rule


def test_the_design_guide_shows_each_example_verbatim() -> None:
    guide = (EXAMPLES[0].parents[1] / "designs.md").read_text()
    for path in EXAMPLES:
        assert path.read_text().rstrip() in guide, path.name


def test_a_modified_copy_does_not_reuse_derived_values() -> None:
    s = load_spec_file(EXAMPLES[0].parent / "time-bound.yaml")
    first = [a.arm for a in schedule(s)]
    fresh = load_spec({**s.model_dump(), "seed": 99})
    copied = s.model_copy(update={"seed": 99})
    assert [a.arm for a in schedule(copied)] == [a.arm for a in schedule(fresh)]
    assert [a.arm for a in schedule(s)] == first


@pytest.mark.parametrize("value", ["0.0", "1.00", 3.0, True, "1_000", "7 days"])
def test_a_seed_that_is_not_a_whole_number_in_digits_is_refused(value: Any) -> None:
    # pydantic's lax int read "0.0" as 0 and True as 1 (hypothesis found "0.0")
    with pytest.raises(SpecError) as ei:
        load_spec({**_base(), "seed": value})
    assert ei.value.field == "seed"
    assert load_spec({**_base(), "seed": " -7 "}).seed == -7


def test_segments_are_kept_and_reach_the_worker_as_json() -> None:
    spec = load_spec({**_base(), "segments": {"big": ["a", "b"], "small": ["c"]}})
    assert spec.segments == {"big": ("a", "b"), "small": ("c",)}
    assert spec.model_dump(mode="json")["segments"] == {"big": ["a", "b"], "small": ["c"]}


def test_a_spec_without_currency_dumps_as_before_it_existed_and_one_with_it_round_trips() -> None:
    """Stored specs are compared by their JSON, and an older worker refuses an unknown key."""
    plain = load_spec(_base())
    assert "currency" not in json.loads(plain.to_json())
    priced = load_spec({**_base(), "currency": "EUR"})
    assert json.loads(priced.to_json())["currency"] == "EUR"
    assert load_spec(json.loads(priced.to_json())).currency == "EUR"
