"""Stream edge: faust app, wire schemas, agents, metrics, CLI and the embedded stack."""
