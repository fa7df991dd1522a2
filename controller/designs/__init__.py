"""Experiment designs: one module per design behind one :class:`Design` interface.

``base`` defines the interface and the keyed draws (one categorical draw and one complete
randomisation, for 2 to 8 arms); ``assignments`` builds assignments, whole
periods and design matrices from any design; each other module is one design and registers
itself (:mod:`controller.design_registry`). See docs/designs.md.
"""

from controller.designs.assignments import (
    Assignment,
    Blackout,
    DesignMatrices,
    PeriodAssignments,
    arm,
    assign,
    assign_period,
    assign_products,
    design_matrices,
    design_sampler,
    draw,
    forced_control,
    path_probability,
    period_assignments,
    schedule,
)
from controller.designs.base import (
    Design,
    DesignContext,
    Draw,
    MarketFacts,
    Window,
    arm_draw,
    arm_index,
    bernoulli,
    categorical,
    complete_arms,
    complete_share,
    complete_split,
    design_of,
    fixed_path,
    get_design,
    p_arm,
    register,
    uniform,
    uniforms,
)
from controller.designs.crossover import williams
from controller.designs.optimal_switchback import randomisation_points
from controller.designs.triggered import TriggerPlan, TriggerWindow, plan_of, trigger_plan

__all__ = [
    "Assignment",
    "Blackout",
    "Design",
    "DesignContext",
    "DesignMatrices",
    "Draw",
    "MarketFacts",
    "PeriodAssignments",
    "TriggerPlan",
    "TriggerWindow",
    "Window",
    "arm",
    "arm_draw",
    "arm_index",
    "assign",
    "assign_period",
    "assign_products",
    "bernoulli",
    "categorical",
    "complete_arms",
    "complete_share",
    "complete_split",
    "design_matrices",
    "design_sampler",
    "design_of",
    "draw",
    "fixed_path",
    "forced_control",
    "get_design",
    "p_arm",
    "path_probability",
    "period_assignments",
    "plan_of",
    "randomisation_points",
    "register",
    "schedule",
    "trigger_plan",
    "uniform",
    "uniforms",
    "williams",
]
