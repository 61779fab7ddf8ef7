"""Where the client gets its API key, and how it asks for a fresh one after a 401."""

from __future__ import annotations

from typing import Protocol


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
