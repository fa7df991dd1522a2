"""Analyst reports: what a running (or finished) price experiment says, and what to do.

Pure: everything is computed from a long panel DataFrame (one row per product and period, as
the analysis worker's PanelSource or the simulator produce it) and the estimates topic's
messages (running estimates and verdicts); the caller decides where they come from. The page
is one self-contained HTML file, its figures inline as PNG data URIs, so it can be mailed or
served alone.

Contents, from the top:

- the latest verdict of the analysis worker (ship, do not ship, keep running) on the decision
  metric, with its reason, rule and guardrails, and for keep running the days still needed;
- the decision scorecard: per metric the primary estimate at the latest look;
- running estimates of every metric, per estimator, with the 95% interval and the
  anytime-valid confidence sequence (Howard et al. 2021; analysis/confseq.py) over the looks;
- assignment heatmap, products x periods: treatment red, control white, outside the window
  (probability 0) grey, blackout cells hatched, like the figures of the origin article
  (Cooprider & Nassiri 2023, as shown in the Amazon Science article);
- pre-period fit of the synthetic-control-type estimators (sc, difp, sdid) when the design has
  a pre-period (block designs): treated mean against its synthetic control;
- balance and sample-ratio check: realised treated share against the design probability with a
  binomial test at the level of the independent draws, and standardised mean differences of
  the product characteristics (and of the pre-period outcome when there is one).

The package splits along its seams: ``stats`` (numbers), ``figures`` (matplotlib),
``verdict`` and ``scorecard`` (the page's decision sections) and ``html`` (the page).
"""

from analysis.report.figures import (
    assignment_heatmap,
    balance_figure,
    pre_period_figure,
    running_estimates_figure,
)
from analysis.report.html import Report, build_report
from analysis.report.scorecard import scorecard_section
from analysis.report.stats import (
    COVARIATE_CANDIDATES,
    SYNTH_ESTIMATORS,
    ArmSampleRatio,
    PreFit,
    SampleRatio,
    arm_sample_ratio_check,
    covariate_balance,
    final_estimates,
    normalise_panel,
    pre_period_fits,
    replay_estimates,
    sample_ratio_check,
    split_verdicts,
    to_panel,
)
from analysis.report.verdict import latest_verdict, verdict_section

__all__ = [
    "COVARIATE_CANDIDATES",
    "SYNTH_ESTIMATORS",
    "ArmSampleRatio",
    "PreFit",
    "Report",
    "SampleRatio",
    "arm_sample_ratio_check",
    "assignment_heatmap",
    "balance_figure",
    "build_report",
    "covariate_balance",
    "final_estimates",
    "latest_verdict",
    "normalise_panel",
    "pre_period_figure",
    "pre_period_fits",
    "replay_estimates",
    "running_estimates_figure",
    "sample_ratio_check",
    "scorecard_section",
    "split_verdicts",
    "to_panel",
    "verdict_section",
]
