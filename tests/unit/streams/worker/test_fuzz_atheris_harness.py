"""The atheris harness's invariant check (scripts/fuzz_atheris.py) on its seeds and known edge
cases, without atheris: CI keeps the harness working; the fuzzing itself runs at night."""

from __future__ import annotations

import random
from pathlib import Path
from types import ModuleType

import pytest

from tests.unit._scripts import load_script

_PATH = Path(__file__).resolve().parents[4] / "scripts" / "fuzz_atheris.py"


def _harness() -> ModuleType:
    return load_script(_PATH, "fuzz_atheris")


H = _harness()
SALE = (
    b'{"event_id":"a","product":"p","units":1,"revenue":1,'
    b'"unit_price":1,"occurred_at":"2026-06-01T10:00:00Z"}'
)


@pytest.mark.parametrize(
    "raw",
    [
        *H.SEEDS,
        b"",
        b"{",
        b"\xff\xfe",
        b"[" * 30_000 + b"]" * 30_000,
        b" " * (64 * 1024 + 1),
        SALE,
        SALE.replace(b"10:00:00Z", b"10:00:00.1234567Z"),
        SALE.replace(b'"units":1', b'"units":1.0'),
        SALE.replace(b'"revenue":1', b'"revenue":1e999'),
        b"\xef\xbb\xbf" + SALE,
        SALE + b" ",
        # found by atheris: offset minutes >= 60, accepted by the fast path (sale_decoder.py)
        SALE.replace(b"10:00:00Z", b"10:00:00.4181-06:61"),
    ],
)
def test_the_harness_check_holds(raw: bytes) -> None:
    H.check(raw)


def test_the_check_catches_a_disagreement(monkeypatch: pytest.MonkeyPatch) -> None:
    # a fast path that rejects what pydantic accepts must fail the check
    import streams.worker.sale_decoder as sd
    from streams.worker.schemas import DecodeError

    def reject(raw: bytes) -> None:
        raise DecodeError("invalid_field", "no")

    monkeypatch.setattr(sd, "decode_sale", reject)
    with pytest.raises(AssertionError):
        H.check(SALE)


def test_dictionary_and_seeds_are_written(tmp_path: Path) -> None:
    H.write_seeds(tmp_path / "corpus")
    H.write_dictionary(tmp_path / "tokens.dict")
    assert len(list((tmp_path / "corpus").iterdir())) == len(H.SEEDS)
    lines = (tmp_path / "tokens.dict").read_text().splitlines()
    assert len(lines) == len(H.DICTIONARY) and all(x.startswith('"') for x in lines)


def test_near_valid_inputs_hold_the_check() -> None:
    # the structured half of the harness, driven by fixed pseudo-random bytes
    atheris = pytest.importorskip("atheris")
    rng = random.Random(7)
    for _ in range(300):
        data = rng.randbytes(rng.randrange(0, 200))
        H.check(H.near_valid(atheris.FuzzedDataProvider(data)))
