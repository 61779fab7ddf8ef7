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


# An 8 MB block is mapped and freed (glibc's own rule then raises its threshold to 8 MB); a 6 MB
# block is then held, and glibc's count of mapped bytes (mallinfo2's hblkhd) says where it went.
MAPPED = textwrap.dedent("""
    import ctypes, sys
    from exporter.allocator import tune_allocator
    if sys.argv[1] == "tuned":
        assert tune_allocator()
    elif sys.argv[1] == "app":
        import function_app  # the function app tunes it as it loads
    class Info(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    libc.mallinfo2.restype = Info
    libc.free(libc.malloc(8 << 20))
    before = libc.mallinfo2().hblkhd
    held = libc.malloc(6 << 20)
    print(libc.mallinfo2().hblkhd - before)
""")


def mapped_growth(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", MAPPED, mode], capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_large_blocks_are_mapped_and_returned_however_many_were_freed() -> None:
    assert mapped_growth("tuned") >= 6 << 20  # mapped: returned to the system when freed
    assert mapped_growth("app") >= 6 << 20
    assert mapped_growth("default") == 0  # glibc's own rule: the threshold rose to the freed block's size


def test_the_cli_sets_the_allocator_before_any_run(monkeypatch: pytest.MonkeyPatch) -> None:
    from exporter import cli

    called: list[bool] = []
    monkeypatch.setattr(cli, "tune_allocator", lambda: called.append(True) or True)
    monkeypatch.setattr(cli, "_export_command", lambda args: 0)
    assert cli.main(["export", "--source", "x.csv", "--list-id", "L", "--email-column", "email", "--dry-run"]) == 0
    assert called == [True]
