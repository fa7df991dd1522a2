"""The web console: ``pricelab console``, one more edge (docs/console.md).

auth    the users file (argon2 hashes), the roles and what each may do
feed    every experiment's estimates, followed live by one reader of the estimates topic
statuses  the experiments' status changes, followed live from the experiment-events topic
health  the experiment page's Health section (streams.client.health's checks)
views   the API's documents, put together from the client's views (streams.client)
app     the Starlette application: sign-in, sessions, CSRF, the JSON API, the pages, the live
        stream
cli     ``pricelab console`` (serve) and ``pricelab console user`` (a users-file line)

It reads what the CLI reads and acts as the CLI acts (streams.client): it owns no query of
its own and no second copy of a rule, and its pages are templates over the API's documents.
"""

#: the client modules the console opens Kafka through, each declaring ``KAFKA_READS`` and
#: ``KAFKA_WRITES``: its role's grants in ``pricelab acl --kafka`` (streams/cli/kafka_acl.py;
#: tests/unit/streams/console/test_console_acl.py checks the console imports no other)
KAFKA_CLIENTS = (
    "streams.client.commands",
    "streams.client.history",
    "streams.client.estimates",
    "streams.client.health",
    "streams.client.letter_follower",
    "streams.client.events",
)
