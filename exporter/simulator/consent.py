"""The simulator's consent: per profile and channel, what Klaviyo records about marketing
consent and suppressions, what a subscription job changes, and how a profile read shows it.

As Klaviyo documents it: a subscription job sets ``SUBSCRIBED`` (with ``historical_import``,
at the ``consented_at`` given, which must be in the past), adds the profile to the job's list,
and lifts the ``UNSUBSCRIBE``, ``SPAM_COMPLAINT`` and ``USER_SUPPRESSED`` suppressions of the
email channel (never ``HARD_BOUNCE`` or ``INVALID_EMAIL``); without ``historical_import`` an
email subscription waits for a double opt-in. Removing a profile from a list changes none of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

LIFTED = ("UNSUBSCRIBE", "SPAM_COMPLAINT", "USER_SUPPRESSED")
CHANNELS = ("email", "sms")


@dataclass
class ChannelConsent:
    consent: str = "NEVER_SUBSCRIBED"  # SUBSCRIBED | UNSUBSCRIBED | NEVER_SUBSCRIBED | PENDING (double opt-in)
    timestamp: str | None = None
    method_detail: str | None = None
    suppressions: list[dict[str, str]] = field(default_factory=list)  # email only: {"reason", "timestamp"}


@dataclass
class ProfileConsent:
    channels: dict[str, ChannelConsent] = field(default_factory=lambda: {c: ChannelConsent() for c in CHANNELS})

    def subscribe(self, channel: str, consented_at: str | None, historical: bool, source: str | None) -> None:
        record = self.channels[channel]
        record.consent = "SUBSCRIBED" if historical or channel != "email" else "PENDING"
        record.timestamp = consented_at or _now()
        record.method_detail = source
        if channel == "email":
            record.suppressions = [s for s in record.suppressions if s["reason"] not in LIFTED]

    def opt_out(self, channel: str, timestamp: str, suppression: str | None) -> None:
        """What a person's unsubscribe (or a spam complaint, a manual suppression) records."""
        record = self.channels[channel]
        record.consent, record.timestamp = "UNSUBSCRIBED", timestamp
        if suppression and channel == "email":
            record.suppressions.append({"reason": suppression, "timestamp": timestamp})

    def resource(self) -> dict[str, Any]:
        """The ``subscriptions`` a profile read shows with ``additional-fields[profile]=subscriptions``."""
        email, sms = self.channels["email"], self.channels["sms"]
        return {
            "email": {"marketing": {
                "can_receive_email_marketing": email.consent == "SUBSCRIBED" and not email.suppressions,
                "consent": email.consent, "consent_timestamp": email.timestamp, "last_updated": email.timestamp,
                "method": "API" if email.method_detail else None, "method_detail": email.method_detail,
                "custom_method_detail": email.method_detail, "double_optin": email.consent == "PENDING",
                "suppression": list(email.suppressions), "list_suppressions": []}},
            "sms": {"marketing": {
                "can_receive_sms_marketing": sms.consent == "SUBSCRIBED", "consent": sms.consent,
                "consent_timestamp": sms.timestamp, "method": "API" if sms.method_detail else None,
                "method_detail": sms.method_detail, "last_updated": sms.timestamp}},
        }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
