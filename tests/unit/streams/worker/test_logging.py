"""Structured logs: one JSON object per line, and no secret ever in a line."""

from __future__ import annotations

import io
import json
import logging
import logging.config

from pydantic import SecretStr

from controller.settings import KafkaSettings, RedisSettings, Settings
from streams.worker.logging import JsonFormatter, redact, secret_values, worker_logging_config

SASL_PW = "sasl-Pa55word-xyz"
URL_PW = "url-pw-9f8e7d"
ACL_PW = "acl-pw-123abc"


def _settings() -> Settings:
    return Settings(
        kafka=KafkaSettings(
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="PLAIN",
            sasl_username="svc",
            sasl_password=SecretStr(SASL_PW),
        ),
        redis=RedisSettings(
            url=SecretStr(f"redis://svc:{URL_PW}@cache:6379/0"), password=SecretStr(ACL_PW)
        ),
    )


def _capture(settings: Settings) -> tuple[logging.Logger, io.StringIO]:
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(JsonFormatter(secret_values(settings)))
    logger = logging.getLogger("pricelab.test.logging")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, buf


def test_records_render_as_json_lines_with_extras():
    logger, buf = _capture(_settings())
    logger.info("batch of %d applied", 3, extra={"topic": "sales", "n": 3})
    doc = json.loads(buf.getvalue().strip())
    assert doc["message"] == "batch of 3 applied"
    assert doc["level"] == "INFO" and doc["logger"] == "pricelab.test.logging"
    assert doc["topic"] == "sales" and doc["n"] == 3
    assert doc["ts"].endswith("+00:00")


def test_no_secret_reaches_a_log_line():
    s = _settings()
    logger, buf = _capture(s)
    logger.info("settings: %s", s)
    logger.info("settings repr: %r", s)
    logger.warning("kafka client kwargs %s", s.kafka.client_kwargs())  # holds the password
    logger.warning("connecting to %s", s.redis.url.get_secret_value())  # a mistake, caught
    logger.info("raw secret by mistake: %s / %s", SASL_PW, ACL_PW)
    logger.info("some other url redis://admin:other-pw@host:1/0")
    try:
        raise ConnectionError(f"cannot reach redis://svc:{URL_PW}@cache:6379/0")
    except ConnectionError:
        logger.exception("redis down")
    text = buf.getvalue()
    for secret in (SASL_PW, URL_PW, ACL_PW, "other-pw"):
        assert secret not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert len(lines) == 7
    assert "redis://svc:***@cache:6379/0" in lines[3]["message"]
    assert "exc" in lines[6] and "***" in lines[6]["exc"]


def test_worker_config_installs_the_json_formatter(capsys):
    s = _settings()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    logging.config.dictConfig(worker_logging_config(s))
    try:
        logging.getLogger("pricelab.any").error("password is %s", URL_PW)
        out = capsys.readouterr().out.strip().splitlines()[-1]
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])
    doc = json.loads(out)
    assert doc["message"] == "password is ***"


def test_redact_replaces_longest_secrets_first():
    assert redact("ab abc", ["ab", "abc"]) == "*** ***"
    assert redact("nothing here", []) == "nothing here"
