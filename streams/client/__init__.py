"""The running stack's clients: what the operator's CLI, the notebook API and the live
simulation send to it and read back (commands, assignments, estimates, the audit trail, the
panel, the report), as of the stack's own clock."""
