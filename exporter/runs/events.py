"""One structured log record per run event, for operators to query, chart and alert on.

Each record's message is ``export_run `` followed by a JSON object of fields (export, run
id, leg, trigger, status, every count, duration, profiles/s, 429s, Klaviyo jobs, and the
reason of a failure). The JSON travels in the message itself because the Functions Python
worker forwards a record's text to Application Insights but not, reliably, its ``extra``
fields (the same fields also ride in ``extra["run_event"]`` for handlers that read them).
KQL reads them with ``parse_json(substring(message, 11))``; ``infra/`` alerts and charts on
exactly these names, and a test pins the two together. No row values are ever among them.

Also here: quieting the Azure SDKs' and HTTP clients' INFO chatter, set in code because the
worker forwards every record it sees whatever ``host.json`` says for those logger names.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import orjson

from exporter.report import RunReport

PREFIX = "export_run "
EVENTS = ("started", "handover", "finished", "failed")
NOISY_LOGGERS = ("azure", "azure.core.pipeline.policies.http_logging_policy", "azure.identity", "aiohttp",
                 "urllib3", "msal")

log = logging.getLogger("exporter.runs.events")


def quiet_sdk_loggers() -> None:
    """The SDKs log a record per storage request at INFO: paid-for noise in App Insights."""
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def run_event(event: str, *, export: str, run_id: str, leg: int, trigger: str, status: str, dry_run: bool,
              counts: dict[str, int] | None, started_at: str | None, jobs: int, throttled: int,
              error: str | None = None) -> dict[str, Any]:
    """Log one run event; returns its fields (what the record carries)."""
    duration = _seconds_since(started_at)
    sent = (counts or {}).get("sent", 0)
    fields: dict[str, Any] = {
        "event": event, "export": export, "run_id": run_id, "leg": leg, "trigger": trigger, "status": status,
        "dry_run": dry_run, **{k: int(v) for k, v in (counts or {}).items()},
        "duration_s": round(duration, 3), "profiles_per_s": round(sent / duration, 1) if duration > 0 else 0.0,
        "throttled_429s": throttled, "klaviyo_jobs": jobs, "error": error,
    }
    log.log(logging.ERROR if event == "failed" else logging.INFO, PREFIX + orjson.dumps(fields).decode(),
            extra={"run_event": fields})
    return fields


def report_event(report: RunReport, *, leg: int, trigger: str, throttled: int) -> dict[str, Any]:
    """The event that ends a run: ``finished`` (succeeded or partial) or ``failed``."""
    return run_event("failed" if report.status == "failed" else "finished", export=report.export,
                     run_id=report.run_id, leg=leg, trigger=trigger, status=report.status, dry_run=report.dry_run,
                     counts=_counts(report), started_at=report.started_at, jobs=len(report.jobs),
                     throttled=throttled, error=report.error)


def _counts(report: RunReport) -> dict[str, int]:
    return {k: int(v) for k, v in asdict(report.counts).items()}


def _seconds_since(started_at: str | None) -> float:
    if not started_at:
        return 0.0
    return max(0.0, (datetime.now(UTC) - datetime.fromisoformat(started_at)).total_seconds())
