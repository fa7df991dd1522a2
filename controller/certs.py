"""Checks of the certificate files a setting names, before a client uses them: a file that
holds no PEM certificate, or a certificate that has expired (or is not valid yet), is one
sentence naming the setting, instead of an SSL error deep in a client library's handshake.
"""

from __future__ import annotations

import functools
import re
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

from controller.errors import ConfigurationError

_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def check_certificate_file(path: str, setting: str, now: datetime, *, bundle: bool = False) -> None:
    """Raise :class:`ConfigurationError` naming ``setting`` unless ``path`` holds at least
    one PEM certificate valid at ``now`` (an aware datetime). ``bundle`` (a CA file): any
    one valid certificate will do, since a system bundle may carry an expired root beside
    the live ones; otherwise (a client certificate and its chain) the first, the client's own,
    must be valid."""
    file = Path(path)
    if not file.is_file():
        raise ConfigurationError(f"{setting}: {path}: no such file")
    stat = file.stat()
    certs = _certificates(str(file), stat.st_mtime_ns, stat.st_size)
    if not certs:
        raise ConfigurationError(
            f"{setting}: {path} is not a certificate (no PEM 'BEGIN CERTIFICATE' block that parses)"
        )
    checked = certs if bundle else certs[:1]
    faults = [_fault(cert, now) for cert in checked]
    if all(faults):
        which = "" if len(checked) == 1 else f" (and the other {len(checked) - 1} as well)"
        raise ConfigurationError(f"{setting}: {path}: {faults[0]}{which}")


@functools.lru_cache(maxsize=32)
def _certificates(path: str, mtime_ns: int, size: int) -> tuple[Any, ...]:
    """The certificates a PEM file holds, read once per version of the file (the settings
    check their files whenever a client is built).

    Block by block: a bundle's odd certificate (a root with a negative serial number, which
    cryptography warns about and may one day refuse) does not spoil the others, and no
    library warning reaches the user's terminal."""
    from cryptography import x509

    certs = []
    for block in _PEM_CERT.findall(Path(path).read_bytes()):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                certs.append(x509.load_pem_x509_certificate(block))
            except ValueError:
                continue
    return tuple(certs)


def _fault(cert: object, now: datetime) -> str | None:
    from cryptography import x509

    assert isinstance(cert, x509.Certificate)
    subject = cert.subject.rfc4514_string() or "(no subject)"
    if cert.not_valid_after_utc < now:
        return f"the certificate {subject} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    if cert.not_valid_before_utc > now:
        return (
            f"the certificate {subject} is not valid before "
            f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
        )
    return None


def check_key_file(path: str, setting: str) -> None:
    """Raise :class:`ConfigurationError` naming ``setting`` unless ``path`` holds a PEM private
    key (unencrypted: the clients are given no passphrase)."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    file = Path(path)
    if not file.is_file():
        raise ConfigurationError(f"{setting}: {path}: no such file")
    try:
        load_pem_private_key(file.read_bytes(), password=None)
    except (ValueError, TypeError):
        raise ConfigurationError(
            f"{setting}: {path} is not an unencrypted PEM private key"
        ) from None


def holds_private_key(path: str) -> bool:
    """True when the PEM file at ``path`` also holds a private key (a combined certificate
    and key file, which ssl's ``load_cert_chain`` accepts without a separate key file)."""
    try:
        return b"PRIVATE KEY-----" in Path(path).read_bytes()
    except OSError:
        return False


def check_key_pair(cert: str, key: str | None, cert_setting: str, key_setting: str) -> None:
    """Raise :class:`ConfigurationError` naming both settings unless the key is the
    certificate's own (ssl loads the pair exactly as the clients will)."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        ctx.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise ConfigurationError(
            f"{cert_setting} and {key_setting} do not make a pair ({exc.reason or exc}): give "
            "the client certificate's own private key"
        ) from None
