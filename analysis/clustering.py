"""Product classes for cluster-randomised price experiments.

Substitutes assigned to different arms contaminate each other's outcomes (spillover).
Assigning whole dense regions of the substitutable-items graph together removes the spillover
carried by the edges inside them; what is left is carried by the edges that the partition
cuts. This module partitions the graph by modularity maximisation (Louvain: Blondel, Guillaume,
Lambiotte & Lefebvre, J. Stat. Mech. 2008; or Clauset-Newman-Moore greedy modularity), splits
communities above a size cap iteratively (Louvain at doubled resolution, then Kernighan-Lin
bisection if that does not split), and reports the share of edge weight cut and the cluster
sizes: the cut share bounds how much spillover bias a cluster design leaves (under the linear
spillover model of analysis.pricing_dgp, the naive estimator's bias shrinks by the share of
neighbour links kept inside clusters). Cooprider & Nassiri, Business Economics (2023), describe
the approach ("searches the substitutable-product graph for regions of dense interconnection and
severs those regions' connections to the rest").

The output, ``dict[cluster_id, list[product]]``, feeds the cluster-randomised design.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import networkx as nx
import numpy as np


@dataclass(frozen=True)
class Clustering:
    """A partition of the graph's products into clusters, with what it costs."""

    clusters: dict[int, list[str]]  # cluster id -> products, largest cluster first
    cut_weight_share: float  # share of total edge weight joining different clusters
    cut_edge_share: float  # share of edges joining different clusters
    modularity: float

    @property
    def sizes(self) -> np.ndarray:
        return np.array([len(v) for v in self.clusters.values()], dtype=int)

    @property
    def labels(self) -> dict[str, int]:
        """Product -> cluster id."""
        return {p: cid for cid, members in self.clusters.items() for p in members}

    def label_array(self, nodes: list[str]) -> np.ndarray:
        """Cluster id of each product in ``nodes`` order (for a cluster design)."""
        lab = self.labels
        return np.array([lab[n] for n in nodes], dtype=int)

    def describe(self) -> str:
        s = self.sizes
        singletons = int((s == 1).sum())
        return (
            f"{s.size} clusters ({singletons} singletons), sizes median {np.median(s):.0f}, "
            f"max {s.max()}, mean {s.mean():.1f}; edge weight cut {100 * self.cut_weight_share:.1f}%"
            f" ({100 * self.cut_edge_share:.1f}% of edges); modularity {self.modularity:.3f}"
        )


def cut_shares(G: nx.Graph, labels: dict[str, int], weight: str = "weight") -> tuple[float, float]:
    """(share of edge weight, share of edges) joining products of different clusters."""
    total_w = cut_w = 0.0
    cut_n = 0
    for u, v, d in G.edges(data=True):
        w = float(d.get(weight, 1.0))
        total_w += w
        if labels[u] != labels[v]:
            cut_w += w
            cut_n += 1
    m = G.number_of_edges()
    return (cut_w / total_w if total_w > 0 else 0.0, cut_n / m if m else 0.0)


def _communities(
    G: nx.Graph, method: str, resolution: float, weight: str, seed: int
) -> list[set[str]]:
    if G.number_of_edges() == 0:
        return [{n} for n in G.nodes]
    if method == "louvain":
        return [set(c) for c in nx.community.louvain_communities(
            G, weight=weight, resolution=resolution, seed=seed
        )]  # fmt: skip
    return [
        set(c)
        for c in nx.community.greedy_modularity_communities(G, weight=weight, resolution=resolution)
    ]


def _split(G: nx.Graph, nodes: set[str], max_size: int, weight: str, seed: int) -> list[set[str]]:
    """Split one community until every part has at most ``max_size`` products."""
    todo, done = [nodes], []
    while todo:
        part = todo.pop()
        if len(part) <= max_size:
            done.append(part)
            continue
        sub = G.subgraph(part)
        pieces: list[set[str]] = []
        if sub.number_of_edges():
            comps = [set(c) for c in nx.connected_components(sub)]
            split = comps if len(comps) > 1 else _communities(sub, "louvain", 2.0, weight, seed)
            pieces = split
        if len(pieces) <= 1:
            a, b = nx.community.kernighan_lin_bisection(sub, weight=weight, seed=seed)
            pieces = [set(a), set(b)]
        todo.extend(pieces)
    return done


def cluster_graph(
    G: nx.Graph,
    *,
    method: Literal["louvain", "greedy"] = "louvain",
    resolution: float = 1.0,
    max_size: int | None = None,
    weight: str = "weight",
    seed: int = 0,
) -> Clustering:
    """Partition ``G`` into dense communities (isolated products become singletons).

    ``resolution`` > 1 favours smaller communities. ``max_size`` caps cluster size (a very
    large cluster costs power: it is one randomisation unit). Cluster ids are 0.. in order of
    decreasing size, ties broken by the smallest product label, so a seed gives one answer.
    """
    if method not in ("louvain", "greedy"):
        raise ValueError(f"method must be 'louvain' or 'greedy'; got {method!r}.")
    if max_size is not None and max_size < 1:
        raise ValueError(f"max_size must be at least 1; got {max_size}.")
    comms = _communities(G, method, resolution, weight, seed)
    if max_size is not None:
        comms = [p for c in comms for p in _split(G, c, max_size, weight, seed)]
    ordered = sorted((sorted(map(str, c)) for c in comms), key=lambda c: (-len(c), c[0]))
    clusters = {cid: members for cid, members in enumerate(ordered)}
    labels = {p: cid for cid, members in clusters.items() for p in members}
    w_cut, e_cut = cut_shares(G, labels, weight)
    q = (
        nx.community.modularity(G, [set(c) for c in ordered], weight=weight)
        if G.number_of_edges()
        else 0.0
    )
    return Clustering(clusters, w_cut, e_cut, float(q))
