"""Answering for runs: a run's state (and report once finished), and every export with its
newest run."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from exporter.runs.context import RunContext
from exporter.runs.store import is_run_id


class RunAnswers:
    def __init__(self, context: RunContext):
        self._context = context

    async def status(self, name: str, run_id: str) -> dict[str, Any] | None:
        (await self._context.config()).export(name)
        if not is_run_id(run_id):
            return None  # nothing else names a run, nor another export's files
        state = await self._context.store.load_state(name, run_id)
        if state is None:
            return None
        answer: dict[str, Any] = asdict(state)
        if state.finished:
            answer["report"] = await self._context.store.load_report(name, run_id)
        return answer

    async def overview(self) -> list[dict[str, Any]]:
        exports = []
        for export in (await self._context.config()).exports.values():
            exports.append({"name": export.name, "connection": export.connection.display_name,
                            "source": export.source, "list_id": export.list_id, "enabled": export.enabled,
                            "last_run": await self._context.store.latest(export.name)})
        return exports
