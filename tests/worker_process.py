"""A queue worker in a process of its own, so a test can kill it with SIGKILL mid-run.

Usage: ``python -m tests.worker_process`` with the app settings as a JSON object on stdin's
first line and the queue message's text on its second. It handles that one message the
way the Functions host's queue trigger would, then exits.
"""

from __future__ import annotations

import asyncio
import sys

import orjson

from exporter.runs.runtime import AppRuntime


async def main() -> None:
    environ = orjson.loads(sys.stdin.readline())
    message = sys.stdin.readline().rstrip("\n")
    runtime = AppRuntime(environ)
    try:
        await runtime.service().process(message, dequeue_count=1)
    finally:
        await runtime.aclose()


if __name__ == "__main__":
    asyncio.run(main())
