"""A batch built a run of records at a time holds exactly the bytes aiokafka's own producer
batch holds for the same records, timestamp and codec, and reads back as those records."""

from __future__ import annotations

import gzip
import random

import numpy as np
import pytest
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatch
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.worker import record_batch as rb

TS = 1_780_000_000_123
#: aiokafka's compression attribute of each producer codec
BITS = {None: 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


def _aiokafka(keys, codes, templates, idx, compression, max_bytes=512 * 1024) -> bytes:  # type: ignore[no-untyped-def]
    """What aiokafka's producer sends for these records (``producer.create_batch()``)."""
    batch = BatchBuilder(max_bytes, BITS[compression])
    for i in idx.tolist():
        head, tail = templates[codes[i]]
        key = keys[i].encode()
        assert batch.append(timestamp=TS, key=key, value=head + key + tail) is not None
    return bytes(batch._build())


def _setup(seed: int, n: int, n_templates: int = 3):  # type: ignore[no-untyped-def]
    rng = random.Random(seed)
    keys = [f"{'k' * rng.randint(0, 9)}{i}" for i in range(n)]
    templates = [
        (b'{"v":1,"product":"', b'","arm":"control"}'),
        (b'{"v":1,"note":"' + b"x" * 400 + b'","product":"', b'"}'),
        (b"", b""),  # the value is the key alone
    ][:n_templates]
    codes = np.array([rng.randrange(len(templates)) for _ in keys], dtype=np.int64)
    return keys, codes, templates


@pytest.mark.parametrize("compression", [None, "gzip", "snappy", "lz4", "zstd"])
def test_every_batch_is_byte_for_byte_aiokafkas_for_each_codec(
    compression: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # gzip's header holds the second it was written: one second for both encoders
    monkeypatch.setattr(gzip.time, "time", lambda: 1_780_000_000.0)
    keys, codes, templates = _setup(1, 12_000)
    packed = rb.Keys(keys)
    order = rb.batch_order(packed, codes, np.arange(len(keys)))
    batches = list(rb.split(packed, codes, templates, order, 512 * 1024))
    assert len(batches) > 3  # and offset deltas of one and two varint bytes in each
    seen = 0
    for idx in batches:
        got = rb.build(packed, codes, templates, idx, compression=compression, timestamp_ms=TS)
        assert bytes(got) == _aiokafka(keys, codes, templates, idx, compression)
        records = list(DefaultRecordBatch(bytes(got)))
        assert [r.offset for r in records] == list(range(len(idx)))
        for r, i in zip(records, idx.tolist(), strict=True):
            head, tail = templates[codes[i]]
            assert r.key == keys[i].encode()
            assert r.value == head + keys[i].encode() + tail
        seen += len(idx)
    assert seen == len(keys) and sorted(np.concatenate(batches).tolist()) == list(range(len(keys)))


@pytest.mark.parametrize("compression", ["zstd", "gzip"])
@pytest.mark.parametrize("random_bytes", [False, True])
def test_a_scratch_reused_across_batches_of_every_size_leaves_nothing_behind(
    compression: str, random_bytes: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # one publisher's buffers, reused: a large batch, then smaller ones (whose records must
    # not pick up the tail of the one before), then a larger one again (the buffers grow).
    # Every batch is kept until the end, as the producer keeps them until they are sent:
    # none may share memory with the buffers the next batch is made in. Random templates
    # do not compress, so zstd's output fills the room it is given.
    monkeypatch.setattr(gzip.time, "time", lambda: 1_780_000_000.0)
    keys, codes, templates = _setup(2, 12_000)
    if random_bytes:
        rng = random.Random(3)
        templates = [(rng.randbytes(n), rng.randbytes(m)) for n, m in ((300, 40), (17, 900))]
        codes = codes % 2
    packed = rb.Keys(keys)
    order = rb.batch_order(packed, codes, np.arange(len(keys)))
    scratch = rb.Scratch()
    built = []
    for limit in (512 * 1024, 4 * 1024, 700, 64 * 1024, 1024 * 1024):
        for idx in list(rb.split(packed, codes, templates, order, limit))[:3]:
            got = rb.build(
                packed, codes, templates, idx, compression=compression, timestamp_ms=TS,
                scratch=scratch,
            )  # fmt: skip
            built.append((limit, idx, got))
    # a batch whose records pass 600 KiB before compression
    assert max(len(_aiokafka(keys, codes, templates, i, None, n)) for n, i, _ in built) > 600_000
    for limit, idx, got in built:
        assert bytes(got) == _aiokafka(keys, codes, templates, idx, compression, limit)


def test_offset_deltas_past_one_and_two_varint_bytes() -> None:
    # short records: a 512 KB batch holds more than 8,192 of them (offset delta 8192 is the
    # first of three varint bytes, 64 the first of two)
    keys = [f"{i:06d}" for i in range(40_000)]
    codes = np.zeros(len(keys), dtype=np.int64)
    templates = [(b"", b"")]
    packed = rb.Keys(keys)
    idx = next(rb.split(packed, codes, templates, np.arange(len(keys)), 512 * 1024))
    assert len(idx) > 8192
    got = rb.build(packed, codes, templates, idx, timestamp_ms=TS)
    assert bytes(got) == _aiokafka(keys, codes, templates, idx, None)


def test_batches_stay_within_the_limit_and_a_larger_record_goes_alone() -> None:
    keys = [f"p{i}" for i in range(3000)]
    codes = np.array([1 if i == 1500 else 0 for i in range(3000)], dtype=np.int64)
    templates = [(b'{"p":"', b'"}'), (b"x" * 20_000, b"")]
    packed = rb.Keys(keys)
    limit = 16 * 1024
    batches = list(rb.split(packed, codes, templates, np.arange(3000), limit))
    sizes = [len(rb.build(packed, codes, templates, idx, timestamp_ms=TS)) for idx in batches]
    big = [i for i, idx in enumerate(batches) if 1500 in idx.tolist()]
    assert len(big) == 1 and batches[big[0]].tolist() == [1500] and sizes[big[0]] > limit
    assert all(s <= limit for i, s in enumerate(sizes) if i != big[0])
    # aiokafka's builder at the same limit cuts the same batches
    assert all(
        len(_aiokafka(keys, codes, templates, idx, None, limit)) == size
        for idx, size in zip(batches, sizes, strict=True)
    )


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(
        st.tuples(st.text("abcXYZ019-_.:", min_size=0, max_size=40), st.integers(0, 2)),
        min_size=1,
        max_size=300,
        unique_by=lambda kc: kc[0],
    ),
    compression=st.sampled_from([None, "zstd"]),
)
def test_any_keys_and_templates_in_order_given(
    data: list[tuple[str, int]], compression: str | None
) -> None:
    keys = [k for k, _ in data]
    codes = np.array([c for _, c in data], dtype=np.int64)
    templates = [(b"", b""), (b'{"k":"', b'"}'), (b"h" * 130, b"t" * 200)]
    packed = rb.Keys(keys)
    idx = np.arange(len(keys))[::-1].copy()  # any order, kept as given
    got = rb.build(packed, codes, templates, idx, compression=compression, timestamp_ms=TS)
    assert bytes(got) == _aiokafka(keys, codes, templates, idx, compression)


def test_batch_order_groups_templates_then_key_lengths() -> None:
    keys, codes, templates = _setup(3, 500)
    packed = rb.Keys(keys)
    order = rb.batch_order(packed, codes, np.arange(len(keys)))
    pairs = [(int(codes[i]), len(keys[i])) for i in order.tolist()]
    assert pairs == sorted(pairs)
    assert sorted(order.tolist()) == list(range(len(keys)))


def test_an_empty_batch_is_refused() -> None:
    packed = rb.Keys(["a"])
    with pytest.raises(ValueError, match="at least one record"):
        rb.build(packed, np.zeros(1, dtype=np.int64), [(b"", b"")], np.array([], dtype=np.int64))


def test_a_built_batch_is_handed_over_closed_with_its_bytes() -> None:
    keys, codes, templates = _setup(4, 50)
    packed = rb.Keys(keys)
    buf = rb.build(packed, codes, templates, np.arange(50), timestamp_ms=TS)
    built = rb.BuiltBatch(buf, 50)
    assert built.closed() and built.record_count() == 50 and built.size() == len(buf)
    assert built._build() is buf
    assert built.append(timestamp=None, key=b"k", value=b"v") is None
