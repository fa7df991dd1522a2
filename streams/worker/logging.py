"""Structured JSON logs, one object per line, with secrets scrubbed from every line.

``worker_logging_config(settings)`` is the ``logging.config.dictConfig`` a worker passes to
faust/mode. Each record becomes ``{"ts", "level", "logger", "message", "pid", ...extras}``;
exceptions go in ``"exc"``. Before a line is written, every secret value held by the
settings (SASL password, Redis password, the password inside the Redis URL, the Redis ACL
users' passwords) and any ``scheme://user:password@`` in the text is replaced by ``***``. SecretStr already prints as
``**********``; this is the net under it (a secret formatted into a message by mistake, a
client library logging its connection URL, a traceback showing a local variable).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from controller.settings import Settings

MASK = "***"
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)[^@\s]+(?P<at>@)")
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def secret_values(settings: Settings) -> list[str]:
    """Every secret string the settings hold (never log this list)."""
    out: list[str] = []
    k, r = settings.kafka, settings.redis
    if k.sasl_password is not None:
        out.append(k.sasl_password.get_secret_value())
    if r.password is not None:
        out.append(r.password.get_secret_value())
    if r.sentinel_password is not None:
        out.append(r.sentinel_password.get_secret_value())
    for acl in (
        settings.acl_password_controller,
        settings.acl_password_analysis,
        settings.acl_password_operator,
        settings.acl_password_console,
    ):
        if acl is not None:
            out.append(acl.get_secret_value())
    url_password = urlsplit(r.url.get_secret_value()).password
    if url_password:
        out.append(url_password)
    return [s for s in out if s]


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    text = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK + m.group("at"), text)
    for s in sorted(set(secrets), key=len, reverse=True):  # longest first: no partial leaks
        text = text.replace(s, MASK)
    return text


class JsonFormatter(logging.Formatter):
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = list(secrets)

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            doc["exc"] = record.exc_text
        return redact(json.dumps(doc, default=str), self.secrets)


def worker_logging_config(settings: Settings) -> dict[str, Any]:
    """dictConfig for a worker: JSON lines on stdout at ``settings.log_level``."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {"()": JsonFormatter, "secrets": secret_values(settings)},
        },
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stdout",
            }
        },
        "root": {"level": settings.log_level.upper(), "handlers": ["default"]},
    }
