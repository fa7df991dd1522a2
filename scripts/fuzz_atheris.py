"""Coverage-guided fuzzing of the wire decoders with atheris (libFuzzer for Python).

Usage: .venv/bin/python scripts/fuzz_atheris.py [libFuzzer options] [CORPUS_DIR ...]
e.g.   .venv/bin/python scripts/fuzz_atheris.py -max_total_time=300 .fuzz/atheris-corpus
(scripts/fuzz_nightly.py --atheris SECONDS runs it with a kept corpus and a dictionary.)

Every input is given, as bytes, to the sales decoder (``streams.worker.sale_decoder.decode_sale``,
msgspec fast path + pydantic fallback) and to the pydantic decoders of sales, competitor
prices and commands (``streams.worker.schemas.decode``). :func:`check` holds the invariants of the
hypothesis tests (tests/unit/streams/worker/test_fuzz_decoders.py, tests/unit/streams/worker/test_sale_decoder.py):

- a decoder returns a valid event or raises DecodeError with a reason from a closed set;
  any other exception is a crash;
- every accepted event satisfies the wire rules, checked here independently of the models;
- the sales fast path and the pydantic path agree: same verdict, same reason and message,
  same values, same instant and UTC offset.

Inputs whose first byte is odd are not decoded as they are: the rest of the bytes drive
:func:`near_valid`, which edits a few fields of a valid event (numbers, odd strings, near-RFC
3339 timestamps, revenue recomputed so the revenue rule passes), so that libFuzzer also
explores the accepting paths, where the two sale decoders could disagree.

atheris 3.0.0 has a manylinux x86_64 wheel for CPython 3.11 (``pip install atheris``); it is
in the ``dev`` extra on that platform only (elsewhere it needs clang with libFuzzer to
build). The decoders' Python code is instrumented; msgspec (C) and pydantic-core (Rust) are
not, so coverage counts our code's branches, and libFuzzer's mutations do the rest.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REASONS = {
    "empty",
    "too_large",
    "malformed_json",
    "missing_field",
    "unknown_field",
    "unsupported_version",
    "invalid_field",
}
FIELDS = ("event_id", "product", "units", "revenue", "unit_price", "occurred_at", "currency")
_ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-")

SEEDS: list[bytes] = [
    json.dumps(d).encode()
    for d in (
        {
            "v": 1,
            "event_id": "e-1",
            "product": "sku-1",
            "units": 2,
            "revenue": 10.0,
            "unit_price": 5.0,
            "occurred_at": "2026-06-01T10:00:00+00:00",
        },
        {
            "event_id": "e:2",
            "product": "p.2",
            "units": 3,
            "revenue": 0.3,
            "unit_price": 0.1,
            "occurred_at": "2026-06-01T10:00:00.123456Z",
        },
        {
            "v": 1,
            "product": "sku-1",
            "competitor": "acme",
            "price": 4.99,
            "observed_at": "2026-06-01T10:00:00-05:00",
        },
        {
            "v": 1,
            "command_id": "c1",
            "kind": "create",
            "experiment": "x",
            "spec": {"id": "x", "products": ["a"]},
        },
        {"command_id": "c2", "kind": "stop", "experiment": "x", "reason": "guardrail"},
        {"command_id": "c3", "kind": "freeze", "freeze": {"start": "2026-06-01T00:00:00Z"}},
    )
]
DICTIONARY = [
    *(f'"{k}"' for k in FIELDS),
    '"v"',
    '"competitor"',
    '"price"',
    '"observed_at"',
    '"command_id"',
    '"kind"',
    '"experiment"',
    '"spec"',
    '"freeze"',
    '"reason"',
    '"create"',
    '"stop"',
    '"pause"',
    '"resume"',
    "null",
    "true",
    "false",
    "NaN",
    "Infinity",
    "1e999",
    "-0.0",
    "Z",
    "+00:00",
    "-23:59",
    "T",
    ".123456",
    ".1234567",
    "9999-12-31",
    "0001-01-01",
    "\\u0000",
    "\\ud800",
]


def _decoders() -> tuple[Any, ...]:
    from streams.worker.sale_decoder import decode_sale
    from streams.worker.schemas import Command, CompetitorPrice, DecodeError, Sale, decode

    return decode_sale, decode, Sale, CompetitorPrice, Command, DecodeError


def _ident(x: object) -> bool:
    return isinstance(x, str) and 1 <= len(x) <= 128 and set(x) <= _ID_CHARS


def _valid_sale(s: Any) -> None:
    # v2: a return is negative, goods by weight fractional, in whole thousandths
    assert s.units != 0 and -1_000_000 <= s.units <= 1_000_000, s
    assert s.units_milli == round(s.units * 1000) and abs(s.units * 1000 - s.units_milli) <= 1e-6
    assert math.isfinite(s.revenue) and abs(s.revenue) <= 1e9, s
    assert math.isfinite(s.unit_price) and s.unit_price > 0, s
    assert s.occurred_at.utcoffset() is not None, s
    assert _ident(s.event_id) and _ident(s.product), s
    assert s.currency is None or (len(s.currency) == 3 and s.currency.isupper()), s
    expected = s.units * s.unit_price
    assert abs(s.revenue - expected) <= max(0.01, 1e-6 * abs(expected)), s


# The decoders' own Python code has few branches (msgspec, pydantic-core, re and datetime
# are C or Rust, not instrumented), so libFuzzer's coverage would stop growing within seconds.
# Each outcome - decoder x verdict or reason x field named in the message - therefore gets a
# function of its own, instrumented in main(): reaching a new outcome is new coverage, and
# libFuzzer keeps the input that did.
_FIELD_NAMES = (
    *FIELDS, "v", "competitor", "price", "observed_at", "command_id", "kind", "experiment",
    "spec", "freeze", "reason", "extra", "(message)",
)  # fmt: skip
_OUTCOMES = [
    f"{decoder}:{verdict}:{field}"
    for decoder in ("fast", "sale", "competitor", "command")
    for verdict in ("accepted", *sorted(REASONS))
    for field in ("", *_FIELD_NAMES)
]
_namespace: dict[str, Any] = {}
exec("\n".join(f"def outcome_{i}(): return {i}" for i in range(len(_OUTCOMES))), _namespace)
OUTCOME_EDGES: dict[str, Any] = {key: _namespace[f"outcome_{i}"] for i, key in enumerate(_OUTCOMES)}


def _verdict(fn: Any, raw: bytes, decode_error: type[Exception], decoder: str) -> tuple[str, Any]:
    try:
        s = fn(raw)
    except decode_error as exc:
        reason, message = exc.reason, str(exc)  # type: ignore[attr-defined]
        assert reason in REASONS, (reason, message)
        field = message.split(":", 1)[0] if ":" in message else ""
        OUTCOME_EDGES.get(f"{decoder}:{reason}:{field}", _no_edge)()
        return "rejected", (reason, message)
    OUTCOME_EDGES[f"{decoder}:accepted:"]()
    return "accepted", s


def _no_edge() -> None:
    return None


def check(raw: bytes) -> None:
    """Raise AssertionError (or the decoder's unexpected exception) when an invariant fails."""
    decode_sale, decode, sale_model, competitor_model, command_model, decode_error = _decoders()
    fast, f = _verdict(decode_sale, raw, decode_error, "fast")
    ref, r = _verdict(lambda b: decode(sale_model, b), raw, decode_error, "sale")
    assert fast == ref, (fast, f, ref, r)
    if fast == "rejected":
        assert f == r, (f, r)
    else:
        _valid_sale(f)
        _valid_sale(r)
        assert tuple(getattr(f, k) for k in FIELDS) == tuple(getattr(r, k) for k in FIELDS)
        assert f.occurred_at.isoformat() == r.occurred_at.isoformat()
    verdict, c = _verdict(lambda b: decode(competitor_model, b), raw, decode_error, "competitor")
    if verdict == "accepted":
        assert _ident(c.product) and _ident(c.competitor), c
        assert math.isfinite(c.price) and c.price > 0, c
        assert c.observed_at.utcoffset() is not None, c
    verdict, m = _verdict(lambda b: decode(command_model, b), raw, decode_error, "command")
    if verdict == "accepted":
        assert _ident(m.command_id), m
        assert m.experiment is None or _ident(m.experiment), m
        assert m.kind != "create" or m.spec is not None, m
        assert m.kind not in ("stop", "pause", "resume") or m.experiment, m
        assert m.kind != "freeze" or m.freeze is not None, m
        assert m.reason is None or len(m.reason) <= 500, m


TEMPLATES: list[dict[str, Any]] = [json.loads(seed) for seed in SEEDS[:4]]
_ALPHABET = 'aZ09_.:-|\n \u00e4\u20ac\U0001f600\x00"\\/T+Zz'


def _instant(fdp: Any) -> str:
    """A timestamp near RFC 3339: every component may be out of range or oddly written."""
    y, mo, d = (fdp.ConsumeIntInRange(0, hi) for hi in (10_000, 13, 32))
    h, mi, sec = (fdp.ConsumeIntInRange(0, hi) for hi in (25, 61, 61))
    date, time_ = f"{y:04d}-{mo:02d}-{d:02d}", f"{h:02d}:{mi:02d}:{sec:02d}"
    frac = fdp.ConsumeIntInRange(0, 9)
    if frac:
        time_ += "." + "".join(str(fdp.ConsumeIntInRange(0, 9)) for _ in range(frac))
    zone = fdp.PickValueInList(["Z", "z", "", "+", "-"])
    if zone in ("+", "-"):
        zone += f"{fdp.ConsumeIntInRange(0, 25):02d}:{fdp.ConsumeIntInRange(0, 61):02d}"
    return date + fdp.PickValueInList(["T", "t", " ", "_"]) + time_ + zone


def _value(fdp: Any) -> Any:
    kind = fdp.ConsumeIntInRange(0, 10)
    if kind == 0:
        return fdp.ConsumeInt(fdp.ConsumeIntInRange(1, 10))
    if kind == 1:
        return fdp.ConsumeFloat()
    if kind == 2:
        return fdp.PickValueInList([math.nan, math.inf, -math.inf, -0.0, 0.0, 1e-320, 2**53 + 1])
    if kind == 3:
        return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 140))
    if kind == 4:
        n = fdp.ConsumeIntInRange(0, 130)
        return "".join(fdp.PickValueInList(list(_ALPHABET)) for _ in range(n))
    if kind == 5:
        return _instant(fdp)
    if kind == 6:
        return fdp.PickValueInList([None, True, False, [], {}, [1], {"a": 1}])
    if kind == 7:
        return str(fdp.ConsumeIntInRange(-5, 2_000_000))
    if kind == 8:
        return fdp.ConsumeIntInRange(-2, 1_000_002)
    if kind == 9:
        return round(fdp.ConsumeFloatInRange(0.0, 1e7), fdp.ConsumeIntInRange(0, 12))
    return fdp.PickValueInList(["create", "stop", "pause", "resume", "freeze", "x", "1"])


def near_valid(fdp: Any) -> bytes:
    """A valid event (sale, competitor price or command) with a few fields replaced, added or
    dropped; for sales the revenue often recomputed from the new units and price, so that
    inputs reach the accepting paths and the places where the two sale decoders could differ."""
    doc = dict(fdp.PickValueInList(TEMPLATES))
    for _ in range(fdp.ConsumeIntInRange(1, 3)):
        field = fdp.PickValueInList([*sorted(doc), "v", "extra"])
        if fdp.ConsumeIntInRange(0, 9) == 0:
            doc.pop(field, None)
        else:
            doc[field] = _value(fdp)
    units, price = doc.get("units"), doc.get("unit_price")
    numbers = isinstance(units, int | float) and isinstance(price, int | float)
    if "revenue" in doc and numbers and fdp.ConsumeBool():
        with contextlib.suppress(OverflowError):  # a huge int times a float
            doc["revenue"] = units * price * (1 + fdp.ConsumeFloatInRange(-2e-6, 2e-6))
    try:
        text = json.dumps(doc, allow_nan=True, ensure_ascii=fdp.ConsumeBool())
    except (ValueError, OverflowError):
        return b""
    return text.encode("utf-8", "surrogatepass")


def write_seeds(corpus: Path) -> None:
    corpus.mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate(SEEDS):
        (corpus / f"seed-{i}").write_bytes(seed)


def write_dictionary(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{json.dumps(tok)}\n" for tok in DICTIONARY), encoding="utf-8")


def main() -> None:
    import atheris

    with atheris.instrument_imports(include=["streams"]):
        _decoders()
    for key, fn in OUTCOME_EDGES.items():
        OUTCOME_EDGES[key] = atheris.instrument_func(fn)

    def one_input(data: bytes) -> None:
        # an odd first byte: the rest drives a near-valid event; else the bytes go as they are
        if data[:1] and data[0] & 1:
            check(near_valid(atheris.FuzzedDataProvider(data[1:])))
        else:
            check(data)

    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
