"""The C allocator's settings for a long run: memory a job or a block frees goes back.

An export allocates and frees megabytes at a time (a job's body, a block, a download), from
two threads (the event loop and the mapping thread). glibc's defaults keep much of that:
each thread gets an arena of its own, and after the first large block is freed the size
above which blocks are mapped from the system (and unmapped when freed) rises to that
block's size, so later bodies come from the heap and their freed pages stay there. A 1M-row
blob export peaked ~12 MB lower with one arena and a fixed threshold, with no measurable
cost in CPU (each job's body is one ``mmap``). Other C libraries (musl, macOS) keep their
defaults: the settings are glibc's.
"""

from __future__ import annotations

import ctypes

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter numbers (malloc.h)
M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 256 * 1024  # blocks at least this large are mapped, and unmapped when freed
ARENAS = 1  # the GIL lets one thread run Python at a time: a second arena only holds freed memory


def return_freed_memory() -> bool:
    """Set glibc's allocator for a long run; False where the C library is not glibc. Call it
    before the run starts threads: an arena, once a thread has it, stays."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
        ctypes.CDLL(None).gnu_get_libc_version  # noqa: B018 (only glibc has it)
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_ARENA_MAX, ARENAS)) and bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
