"""Validation studies as declarations (issue #40): each module declares a
:class:`lab.studies.harness.Study` (its cases, one run's rows, its runs and seed, its summary and
the page its template renders into), and one runner runs, saves and renders it:

    python -m lab.studies NAME [--runs N] [--jobs J] [--render-only]

The harness (``harness``) holds the loop, the jobs, the seeds and the Monte-Carlo statistics;
``comparison`` declares cases of the design comparison's own runs; ``render`` fills the Jinja2
templates under ``templates/`` from the saved results; ``catalog`` lists the studies by name.
No path edits, public imports only. ``verdict`` keeps its own command line for now
(``python -m lab.studies.verdict``)."""
