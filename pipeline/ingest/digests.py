"""64-bit digests of serialized records: how the row cleaner finds repeated rows and how
ExampleGen's shuffle buckets them, without holding the rows themselves."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np


def record_digest(record: bytes) -> int:
    """A 64-bit digest of a serialized record: the same bytes, the same number."""
    return int.from_bytes(hashlib.blake2b(record, digest_size=8).digest(), "little")


def batch_digests(records: Sequence[bytes]) -> np.ndarray:
    """The digests of a batch of records, as uint64 (8 bytes a row)."""
    return np.fromiter((record_digest(r) for r in records), dtype=np.uint64, count=len(records))


def repeated(digests: np.ndarray) -> frozenset[int]:
    """The digests that occur more than once."""
    values, counts = np.unique(digests, return_counts=True)
    return frozenset(int(v) for v in values[counts > 1])
