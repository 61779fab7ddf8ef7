"""The C allocator's settings for a long run: one arena for the whole process, and Arrow's
buffers from it.

An export allocates and frees megabytes at a time (a job's body, a block's Arrow buffers, a
download) from two threads, the event loop and the mapping thread. glibc gives each thread
an arena of its own, and each arena keeps the memory its thread freed for that thread alone.
With the GIL only one thread runs Python at a time, so a second arena buys nothing: with one,
a 1M-row blob export peaked 5-7 MB lower with no more CPU (medians of four runs each).

Fixing the size above which blocks are mapped from the system (``M_MMAP_THRESHOLD``) saved
~6 MB more, but every Arrow buffer above it then cost fresh page faults: five times as many
faults and ~0.3 µs a row of system time on a dry run. It is left to glibc's own rule.

Other C libraries (musl, macOS) keep their defaults: the setting is glibc's.
"""

from __future__ import annotations

import ctypes

M_ARENA_MAX = -8  # glibc's mallopt parameter number (malloc.h)
ARENAS = 1


def share_one_arena() -> bool:
    """One malloc arena for every thread; False where the C library is not glibc. Call it
    before the run starts threads: an arena, once a thread has it, stays."""
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 (only glibc has it)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):  # TypeError: Windows has no handle for None
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_ARENA_MAX, ARENAS))


def arrow_on_c_allocator() -> None:
    """Arrow's buffers from the C allocator, which returns freed memory: blocks and row groups
    come and go, and Arrow's default (mimalloc) keeps freed pages, tens of MB at peak here.
    pyarrow is imported here only when Arrow is used, so the CLI's start does not pay for it."""
    import pyarrow as pa

    pa.set_memory_pool(pa.system_memory_pool())
