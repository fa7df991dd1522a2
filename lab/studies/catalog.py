"""Every study the runner knows, by name: an explicit table, so readers and tools can follow it
(adding a study is one import and one entry)."""

from __future__ import annotations

from lab.errors import LabError
from lab.studies import (
    block_bootstrap,
    cluster_fe_variance,
    conservative_se,
    cs,
    difp_aa,
    dm_timebound,
    hpte_unit_effects,
    ht_random_days,
    panel_core,
    relative_effects,
    sdid_subdaily,
    spillover_conditional,
    spillover_worker,
    switchback_carryover,
    trop,
    trop_paper,
    trop_seed,
)
from lab.studies.harness import Study

STUDIES: dict[str, Study] = {
    s.name: s
    for s in (
        block_bootstrap.STUDY,
        cluster_fe_variance.STUDY,
        conservative_se.STUDY,
        cs.STUDY,
        difp_aa.STUDY,
        dm_timebound.STUDY,
        hpte_unit_effects.STUDY,
        ht_random_days.STUDY,
        relative_effects.STUDY,
        sdid_subdaily.P1D,
        sdid_subdaily.PT4H,
        spillover_conditional.STUDY,
        spillover_worker.STUDY,
        spillover_worker.CONTINUED,
        switchback_carryover.STUDY,
        trop_paper.STUDY,
        trop_paper.TUNE,
        trop_paper.HETEROGENEOUS_STUDY,
        trop_paper.MC_REFITS,
        *trop.VARIANTS,
        trop.DECOMPOSE,
        trop.REFIT,
        trop.COVERAGE,
        trop.COVERAGE_CORE,
        trop.COVERAGE_CORE_RELAX,
        trop_seed.STUDY,
        panel_core.STUDY,
        panel_core.CONFOUNDED,
    )
}


def get(name: str) -> Study:
    """The study called ``name``; LabError naming the known ones otherwise."""
    try:
        return STUDIES[name]
    except KeyError:
        raise LabError(f"no study {name!r}; the studies are {', '.join(STUDIES)}") from None
