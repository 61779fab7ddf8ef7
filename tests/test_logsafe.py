"""The logging filter masks emails, phone numbers and Klaviyo keys whatever logs them."""

from __future__ import annotations

import logging

from exporter.logsafe import RedactingFilter, redact


def test_emails_phones_and_keys_are_masked() -> None:
    text = "refused ann.o'neil+vip@example.co.uk with Klaviyo-API-Key pk_abc123DEF_456 from +442079460958"
    assert redact(text) == "refused <email> with Klaviyo-API-Key pk_<redacted> from <phone>"


def test_the_filter_rewrites_a_record_with_arguments(caplog) -> None:
    logger = logging.getLogger("tests.logsafe")
    caplog.handler.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO, logger="tests.logsafe"):
        logger.info("sending %s for %s", "pk_secret_value_1", "a@b.io")
    assert caplog.records[0].getMessage() == "sending pk_<redacted> for <email>"
    assert "pk_secret_value_1" not in caplog.text and "a@b.io" not in caplog.text
