"""The recommended price read beside the verdict (analysis.evidence): the verdict decides; the
curve's peak is evidence, labelled as such (issue #54's report: "Keep running, leading arm
p97" above "Recommended price: x1.022")."""

from __future__ import annotations

from typing import Any

from analysis.evidence import demand_reading

POINTS = [{"arm": "p97", "price_ratio": 0.97}, {"arm": "list", "price_ratio": 1.0},
          {"arm": "p105", "price_ratio": 1.05}]  # fmt: skip


def demand(best: float | None, **more: Any) -> dict[str, Any]:
    return {"optimal_price_ratio": best, "points": POINTS, "price_ratio_low": 0.97,
            "price_ratio_high": 1.05, "at_range_edge": False} | more  # fmt: skip


def test_while_the_verdict_keeps_running_the_peak_is_not_a_price_to_set() -> None:
    r = demand_reading(demand(1.022), {"verdict": "keep_running", "arm": "p97"})
    assert not r.decided and r.status == "keep_running" and r.ships is None
    assert r.leading == "p97" and r.headline == "where the evidence points, not yet decided"
    assert r.between == ("list", "p105") and r.tested is None and r.test_next == 1.02
    assert "not a price to set" in r.text and "test x1.02 next" in r.text
    assert "leading arm p97 (x0.970), not yet shown" in r.text


def test_a_decided_verdict_is_the_decision_and_the_peak_its_evidence() -> None:
    shipped = demand_reading(demand(1.022), {"verdict": "ship", "arm": "p105"})
    assert shipped.decided and shipped.ships == "p105" and shipped.leading is None
    assert shipped.headline == "evidence for the decision, not a second decision"
    assert "the verdict ships arm p105 (x1.050)" in shipped.text
    for word in ("do_not_ship", "no_difference"):  # the control stays
        kept = demand_reading(demand(1.022), {"verdict": word, "arm": "p97"})
        assert kept.decided and kept.ships == "list"
        assert "the verdict keeps the control, list (x1.000)" in kept.text


def test_a_tested_price_an_edge_and_no_verdict() -> None:
    at = demand_reading(demand(0.97))
    assert at.tested == "p97" and at.between is None and at.test_next is None
    assert not at.decided and at.status is None and "no verdict decides it" in at.text
    edge = demand_reading(demand(1.05, at_range_edge=True))
    assert edge.test_next is None and "test above x1.050 next" in edge.text
    none = demand_reading(demand(None), {"verdict": "keep_running", "arm": "p97"})
    assert none.headline == "no recommended price" and none.to_dict()["between"] is None
