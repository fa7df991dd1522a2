"""How the sales path counts units: whole thousandths (one truth for the wire and the store).

A sale's units may be fractional (goods sold by weight) and negative (a return). The panel's
cells sum them as whole milli-units in 64-bit integers, so a cell's sum is exact and does not
depend on the order its sales arrived in (summed floats do: (0.1 + 0.2) + 0.3 differs from
0.1 + (0.2 + 0.3)). A quantity finer than a thousandth is refused at the door, not rounded.
"""

from __future__ import annotations

#: units are counted in thousandths
UNITS_SCALE = 1000
