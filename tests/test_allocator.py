"""The CLI's allocator settings, observed in a fresh process through glibc's own report."""

from __future__ import annotations

import ctypes
import subprocess
import sys
import textwrap

import pytest

try:
    ctypes.CDLL(None).gnu_get_libc_version  # noqa: B018
except AttributeError:  # pragma: no cover - not glibc: the settings do not apply
    pytest.skip("glibc only", allow_module_level=True)

# A thread allocates while the main thread holds a block; glibc's malloc_stats then lists
# each arena on stderr.
PROBE = textwrap.dedent("""
    import ctypes, sys, threading
    from exporter.allocator import tune_allocator
    if sys.argv[1] == "tuned":
        assert tune_allocator()
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    held = [libc.malloc(64)]
    worker = threading.Thread(target=lambda: held.append(libc.malloc(64)))
    worker.start()
    worker.join()
    libc.malloc_stats()
""")


def arenas(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return done.stderr.count("Arena ")


def test_threads_share_one_arena() -> None:
    assert arenas("tuned") == 1
    assert arenas("default") > 1  # what glibc does by default: the probe can tell


# An 8 MB block is mapped, freed, and asked for again; glibc's report then says how large
# the heap grew ("system bytes" of the main arena).
REUSE = textwrap.dedent("""
    import ctypes, sys
    from exporter.allocator import tune_allocator
    if sys.argv[1] == "tuned":
        assert tune_allocator()
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    libc.free(libc.malloc(8 << 20))
    again = libc.malloc(8 << 20)
    libc.malloc_stats()
""")


def heap_bytes(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", REUSE, mode], capture_output=True, text=True, check=True)
    return int(done.stderr.split("system bytes")[1].split("=")[1].split()[0])


def test_large_blocks_are_mapped_and_returned_however_many_were_freed() -> None:
    assert heap_bytes("tuned") < 8 << 20  # mapped again, not kept in the heap
    assert heap_bytes("default") >= 8 << 20  # glibc's own rule: the threshold rose to the freed block's size


def test_the_cli_sets_the_allocator_before_any_run(monkeypatch: pytest.MonkeyPatch) -> None:
    from exporter import cli

    called: list[bool] = []
    monkeypatch.setattr(cli, "tune_allocator", lambda: called.append(True) or True)
    monkeypatch.setattr(cli, "_export_command", lambda args: 0)
    assert cli.main(["export", "--source", "x.csv", "--list-id", "L", "--email-column", "email", "--dry-run"]) == 0
    assert called == [True]
