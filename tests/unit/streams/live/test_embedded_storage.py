"""The embedded broker's storage: memory by default, or a bucket of its own on an S3 server.

The S3 server here is a stand-in that records the requests (a real one, such as moto_server,
is what tests/integration/test_contract_stateful.py uses with PRICELAB_CONTRACT_BROKER_S3)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from controller.errors import EmbeddedStackError
from streams.live.embedded import EmbeddedStack


class _Recorder(BaseHTTPRequestHandler):
    seen: list[tuple[str, str]] = []
    status = 200

    def do_PUT(self) -> None:  # noqa: N802 - the handler's protocol
        _Recorder.seen.append(("PUT", self.path))
        self.send_response(self.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def s3() -> Iterator[str]:
    _Recorder.seen, _Recorder.status = [], 200
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_the_broker_keeps_its_topics_in_memory_by_default() -> None:
    assert EmbeddedStack()._broker_storage() == ("memory://tansu/", None)


def test_with_an_s3_server_the_broker_gets_a_bucket_of_its_own(s3: str) -> None:
    storage, env = EmbeddedStack(broker_s3_endpoint=s3)._broker_storage()
    again, _ = EmbeddedStack(broker_s3_endpoint=s3)._broker_storage()
    assert storage.startswith("s3://pricelab-") and storage.endswith("/")
    assert again != storage  # two stacks on one server share nothing
    bucket = storage.removeprefix("s3://").rstrip("/")
    assert ("PUT", f"/{bucket}") in _Recorder.seen
    assert env is not None
    assert env["AWS_ENDPOINT"] == s3.rstrip("/")
    assert env["AWS_ALLOW_HTTP"] == "true"


def test_an_s3_server_that_refuses_the_bucket_is_one_sentence(s3: str) -> None:
    _Recorder.status = 403
    with pytest.raises(EmbeddedStackError, match="could not make a bucket for the broker at"):
        EmbeddedStack(broker_s3_endpoint=s3)._broker_storage()
