"""The CLI's allocator setting, observed in a fresh process through glibc's own report."""

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
    from exporter.allocator import share_one_arena
    if sys.argv[1] == "tuned":
        assert share_one_arena()
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


def test_the_cli_sets_the_allocator_before_any_run(monkeypatch: pytest.MonkeyPatch) -> None:
    from exporter import cli

    called: list[bool] = []
    monkeypatch.setattr(cli, "share_one_arena", lambda: called.append(True) or True)
    monkeypatch.setattr(cli, "_export_command", lambda args: 0)
    assert cli.main(["export", "--source", "x.csv", "--list-id", "L", "--email-column", "email", "--dry-run"]) == 0
    assert called == [True]
