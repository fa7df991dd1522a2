"""The tools layer: the market simulator, ``pricelab simulate`` and ``compare-designs``.

These tools use the controller's designs and the analysis library's estimators, so they sit
above both; ``controller/`` and ``analysis/`` never import them (tests/unit/project/test_boundaries.py).
"""
