"""A snapshot's member keys in 6 bytes a member, found as fast as a sorted array of 8.

Keys are uniform 64-bit hashes, in ascending order. The index splits them into buckets by
their top bits (at least 16 bits, about 16 to 32 members a bucket) and keeps, for each
member, only its low 48 bits, big-endian, so that comparing bytes compares keys. A bucket's
top bits and a member's low 48 bits together are the whole key: the index is exact. A
lookup finds the 6 bytes among the few dozen of its bucket (``bytes.find``, in C).

The full keys stay in a local file, checked as they arrived: the snapshot's rewrite reads
them from there in order, and nothing else needs more than one key at a time.
"""

from __future__ import annotations

import sys
from array import array
from bisect import bisect_left, bisect_right
from typing import IO

from exporter.arrow_views import arrow_view

BIAS = 1 << 63  # keys are signed: shifted to unsigned for their top bits
LOW_BYTES = 6
LOW_MASK = (1 << 8 * LOW_BYTES) - 1
MIN_BITS = 64 - 8 * LOW_BYTES  # fewer bucket bits would leave a key's middle bits unkept
BUCKET = 32  # members a bucket holds at most on average
BLOCK = 1 << 17  # keys read from the file at once (1 MB)


class KeysOutOfOrder(ValueError):
    pass


class MemberIndex:
    def __init__(self, file: IO[bytes], count: int):
        """``file``: holds ``count`` keys, 8 bytes each, little-endian, from its
        start (kept open and read again by ``keys_between``). Raises ``KeysOutOfOrder``
        unless they ascend strictly."""
        import pyarrow.compute as pc

        self._file, self.count = file, count
        bits = max(MIN_BITS, (count // BUCKET).bit_length())
        self.shift = 64 - bits
        self.low = bytearray(LOW_BYTES * count)
        self.starts = array("I", [0]) * ((1 << bits) + 1)  # where each bucket's members start
        bucket, last = 0, None  # the next bucket whose start is unknown; the last key so far
        for offset in range(0, count, BLOCK):
            raw = self._read(offset, min(BLOCK, count - offset))
            block = _native(raw)
            keys = arrow_view(block)
            if (last is not None and block[0] <= last) or not pc.all(pc.less(keys[:-1], keys[1:]), min_count=0).as_py():
                raise KeysOutOfOrder
            last = block[-1]
            for j in range(LOW_BYTES):  # little-endian on disk: the low bytes are each key's first
                self.low[LOW_BYTES * offset + j:LOW_BYTES * (offset + len(block)):LOW_BYTES] = \
                    raw[LOW_BYTES - 1 - j::8]
            top = (last + BIAS) >> self.shift
            while bucket <= top:
                self.starts[bucket] = offset + bisect_left(block, (bucket << self.shift) - BIAS)
                bucket += 1
        for rest in range(bucket, len(self.starts)):
            self.starts[rest] = count

    def _read(self, start: int, items: int) -> bytes:
        self._file.seek(8 * start)
        raw = self._file.read(8 * items)
        if len(raw) != 8 * items:
            raise KeysOutOfOrder("the keys file is shorter than its count")
        return raw

    def find(self, key: int) -> int:
        """The member's position, or -1."""
        unsigned = key + BIAS
        bucket = unsigned >> self.shift
        end = LOW_BYTES * self.starts[bucket + 1]
        wanted = (unsigned & LOW_MASK).to_bytes(LOW_BYTES, "big")
        at = self.low.find(wanted, LOW_BYTES * self.starts[bucket], end)
        while at % LOW_BYTES and at >= 0:  # a match across two members' bytes
            at = self.low.find(wanted, at + 1, end)
        return at // LOW_BYTES if at >= 0 else -1

    def lower_bound(self, key: int) -> int:
        """The position of the first member whose key is ``key`` or larger."""
        unsigned = key + BIAS
        bucket = unsigned >> self.shift
        low, high = self.starts[bucket], self.starts[bucket + 1]
        wanted = (unsigned & LOW_MASK).to_bytes(LOW_BYTES, "big")
        while low < high:
            middle = (low + high) // 2
            if self.low[LOW_BYTES * middle:LOW_BYTES * middle + LOW_BYTES] < wanted:
                low = middle + 1
            else:
                high = middle
        return low

    def key_at(self, at: int) -> int:
        bucket = bisect_right(self.starts, at) - 1
        low = int.from_bytes(self.low[LOW_BYTES * at:LOW_BYTES * at + LOW_BYTES], "big")
        return ((bucket << self.shift) | low) - BIAS

    def keys_between(self, start: int, stop: int) -> array:
        """The keys of members ``start`` to ``stop`` (excluded), from the file."""
        return _native(self._read(start, stop - start)) if stop > start else array("q")

    def close(self) -> None:
        self._file.close()


def _native(little_endian: bytes) -> array:
    values = array("q")
    values.frombytes(little_endian)
    if sys.byteorder != "little":
        values.byteswap()
    return values
