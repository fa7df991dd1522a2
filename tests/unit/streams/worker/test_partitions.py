"""Vectorised murmur2 partitioning picks exactly the partitions the producer would pick."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner, murmur2
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.worker.kafka import murmur2_many, partitions_of


@settings(max_examples=200, deadline=None)
@given(
    keys=st.lists(st.binary(max_size=40), max_size=60),
    n=st.integers(1, 16),
)
def test_vectorised_murmur2_and_partitions_equal_the_producers(keys: list[bytes], n: int) -> None:
    assert [int(h) for h in murmur2_many(keys)] == [murmur2(k) for k in keys]
    parts = list(range(n))
    pick = DefaultPartitioner()
    assert partitions_of(keys, parts) == [pick(k, parts, parts) for k in keys]


def test_partitions_follow_the_sorted_partition_ids_given() -> None:
    keys = [f"sku-{i}".encode() for i in range(500)]
    parts = [3, 5, 8]
    pick = DefaultPartitioner()
    assert partitions_of(keys, parts) == [pick(k, parts, parts) for k in keys]
