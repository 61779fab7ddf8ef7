"""What the management services need from the app, handed to them as one object so they
stay free of how the app is wired (the runtime builds it; tests build it the same way)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Awaitable, Callable

from exporter.config import ExportDefinition
from exporter.klaviyo.auth import ApiKeySource
from exporter.manage.audit import AuditTrail
from exporter.manage.editing import DocumentEditor
from exporter.manage.keys import KeyWriter
from exporter.runs.service import ExportService


class NotFoundItem(Exception):
    """``404``: no such connection, export or run."""


class Conflict(Exception):
    """``409``: the change cannot be made in the current state (an export uses it, a run is active)."""


@dataclass
class Backend:
    editor: DocumentEditor
    key_writer: Callable[[], KeyWriter]  # built on first use: a vault client only when a key is stored
    key_source: Callable[[ExportDefinition], Awaitable[ApiKeySource]]
    klaviyo_url: str
    service: ExportService
    audit: AuditTrail
    trusted: bool  # the platform (or local mode) vouches for the principal header
    schedule: str = ""  # the refresh timer's NCRONTAB schedule, for people to see
