"""Where the client gets its API key, and how it asks for a fresh one after a 401."""

from __future__ import annotations

import os
from typing import Protocol

KEY_ENV = "KLAVIYO_API_KEY"


class ApiKeySource(Protocol):
    async def get(self) -> str:
        """The current private API key."""

    async def refresh(self) -> bool:
        """Fetch the key again after Klaviyo refused it; True if a different key came back."""


class StaticApiKey:
    """A key given once (environment variable, command line); it cannot rotate."""

    def __init__(self, key: str):
        self._key = key

    async def get(self) -> str:
        return self._key

    async def refresh(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "StaticApiKey(<redacted>)"


def api_key_from_environment(variable: str = KEY_ENV) -> ApiKeySource | None:
    value = os.environ.get(variable, "").strip()
    return StaticApiKey(value) if value else None
