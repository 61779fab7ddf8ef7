"""The C allocator's settings for a long run: one arena for the whole process, blocks of
4 MB and more mapped from the system, and Arrow's buffers from the C allocator.

An export allocates and frees megabytes at a time (a job's body, a block's Arrow buffers, a
download) from two threads, the event loop and the mapping thread. glibc gives each thread
an arena of its own, and each arena keeps the memory its thread freed for that thread alone.
With the GIL only one thread runs Python at a time, so a second arena buys nothing: with one,
a 1M-row blob export peaked 5-7 MB lower with no more CPU (medians of four runs each).

Where a block comes from: glibc maps blocks above a threshold from the system and returns
them when freed, and by its own rule raises that threshold to the size of each mapped block
freed (up to 32 MB). Blocks of a few MB then come from the heap, which keeps what the
mix of sizes leaves between them: a 10M-row delta run grew by ~28 MB while it read, on top
of what it held. Fixed at glibc's 128 KB start, every Arrow buffer above it cost fresh page
faults (five times as many faults, ~0.3 µs a row of system time on a dry run). Fixed at
4 MB, the blocks that come and go by the dozen (blocks' buffers, job bodies) stay in the
heap, and the larger ones go back when freed: the same delta run stayed flat, in the same
time.

Other C libraries (musl, macOS) keep their defaults: the settings are glibc's.
"""

from __future__ import annotations

import ctypes

M_ARENA_MAX = -8  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
ARENAS = 1
MAPPED_FROM = 4 << 20  # bytes: blocks this large and larger are mapped, and returned when freed


def tune_allocator() -> bool:
    """One malloc arena for every thread, and a fixed mapping threshold; False where the C
    library is not glibc. Call it before the run starts threads: an arena, once a thread has
    it, stays."""
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 (only glibc has it)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):  # TypeError: Windows has no handle for None
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_ARENA_MAX, ARENAS)) and bool(mallopt(M_MMAP_THRESHOLD, MAPPED_FROM))


def arrow_on_c_allocator() -> None:
    """Arrow's buffers from the C allocator, which returns freed memory: blocks and row groups
    come and go, and Arrow's default (mimalloc) keeps freed pages, tens of MB at peak here.
    pyarrow is imported here only when Arrow is used, so the CLI's start does not pay for it."""
    import pyarrow as pa

    pa.set_memory_pool(pa.system_memory_pool())
