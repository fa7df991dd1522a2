"""The web console: ``pricelab console``, one more edge (docs/console.md).

auth    the users file (argon2 hashes), the roles and what each may do
feed    the estimates of the experiments asked about, followed live from the estimates topic
views   the API's documents, put together from the client's views (streams.client)
app     the Starlette application: sign-in, sessions, CSRF, the JSON API, the pages, the live
        stream
cli     ``pricelab console`` (serve) and ``pricelab console user`` (a users-file line)

It reads what the CLI reads and acts as the CLI acts (streams.client): it owns no query of
its own and no second copy of a rule, and its pages are templates over the API's documents.
"""
