"""``python -m streams.cli``: the ``pricelab`` command line."""

from streams.cli.entry import main

main()
