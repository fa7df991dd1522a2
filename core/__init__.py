"""What controller/, analysis/ and streams/ share: the error root and the analysis worker's ports.

It imports nothing of pricelab, so every package may import it (docs/architecture.md).
"""
