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


def test_local_phones_and_name_values_are_masked_but_counts_dates_and_ports_are_not() -> None:
    text = ("first_name=Ann last_name: 'Smith' called (020) 7946 0000 and 555-0100; "
            "rows=1000000 at 2026-11-25 via http://127.0.0.1:10000/x run_id=20261125T223105Z-abcd1234")
    assert redact(text) == ("first_name=<name> last_name: <name> called <phone> and <phone>; "
                            "rows=1000000 at 2026-11-25 via http://127.0.0.1:10000/x run_id=20261125T223105Z-abcd1234")


def test_exception_text_and_tracebacks_are_masked_for_handlers_added_later() -> None:
    import io

    from exporter.logsafe import install_everywhere

    previous = logging.getLogRecordFactory()
    install_everywhere()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)  # added after install, as a host's handler would be
    logger = logging.getLogger("tests.logsafe.late")
    logger.addHandler(handler)
    try:
        try:
            raise ValueError("bad row for ann@example.com, phone +44 20 7946 0000")
        except ValueError:
            logger.exception("export failed for bob@example.com")
    finally:
        logger.removeHandler(handler)
        logging.setLogRecordFactory(previous)
    output = stream.getvalue()
    assert "ValueError: bad row for <email>, phone <phone>" in output and "Traceback" in output
    assert "@example.com" not in output and "7946" not in output


def test_a_masked_name_keeps_the_punctuation_around_it() -> None:
    assert redact('KeyError(name=Ann") in f(name=Bob)') == 'KeyError(name=<name>") in f(name=<name>)'
