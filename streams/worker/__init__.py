"""The running worker: what happens to a sale and a command.

app (the faust app and its agents), consumer (batch consumers), handlers and control (decode,
call the domain), sinks (publish), kafka (clients, topics), schemas and contracts (the wire),
metrics, readiness, logging, runtime (one process's objects, built from settings).
"""
