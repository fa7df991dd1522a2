"""`pricelab analyze --method spillover`: the live design's direct and spillover effects offline,
by the function the analysis worker publishes them with."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
import pytest
import yaml

from analysis.graph import save_graph
from analysis.worker import AnalysisWorker
from controller.clock import ManualClock
from controller.designs import design_matrices
from controller.panel_source import experiment_info
from controller.spec import load_spec
from streams.cli import main

N, DAYS = 80, 8
DIRECT, SPILL = 4.0, 2.0  # own price cut; a control product whose substitute is cut loses 2


def _spec(ids: str = "p{:02d}") -> dict[str, object]:
    products = [ids.format(i) for i in range(N)]
    return {
        "id": "spill",
        "design": "random-days",
        "products": products,
        "treatment_policy": "cut",
        "control_policy": "list",
        "start": "2026-03-02T00:00:00+00:00",
        "end": f"2026-03-{2 + DAYS:02d}T00:00:00+00:00",
        "seed": 5,
        "substitutes": [[products[2 * k], products[2 * k + 1], 1.0] for k in range(N // 2)],
    }


def _cells(spec_doc: dict[str, object], seed: int = 1) -> pd.DataFrame:
    spec = load_spec(spec_doc)
    dm = design_matrices(spec)
    W = dm.treated
    partner = np.arange(N) ^ 1  # p00-p01, p02-p03, ...
    rng = np.random.default_rng(seed)
    base = rng.uniform(15, 25, size=(N, 1))
    exposed = W[partner, :]
    Y = base + DIRECT * W - SPILL * (~W & exposed) + rng.normal(0, 1, size=W.shape)
    return pd.DataFrame(
        {
            "product": np.repeat(list(dm.units), DAYS),
            "period": np.tile(np.arange(DAYS), N),
            "units": Y.ravel(),
            "treated": W.ravel().astype(int),
            "probability": 0.5,
            "blackout": False,
        }
    )


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    return _files(tmp_path, _spec())


def _files(tmp_path: Path, doc: dict[str, object]) -> dict[str, Path]:
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(doc))
    panel = tmp_path / "panel.csv"
    _cells(doc).to_csv(panel, index=False)
    g = nx.Graph()
    g.add_weighted_edges_from(doc["substitutes"])  # type: ignore[arg-type]
    graph = tmp_path / "graph.json"
    save_graph(g, graph)
    return {"spec": spec_path, "panel": panel, "graph": graph}


def _cli(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> dict[str, dict]:
    argv = ["analyze", str(files["panel"]), "--unit", "product", "--time", "period"]
    argv += ["--outcome", "units", "--treated", "treated", "--blackout", "blackout"]
    argv += ["--probability", "probability", "--method", "spillover"]
    argv += ["--graph", str(files["graph"]), "--spec", str(files["spec"]), "--json"]
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    out, err = capsys.readouterr()
    assert exit_.value.code in (0, None)
    assert "not in the graph" not in err  # every product is a node of these graphs
    return {row["method"]: row for row in map(json.loads, out.strip().splitlines())}


def test_recovers_known_direct_and_spillover_effects(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    rows = _cli(files, capsys)
    direct = rows["spillover_ipw:direct"]
    spill = rows["spillover_ipw:spillover_control:any"]
    # every period but the first: it has no history to take each product's level from
    assert direct["n_periods"] == DAYS - 1 and direct["metric"] == "units"
    assert 0 < direct["se"] < 1.0 and 0 < spill["se"] < 1.0
    assert abs(direct["effect"] - DIRECT) < 3 * direct["se"], direct
    assert abs(spill["effect"] - (-SPILL)) < 3 * spill["se"], spill
    # the treated side has no spillover in this market
    treated_side = rows["spillover_ipw:spillover_treated:any"]
    assert abs(treated_side["effect"]) < 3 * treated_side["se"]
    # the naive difference mixes the spillover into the control arm: biased upwards
    assert rows["naive_difference"]["effect"] > DIRECT + 0.3


async def test_the_same_figures_as_the_live_worker_publishes(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    offline = _cli(files, capsys)
    doc = _spec()
    cells = _cells(doc)
    info = experiment_info(load_spec(doc), "running")

    class Source:
        async def experiments(self):  # type: ignore[no-untyped-def]
            return [info]

        async def panel(self, exp_id, as_of):  # type: ignore[no-untyped-def]
            return cells

    class Sink:
        published: list = []

        async def publish(self, experiment, result, as_of, cs):  # type: ignore[no-untyped-def]
            self.published.append(result)

    sink = Sink()
    await AnalysisWorker(Source(), sink, ManualClock(datetime(2026, 4, 1, tzinfo=UTC))).run_once()
    live = {r.method: r for r in sink.published if "spillover" in r.method or "naive" in r.method}
    assert set(live) == set(offline)
    for name, r in live.items():
        assert r.effect == offline[name]["effect"] and r.se == offline[name]["se"], name


def test_a_design_whose_periods_share_draws_is_refused_in_one_sentence(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    doc = _spec() | {"design": "crossover", "crossover": {"phase_periods": 4}}
    files["spec"].write_text(yaml.safe_dump(doc))
    argv = ["analyze", str(files["panel"]), "--unit", "product", "--time", "period"]
    argv += ["--outcome", "units", "--treated", "treated", "--method", "spillover"]
    argv += ["--graph", str(files["graph"]), "--spec", str(files["spec"])]
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1
    assert "crossover design gives no valid spillover variance" in err[0]


def test_product_ids_made_of_digits_keep_their_zeros(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # "0007" read as the number 7 would match neither the spec nor the graph
    rows = _cli(_files(tmp_path, _spec("{:04d}")), capsys)
    direct = rows["spillover_ipw:direct"]
    assert abs(direct["effect"] - DIRECT) < 3 * direct["se"], direct
