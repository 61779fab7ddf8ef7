"""The snapshot's member index: 6 bytes a key, exact, against a plain sorted array of keys."""

from __future__ import annotations

import io
import random
from array import array
from bisect import bisect_left

import pytest

from exporter.sync.member_index import BIAS, BLOCK, MIN_BITS, KeysOutOfOrder, MemberIndex


def index_of(keys: list[int]) -> MemberIndex:
    return MemberIndex(io.BytesIO(array("q", keys).tobytes()), len(keys))


def test_every_key_is_found_where_it_is_and_no_other_is() -> None:
    rng = random.Random(7)
    keys = sorted({rng.getrandbits(64) - BIAS for _ in range(BLOCK + 5_000)})  # more than one block read
    index = index_of(keys)
    assert [index.find(key) for key in keys] == list(range(len(keys)))
    absent = [rng.getrandbits(64) - BIAS for _ in range(20_000)]
    known = set(keys)
    assert all(index.find(key) == -1 for key in absent if key not in known)
    assert [index.key_at(at) for at in range(0, len(keys), 997)] == keys[::997]
    assert list(index.keys_between(100, 200)) == keys[100:200]
    for key in absent[:2_000] + keys[:2_000]:
        assert index.lower_bound(key) == bisect_left(keys, key)


def test_keys_alike_in_their_low_bytes_are_told_apart_by_their_bucket() -> None:
    low = 0x0000_1234_5678_9ABC
    keys = sorted(((top << 48) | low) - BIAS for top in (0, 1, 0x7FFF, 0xFFFF))  # the same 48 low bits
    index = index_of(keys)
    assert index.shift == 64 - MIN_BITS
    assert [index.find(key) for key in keys] == [0, 1, 2, 3]
    assert index.find(((2 << 48) | low) - BIAS) == -1  # its bucket is empty
    assert [index.key_at(at) for at in range(4)] == keys


def test_a_match_across_two_members_bytes_is_not_a_member() -> None:
    # Two members of one bucket whose 6-byte forms, side by side, hold a third key's bytes
    # starting mid-way: 00 00 00 AA BB CC | DD EE FF 00 00 00 holds AA BB CC DD EE FF.
    first, second = 0x0000_0000_00AA_BBCC, 0x0000_DDEE_FF00_0000
    straddling = 0x0000_AABB_CCDD_EEFF
    index = index_of([first - BIAS, second - BIAS])
    assert index.find(straddling - BIAS) == -1
    assert index.find(first - BIAS) == 0 and index.find(second - BIAS) == 1


@pytest.mark.parametrize("keys", [[5, 5], [9, 3], [1, 2, 2, 3]])
def test_keys_out_of_order_are_refused(keys: list[int]) -> None:
    with pytest.raises(KeysOutOfOrder):
        index_of(keys)


def test_keys_out_of_order_across_blocks_are_refused() -> None:
    keys = list(range(BLOCK)) + [BLOCK - 1]  # the second block's only key repeats the first's last
    index_of(list(range(BLOCK + 1)))  # in order, a block and one key: accepted
    with pytest.raises(KeysOutOfOrder):
        index_of(keys)


def test_a_keys_file_shorter_than_its_count_is_refused() -> None:
    with pytest.raises(KeysOutOfOrder):
        MemberIndex(io.BytesIO(array("q", [1, 2]).tobytes()), 3)


def test_no_members_and_one() -> None:
    index = index_of([])
    assert index.find(0) == -1 and index.lower_bound(123) == 0 and list(index.keys_between(0, 0)) == []
    one = index_of([-5])
    assert one.find(-5) == 0 and one.find(5) == -1 and one.key_at(0) == -5
