"""Batching: jobs close before 10,000 profiles or 5 MB, measured on the bytes we send."""

from __future__ import annotations

import orjson

from exporter.batching import JobBatcher
from exporter.klaviyo.limits import MAX_JOB_BYTES, MAX_PROFILES_PER_JOB
from exporter.mapping import FieldMapping, ProfileMapper
from exporter.mapping.chunks import MappedChunk, map_chunk
from exporter.sources.rows import RowBlock


def profiles(count: int, padding: str = "") -> MappedChunk:
    mapper = ProfileMapper.for_columns(FieldMapping.from_pairs("email", ["pad=properties.pad"]), ["email", "pad"])
    chunk = map_chunk(mapper, RowBlock([i + 2 for i in range(count)], [[f"u{i}@x.com", padding] for i in range(count)]))
    assert chunk.rejects == [] and len(chunk) == count
    return chunk


def batch(chunk: MappedChunk, keep: list[int] | None = None) -> list:
    batcher = JobBatcher("L1")
    return batcher.add(chunk, list(range(len(chunk))) if keep is None else keep) + batcher.flush()


def emails(job) -> list[str]:
    return [p["attributes"]["email"] for p in orjson.loads(job.payload)["data"]["attributes"]["profiles"]["data"]]


def test_jobs_split_at_ten_thousand_profiles() -> None:
    jobs = batch(profiles(25_001))
    assert [len(j) for j in jobs] == [MAX_PROFILES_PER_JOB, MAX_PROFILES_PER_JOB, 5_001]
    assert [j.sequence for j in jobs] == [0, 1, 2]
    assert jobs[1].lines[0] == 10_002  # row 10,000 (0-based) sits on line 10,002
    assert emails(jobs[2])[-1] == "u25000@x.com"


def test_jobs_split_before_five_megabytes() -> None:
    jobs = batch(profiles(200, padding="p" * 60_000))  # ~12 MB in all
    assert sum(len(j) for j in jobs) == 200 and len(jobs) >= 3
    for job in jobs:
        assert len(job.payload) <= MAX_JOB_BYTES
        body = orjson.loads(job.payload)
        assert body["data"]["relationships"]["lists"]["data"] == [{"type": "list", "id": "L1"}]
    assert [e for j in jobs for e in emails(j)] == [f"u{i}@x.com" for i in range(200)]


def test_sizes_are_the_serialized_bytes_escapes_included() -> None:
    # every character of this padding serializes as a six-byte \u escape
    jobs = batch(profiles(400, padding="\x01" * 12_000))
    assert all(len(j.payload) <= MAX_JOB_BYTES for j in jobs)
    assert sum(len(j) for j in jobs) == 400 and len(jobs) == 6  # 72 KB per profile: 69 fit in 5 MB


def test_only_the_kept_positions_are_batched() -> None:
    [job] = batch(profiles(6), keep=[0, 2, 5])
    assert emails(job) == ["u0@x.com", "u2@x.com", "u5@x.com"] and list(job.lines) == [2, 4, 7]


def test_a_job_without_some_profiles_keeps_the_rest_and_their_lines() -> None:
    [job] = batch(profiles(5))
    smaller = job.without({1, 3}, "L1")
    assert list(smaller.lines) == [2, 4, 6]
    assert emails(smaller) == ["u0@x.com", "u2@x.com", "u4@x.com"]


def test_nothing_to_flush_gives_no_job() -> None:
    assert JobBatcher("L1").flush() == []


def test_whole_chunks_in_runs_make_the_same_jobs_as_profile_by_profile() -> None:
    """A whole chunk is taken as slices of runs; a partial one profile by profile. Both must
    cut the same jobs, byte for byte, at both limits."""
    import random

    rng = random.Random(3)
    for _ in range(5):
        chunks = [profiles(rng.randrange(1, 4_000), padding="p" * rng.randrange(0, 2_000)) for _ in range(8)]
        whole, single = JobBatcher("L1"), JobBatcher("L1")
        runs, steps = [], []
        for chunk in chunks:
            runs += whole.add(chunk, list(range(len(chunk))))
            steps += [job for i in range(len(chunk)) for job in single.add(chunk, [i])]
        runs += whole.flush()
        steps += single.flush()
        assert [(j.payload, list(j.lines)) for j in runs] == [(j.payload, list(j.lines)) for j in steps]
        assert all(len(j.payload) <= MAX_JOB_BYTES and len(j) <= MAX_PROFILES_PER_JOB for j in runs)
        assert len(runs) > 1
