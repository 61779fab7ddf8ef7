"""The run's subscription stage: the rows sent that consent to marketing, subscribed in
Klaviyo without ever lifting a newer opt-out.

Consents arrive from the reader as rows are classified (new and changed rows only: an
unchanged row's consent was applied when it was sent), are gathered into jobs of Klaviyo's
1,000, and for each job: the profiles' current consent is read (100 emails a lookup, the
profile-read tier), conflicts are listed in the rejects file and counted, profiles already
subscribed are left alone, and the rest are subscribed (the subscriptions tier). A lookup
that cannot be read whole subscribes nobody it was about (they are listed): consent only
moves forward with evidence. A dry run counts what it would subscribe and asks nothing.
"""

from __future__ import annotations

import asyncio
from typing import Iterable

from exporter.errors import KlaviyoRequestError
from exporter.klaviyo.client import KlaviyoClient
from exporter.klaviyo.consent import current_consent, standing, subscribe, subscription_job
from exporter.klaviyo.limits import MAX_SUBSCRIPTION_PROFILES
from exporter.klaviyo.lists import filter_batches
from exporter.mapping.consent import Consent, ConsentMapping
from exporter.rejects import Reject, RejectsFile
from exporter.report import Counts

_DONE = None


class Subscriber:
    def __init__(self, klaviyo: KlaviyoClient | None, list_id: str, source: str, mapping: ConsentMapping,
                 rejects: RejectsFile, counts: Counts):
        self.klaviyo, self.list_id, self.source = klaviyo, list_id, source
        self.columns = {channel: columns.column for channel, columns in mapping.channels.items()}
        self.rejects, self.counts = rejects, counts
        self.queue: asyncio.Queue[list[Consent] | None] = asyncio.Queue(2)
        self.buffer: list[Consent] = []

    async def add(self, consents: Iterable[Consent]) -> None:
        self.buffer.extend(consents)
        while len(self.buffer) >= MAX_SUBSCRIPTION_PROFILES:
            batch, self.buffer = self.buffer[:MAX_SUBSCRIPTION_PROFILES], self.buffer[MAX_SUBSCRIPTION_PROFILES:]
            await self.queue.put(batch)

    async def close(self) -> None:
        """No more consents (every row read, or the leg's time is up)."""
        if self.buffer:
            await self.queue.put(self.buffer)
            self.buffer = []
        await self.queue.put(_DONE)

    async def run(self) -> None:
        while (batch := await self.queue.get()) is not _DONE:
            await self._job(batch)

    async def _job(self, batch: list[Consent]) -> None:
        if self.klaviyo is None:  # a dry run: what would be subscribed, were nobody opted out since
            self.counts.subscribed += len(batch)
            return
        current: dict[str, dict] = {}
        unread: set[str] = set()
        for emails in filter_batches([consent.email for consent in batch]):
            try:
                current.update(await current_consent(self.klaviyo, emails))
            except KlaviyoRequestError:
                unread.update(email.lower() for email in emails)
        chosen: list[tuple[Consent, list[str]]] = []
        for consent in batch:
            if consent.email.lower() in unread:
                self._conflict(consent, next(iter(consent.at)), "not subscribed: Klaviyo's answer about the profile's "
                                                                "current consent could not be read whole")
                continue
            verdicts = standing(consent, current.get(consent.email.lower()))
            channels = [channel for channel, verdict in verdicts.items() if verdict == "subscribe"]
            for channel, verdict in verdicts.items():
                if verdict == "already":
                    self.counts.already_subscribed += 1
                elif verdict != "subscribe":
                    self._conflict(consent, channel, verdict)
            if channels:
                chosen.append((consent, channels))
        if chosen:
            await subscribe(self.klaviyo, subscription_job(self.list_id, self.source, chosen))
            self.counts.subscribed += len(chosen)

    def _conflict(self, consent: Consent, channel: str, reason: str) -> None:
        self.counts.consent_conflicts += 1
        self.rejects.add([Reject(consent.line, self.columns.get(channel, ""), reason)])
