"""Validation studies that run as modules of the package (``python -m lab.studies.NAME``):
no path edits, public imports only. Each writes its figures under docs/figures/ and the page
that shows them renders from those files."""
