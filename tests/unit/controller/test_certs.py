"""Certificate files a TLS setting names are read before a client uses them
(controller/certs.py): each fault is one sentence naming the setting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from controller.certs import check_certificate_file, check_key_file
from controller.errors import ConfigurationError
from controller.settings import KafkaSettings, RedisSettings, Settings
from controller.store import make_redis
from streams.net.tls import make_certificates

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return make_certificates(tmp_path_factory.mktemp("tls"), now=NOW, valid_for=timedelta(days=2))


def test_a_valid_ca_and_certificate_pass(files) -> None:  # type: ignore[no-untyped-def]
    check_certificate_file(str(files.ca), "S", NOW)
    check_certificate_file(str(files.cert), "S", NOW + timedelta(days=1))
    check_key_file(str(files.key), "K")


def test_expired_and_not_yet_valid_name_the_setting_and_the_date(files) -> None:  # type: ignore[no-untyped-def]
    later = NOW + timedelta(days=3)
    with pytest.raises(ConfigurationError) as exc:
        check_certificate_file(str(files.ca), "PRICELAB_KAFKA__SSL_CAFILE", later)
    assert str(exc.value) == (
        f"PRICELAB_KAFKA__SSL_CAFILE: {files.ca}: the certificate "
        "CN=pricelab throw-away CA expired on 2026-11-27 12:00 UTC"
    )
    with pytest.raises(ConfigurationError, match="is not valid before 2026-11-25 11:59 UTC"):
        check_certificate_file(str(files.ca), "S", NOW - timedelta(hours=1))


def test_a_key_or_garbage_where_a_certificate_belongs(files, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigurationError, match=r"^S: .*server.key is not a certificate"):
        check_certificate_file(str(files.key), "S", NOW)
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    with pytest.raises(ConfigurationError, match="is not a certificate"):
        check_certificate_file(str(junk), "S", NOW)
    with pytest.raises(ConfigurationError, match="no such file"):
        check_certificate_file(str(tmp_path / "absent.pem"), "S", NOW)
    with pytest.raises(ConfigurationError, match="is not an unencrypted PEM private key"):
        check_key_file(str(files.ca), "K")


def test_settings_check_their_files_before_a_client_is_built(tmp_path: Path) -> None:
    files = make_certificates(tmp_path, now=datetime.now(UTC))  # the settings read the clock
    kafka = KafkaSettings(security_protocol="SSL", ssl_cafile=str(files.key))
    with pytest.raises(ConfigurationError, match="^PRICELAB_KAFKA__SSL_CAFILE: "):
        kafka.client_kwargs()
    no_key = KafkaSettings(security_protocol="SSL", ssl_certfile=str(files.cert))
    with pytest.raises(ConfigurationError, match="SSL_CERTFILE is set without .*and holds no"):
        no_key.client_kwargs()
    # PLAINTEXT reads no TLS file
    assert "ssl_context" not in KafkaSettings(ssl_cafile=str(files.key)).client_kwargs()

    redis = Settings(redis=RedisSettings(url="rediss://127.0.0.1:1/0", tls_ca_file=str(files.key)))
    with pytest.raises(ConfigurationError, match="^PRICELAB_REDIS__TLS_CA_FILE: "):
        make_redis(redis)
    mixed = Settings(redis=RedisSettings(url="redis://127.0.0.1:1/0", tls_ca_file=str(files.ca)))
    with pytest.raises(ConfigurationError, match="use rediss:// for TLS"):
        make_redis(mixed)


def test_the_throw_away_certificates_chain_and_name_loopback(tmp_path: Path) -> None:
    import contextlib
    import ssl

    files = make_certificates(tmp_path, now=datetime.now(UTC))

    # OpenSSL, not our code, judges the chain: the server certificate verifies against the CA
    # for 127.0.0.1 and localhost (a TLS server and client in memory)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(files.cert, files.key)
    for host in ("127.0.0.1", "localhost"):
        client = ssl.create_default_context(cafile=str(files.ca))
        c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
        cli = client.wrap_bio(c_in, c_out, server_hostname=host)
        srv = server.wrap_bio(s_in, s_out, server_side=True)
        for _ in range(10):
            for side, out, peer_in in ((cli, c_out, s_in), (srv, s_out, c_in)):
                with contextlib.suppress(ssl.SSLWantReadError):
                    side.do_handshake()
                peer_in.write(out.read())
        assert cli.version() is not None and cli.getpeercert()["subject"]


def test_a_ca_bundle_needs_one_valid_certificate_and_a_client_chain_its_first(
    files,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    # a system bundle may carry an expired root beside live ones: it is still usable; a
    # bundle whose every certificate has expired is not
    old = make_certificates(
        tmp_path / "old", now=NOW - timedelta(days=30), valid_for=timedelta(days=1)
    )
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(old.ca.read_bytes() + files.ca.read_bytes())
    check_certificate_file(str(bundle), "S", NOW, bundle=True)
    with pytest.raises(
        ConfigurationError, match=r"expired on 2026-10-27 .* \(and the other 1 as well\)"
    ):
        check_certificate_file(str(bundle), "S", NOW + timedelta(days=5), bundle=True)
    # a client certificate file: the first certificate is the client's own, and decides
    chain = tmp_path / "chain.pem"
    chain.write_bytes(old.cert.read_bytes() + files.ca.read_bytes())
    with pytest.raises(ConfigurationError, match="expired on 2026-10-27"):
        check_certificate_file(str(chain), "S", NOW)


def test_a_client_certificate_and_its_key(tmp_path: Path) -> None:
    import ssl

    mine = make_certificates(tmp_path / "a", now=datetime.now(UTC))
    other = make_certificates(tmp_path / "b", now=datetime.now(UTC))
    # a combined certificate-and-key file needs no key file (ssl's load_cert_chain takes it)
    combined = tmp_path / "combined.pem"
    combined.write_bytes(mine.cert.read_bytes() + mine.key.read_bytes())
    ok = KafkaSettings(security_protocol="SSL", ssl_cafile=str(mine.ca), ssl_certfile=str(combined))
    assert isinstance(ok.client_kwargs()["ssl_context"], ssl.SSLContext)
    # a key that is not the certificate's own names both settings
    wrong = KafkaSettings(
        security_protocol="SSL", ssl_certfile=str(mine.cert), ssl_keyfile=str(other.key)
    )
    with pytest.raises(
        ConfigurationError,
        match=r"^PRICELAB_KAFKA__SSL_CERTFILE and PRICELAB_KAFKA__SSL_KEYFILE do not make a pair",
    ):
        wrong.client_kwargs()
    lone_key = Settings(
        redis=RedisSettings(url="rediss://127.0.0.1:1/0", tls_key_file=str(mine.key))
    )
    with pytest.raises(ConfigurationError, match="TLS_KEY_FILE is set without .*TLS_CERT_FILE"):
        make_redis(lone_key)


def test_an_unparsable_block_in_a_bundle_does_not_spoil_the_rest(files, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bundle = tmp_path / "bundle.pem"
    junk = b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"
    bundle.write_bytes(junk + files.ca.read_bytes())
    check_certificate_file(str(bundle), "S", NOW, bundle=True)


def test_a_verification_failure_names_what_to_fix() -> None:
    import ssl

    from streams.net.probe import _tls_sentence

    def failure(code: int, said: str) -> ssl.SSLCertVerificationError:
        exc = ssl.SSLCertVerificationError(1, said)
        exc.verify_code, exc.verify_message = code, said
        return exc

    args = ("the Kafka broker", "h:1", "CA_SETTING", "PROTO_SETTING", "ADDRESS_SETTING")
    said = _tls_sentence(args[0], args[1], failure(62, "IP address mismatch"), *args[2:])
    assert "check ADDRESS_SETTING" in said and "CA_SETTING" not in said
    said = _tls_sentence(args[0], args[1], failure(10, "certificate has expired"), *args[2:])
    assert "renew it on the server" in said and "CA_SETTING" not in said
    said = _tls_sentence(args[0], args[1], failure(20, "unable to get local issuer"), *args[2:])
    assert "check CA_SETTING" in said


def test_the_throw_away_key_is_the_owners_only_also_in_a_reused_directory(tmp_path: Path) -> None:
    import stat

    (tmp_path / "server.key").write_text("old")
    (tmp_path / "server.key").chmod(0o644)
    files = make_certificates(tmp_path, now=NOW)
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
    check_key_file(str(files.key), "K")
    with pytest.raises(ValueError, match="at least one host"):
        make_certificates(tmp_path, now=NOW, hosts=())
