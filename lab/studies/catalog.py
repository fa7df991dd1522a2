"""Every study the runner knows, by name: an explicit table, so readers and tools can follow it
(adding a study is one import and one entry)."""

from __future__ import annotations

from lab.errors import LabError
from lab.studies import (
    adaptive_ladder,
    advanced,
    block_bootstrap,
    cluster_fe_arms,
    cluster_fe_variance,
    conservative_se,
    cs,
    difp_aa,
    dm_timebound,
    hpte_unit_effects,
    ht_random_days,
    ladder,
    ladder_profit,
    panel_core,
    planning,
    planning_arms,
    pricing_methods,
    relative_effects,
    sdid_subdaily,
    simulator_truth,
    spillover_conditional,
    spillover_worker,
    switchback_carryover,
    trop,
    trop_paper,
    trop_seed,
    validation,
)
from lab.studies.harness import Study

STUDIES: dict[str, Study] = {
    s.name: s
    for s in (
        adaptive_ladder.STUDY,
        adaptive_ladder.CELLS,
        advanced.STUDY,
        advanced.MC,
        block_bootstrap.STUDY,
        cluster_fe_arms.STUDY,
        cluster_fe_variance.STUDY,
        conservative_se.STUDY,
        cs.STUDY,
        difp_aa.STUDY,
        dm_timebound.STUDY,
        hpte_unit_effects.STUDY,
        ht_random_days.STUDY,
        ladder.STUDY,
        ladder_profit.STUDY,
        panel_core.STUDY,
        panel_core.CONFOUNDED,
        planning.STUDY,
        planning_arms.STUDY,
        pricing_methods.GRAPH,
        pricing_methods.HPTE,
        pricing_methods.SPILLOVER,
        relative_effects.STUDY,
        sdid_subdaily.P1D,
        sdid_subdaily.PT4H,
        simulator_truth.STUDY,
        spillover_conditional.STUDY,
        spillover_worker.STUDY,
        spillover_worker.CONTINUED,
        switchback_carryover.STUDY,
        trop_paper.STUDY,
        trop_paper.TUNE,
        trop_paper.HETEROGENEOUS_STUDY,
        trop_paper.MC_REFITS,
        trop_seed.STUDY,
        validation.STUDY,
        *trop.VARIANTS,
        trop.DECOMPOSE,
        trop.REFIT,
        trop.COVERAGE,
        trop.COVERAGE_CORE,
        trop.COVERAGE_CORE_RELAX,
    )
}


def get(name: str) -> Study:
    """The study called ``name``; LabError naming the known ones otherwise."""
    try:
        return STUDIES[name]
    except KeyError:
        raise LabError(f"no study {name!r}; the studies are {', '.join(STUDIES)}") from None
