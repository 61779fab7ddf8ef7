"""A run's duration beside the floor Klaviyo's rate limits set for its jobs, and an export's
recent runs in the shape the page charts: people compare runs, not read JSON."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from exporter.klaviyo.limits import BULK_IMPORT_RATE
from exporter.klaviyo.ratelimit import rate_floor_seconds
from exporter.runs.service import ExportService

HISTORY = 20


def timing(state: dict[str, Any]) -> dict[str, Any]:
    """``duration_seconds`` (first leg to finish) and ``floor_seconds`` (the fastest Klaviyo's
    bulk-import limits allow for the run's jobs), once the run has a report."""
    report = state.get("report") or {}
    started, finished = report.get("started_at") or state.get("started_at"), report.get("finished_at")
    jobs = len(report.get("jobs") or [])
    duration = None
    if started and finished:
        duration = round((datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds(), 2)
    return {"duration_seconds": duration, "floor_seconds": round(rate_floor_seconds(jobs, BULK_IMPORT_RATE), 2)}


async def run_history(service: ExportService, export: str) -> list[dict[str, Any]]:
    runs = []
    for state in await service.store.recent(export, HISTORY):
        entry = {"run_id": state.run_id, "status": state.status, "dry_run": state.dry_run, "trigger": state.trigger,
                 "created_at": state.created_at, "counts": state.counts or {}}
        if state.finished:
            report = await service.store.load_report(export, state.run_id)
            if report:
                entry["counts"] = report.get("counts") or entry["counts"]
                entry["verdict"] = report.get("verdict")
                entry.update(timing({"report": report, "started_at": state.started_at}))
        runs.append(entry)
    return runs
