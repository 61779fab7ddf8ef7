"""Has this run seen an email before? A Bloom filter over the emails' 64-bit keys: about
ten bits a key, whatever the segment's size, where an exact table needs 19-38 bytes.

It answers "certainly not" or "perhaps": a key it has never been given can still find all
its bits set (about 1.7% of new keys at the filter's design load, less below it). So
"perhaps" never decides anything by itself: the row is held back and resolved exactly once
every row is read (``first_seen``).
"""

from __future__ import annotations

from typing import Sequence

BITS_PER_KEY = 10
PROBES = 3
MIN_BITS = 1 << 20  # 128 KB: a small segment's filter


class SeenFilter:
    def __init__(self, expected_keys: int = 1_000_000):
        self._layers: list[tuple[bytearray, int, int]] = []  # (bits, mask, capacity in keys)
        self._count = 0  # keys in the newest layer
        self._add_layer(expected_keys)

    def _add_layer(self, keys: int) -> None:
        bits = MIN_BITS
        while bits < keys * BITS_PER_KEY:
            bits *= 2
        self._layers.append((bytearray(max(bits // 8, 1)), bits - 1, max(bits // BITS_PER_KEY, 1)))
        self._count = 0

    def add(self, keys: Sequence[int]) -> tuple[list[int], list[int]]:
        """Positions of keys certainly new (now added), and of keys perhaps seen (in an earlier
        call, or earlier in this one). A new layer, twice the size, takes over when the newest
        is full, so a segment larger than foreseen keeps the error rate, not the memory, bounded."""
        bits, mask, capacity = self._layers[0]
        if len(self._layers) > 1 or self._count + len(keys) > capacity:
            return self._add_layered(keys)
        fresh: list[int] = []
        perhaps: list[int] = []
        new, old = fresh.append, perhaps.append
        for i, key in enumerate(keys):  # the one-layer case, unrolled: this runs once a row
            step = ((key >> 32) & 0xFFFFFFFF) | 1
            a = key & mask
            b = (a + step) & mask
            c = (b + step) & mask
            x, y, z = a >> 3, b >> 3, c >> 3
            u, v, w = 1 << (a & 7), 1 << (b & 7), 1 << (c & 7)
            if bits[x] & u and bits[y] & v and bits[z] & w:
                old(i)
            else:
                bits[x] |= u
                bits[y] |= v
                bits[z] |= w
                new(i)
        self._count += len(fresh)
        return fresh, perhaps

    def _add_layered(self, keys: Sequence[int]) -> tuple[list[int], list[int]]:
        """The general case: several layers, or the newest filling up during this call."""
        fresh: list[int] = []
        perhaps: list[int] = []
        for i, key in enumerate(keys):
            step = ((key >> 32) & 0xFFFFFFFF) | 1
            if any(_all_set(bits, mask, key, step) for bits, mask, _ in self._layers):
                perhaps.append(i)
                continue
            if self._count >= self._layers[-1][2]:
                self._add_layer(2 * self._layers[-1][2])
            bits, mask, _ = self._layers[-1]
            a = key & mask
            for _ in range(PROBES):
                bits[a >> 3] |= 1 << (a & 7)
                a = (a + step) & mask
            self._count += 1
            fresh.append(i)
        return fresh, perhaps


def _all_set(bits: bytearray, mask: int, key: int, step: int) -> bool:
    a = key & mask
    for _ in range(PROBES):
        if not bits[a >> 3] >> (a & 7) & 1:
            return False
        a = (a + step) & mask
    return True
