"""Clustering the substitute graph into product classes."""

from __future__ import annotations

import networkx as nx
import pytest

from analysis.clustering import cluster_graph
from analysis.pricing_dgp import planted_substitute_graph


def _two_cliques() -> nx.Graph:
    G = nx.Graph()
    for group in (["a1", "a2", "a3", "a4"], ["b1", "b2", "b3", "b4"]):
        for i, u in enumerate(group):
            for v in group[i + 1 :]:
                G.add_edge(u, v, weight=1.0)
    G.add_edge("a1", "b1", weight=0.5)
    G.add_node("lonely")
    return G


def test_two_cliques_are_separated_and_the_bridge_is_cut() -> None:
    res = cluster_graph(_two_cliques(), seed=0)
    groups = sorted(sorted(c) for c in res.clusters.values())
    assert groups == [["a1", "a2", "a3", "a4"], ["b1", "b2", "b3", "b4"], ["lonely"]]
    assert res.cut_weight_share == pytest.approx(0.5 / 12.5)
    assert res.cut_edge_share == pytest.approx(1 / 13)
    assert res.sizes.tolist() == [4, 4, 1]
    assert res.label_array(["lonely", "a2"]).tolist() == [2, res.labels["a2"]]


def test_partition_covers_every_product_once_and_respects_size_cap() -> None:
    G, _ = planted_substitute_graph(5, p_between=0.05, seed=2)
    res = cluster_graph(G, max_size=6, seed=1)
    members = [p for c in res.clusters.values() for p in c]
    assert sorted(members) == sorted(G.nodes)
    assert res.sizes.max() <= 6
    uncapped = cluster_graph(G, seed=1)
    assert res.cut_weight_share >= uncapped.cut_weight_share  # a cap can only cut more


def test_planted_groups_leave_little_weight_cut() -> None:
    G, cat = planted_substitute_graph(10, p_within=0.8, p_between=0.01, seed=3)
    res = cluster_graph(G, seed=0)
    assert res.cut_weight_share < 0.05
    assert res.modularity > 0.8
    for members in res.clusters.values():  # no edges across categories, so no mixed cluster
        assert len({cat[p] for p in members}) == 1


def test_seeded_and_greedy_variant() -> None:
    G, _ = planted_substitute_graph(5, p_between=0.05, seed=4)
    assert cluster_graph(G, seed=7).clusters == cluster_graph(G, seed=7).clusters
    greedy = cluster_graph(G, method="greedy")
    assert sum(greedy.sizes) == G.number_of_nodes()
    with pytest.raises(ValueError, match="method"):
        cluster_graph(G, method="spectral")  # type: ignore[arg-type]


def test_edgeless_graph_gives_singletons() -> None:
    G = nx.Graph()
    G.add_nodes_from(["x", "y"])
    res = cluster_graph(G)
    assert res.sizes.tolist() == [1, 1] and res.cut_weight_share == 0.0
