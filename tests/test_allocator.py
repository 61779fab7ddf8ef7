"""The CLI's allocator settings, observed in a fresh process through glibc's own reports."""

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

# Frees a 1 MB block, then holds a 512 KB one and a thread's block; prints how many bytes
# are mapped blocks and how many arenas glibc reports (malloc_stats writes to stderr).
PROBE = textwrap.dedent("""
    import ctypes, sys, threading
    from exporter.allocator import return_freed_memory
    if sys.argv[1] == "tuned":
        assert return_freed_memory()
    class Info(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                     "keepcost")]
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    libc.mallinfo2.restype = Info
    libc.free(libc.malloc(1 << 20))
    held = [libc.malloc(512 << 10)]
    worker = threading.Thread(target=lambda: held.append(libc.malloc(64)))
    worker.start()
    worker.join()
    print(libc.mallinfo2().hblkhd, flush=True)
    libc.malloc_stats()
""")


def probe(mode: str) -> tuple[int, int]:
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return int(done.stdout), done.stderr.count("Arena ")


def test_a_freed_large_block_does_not_move_later_ones_onto_the_heap() -> None:
    mapped, _ = probe("tuned")
    assert mapped >= 512 << 10  # still mapped, so freeing it returns it
    default_mapped, _ = probe("default")
    assert default_mapped < 512 << 10  # what glibc does by default: the probe can tell


def test_threads_share_one_arena() -> None:
    _, arenas = probe("tuned")
    assert arenas == 1
    _, default_arenas = probe("default")
    assert default_arenas > 1


def test_the_cli_sets_the_allocator_before_any_run(monkeypatch: pytest.MonkeyPatch) -> None:
    from exporter import cli

    called: list[bool] = []
    monkeypatch.setattr(cli, "return_freed_memory", lambda: called.append(True) or True)
    monkeypatch.setattr(cli, "_export_command", lambda args: 0)
    assert cli.main(["export", "--source", "x.csv", "--list-id", "L", "--email-column", "email", "--dry-run"]) == 0
    assert called == [True]
