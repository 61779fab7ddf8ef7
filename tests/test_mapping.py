"""Mapping: email and phone rules, field targets, rejects with reasons, de-duplication."""

from __future__ import annotations

import pytest

from exporter.errors import ConfigError, SourceError
from exporter.mapping import Deduplicator, FieldMapping, ProfileMapper
from exporter.mapping.chunks import map_chunk
from exporter.mapping.validate import normalize_email, normalize_phone
from exporter.sources.rows import RowBlock


@pytest.mark.parametrize("value, expected", [
    ("  Ann@Example.com ", "Ann@Example.com"),
    ("first.last+tag@sub.example.co.uk", "first.last+tag@sub.example.co.uk"),
    ("o'brien@example.ie", "o'brien@example.ie"),
    ("user@xn--bcher-kva.example", "user@xn--bcher-kva.example"),
    ("plainaddress", None),
    ("@example.com", None),
    ("a@b", None),
    ("a..b@example.com", None),
    (".a@example.com", None),
    ("a@-example.com", None),
    ("a b@example.com", None),
    ("a@example.c", None),
    ("x" * 65 + "@example.com", None),
    ("a@" + "b" * 250 + ".com", None),
])
def test_email_rules(value: str, expected: str | None) -> None:
    assert normalize_email(value) == expected


@pytest.mark.parametrize("value, expected", [
    ("+1 (415) 555-0100", "+14155550100"),
    ("0044 20 7946 0958", "+442079460958"),
    ("+33.1.23.45.67.89", "+33123456789"),
    ("415-555-0100", None),
    ("+0123456789", None),
    ("+1234", None),
    ("+1234567890123456", None),
    ("call me", None),
])
def test_phone_rules(value: str, expected: str | None) -> None:
    assert normalize_phone(value) == expected


def test_unknown_target_field_is_a_config_error_listing_the_allowed_ones() -> None:
    with pytest.raises(ConfigError, match="unknown Klaviyo profile field 'nickname'.*first_name"):
        FieldMapping.from_pairs("email", ["nick=nickname"])


def test_malformed_map_pair_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="COL=FIELD"):
        FieldMapping.from_pairs("email", ["first_name"])


def test_missing_email_column_names_the_columns_found() -> None:
    mapping = FieldMapping.from_pairs("E-mail", [])
    with pytest.raises(SourceError, match=r"'E-mail' not found.*'email', 'name'"):
        ProfileMapper.for_columns(mapping, ["email", "name"])


def test_row_becomes_a_klaviyo_profile_with_every_kind_of_field() -> None:
    mapping = FieldMapping.from_pairs("mail", [
        "fn=first_name", "tel=phone_number", "cid=external_id", "town=city", "zip=location.zip",
        "tier=properties.tier", "spend=properties.lifetime_value"])
    columns = ["mail", "fn", "tel", "cid", "town", "zip", "tier", "spend"]
    mapper = ProfileMapper.for_columns(mapping, columns)
    profiles, rejects, _ = mapper.map_block(RowBlock([2], [[" A@X.com", " Ann ", "+44 20 7946 0958", "C-1", "Oslo",
                                                        "", "gold", 12.5]]))
    assert rejects == []
    assert profiles[0].line == 2 and profiles[0].email_key == "a@x.com"
    assert profiles[0].attributes == {
        "email": "A@X.com", "first_name": "Ann", "phone_number": "+442079460958", "external_id": "C-1",
        "location": {"city": "Oslo"}, "properties": {"tier": "gold", "lifetime_value": 12.5}}


def test_bad_rows_are_rejected_with_line_column_and_reason() -> None:
    mapping = FieldMapping.from_pairs("email", ["phone=phone_number", "name=first_name"], invalid_fields="reject")
    mapper = ProfileMapper.for_columns(mapping, ["email", "phone", "name"])
    rows = [["", "", ""], ["nope", "", ""], ["a@x.com", "12", ""], ["b@x.com", "", "n" * 1001],
            [None, "", ""], ["c@x.com"]]
    profiles, rejects, warnings = mapper.map_block(RowBlock(list(range(2, 8)), rows))
    assert warnings == []
    assert [(r.line, r.column) for r in rejects] == [(2, "email"), (3, "email"), (4, "phone"), (5, "name"), (6, "email")]
    assert "E.164" in rejects[2].reason and "1001 characters" in rejects[3].reason
    assert [p.line for p in profiles] == [7]  # a short row just lacks the optional fields
    assert all("a@x.com" not in r.reason for r in rejects)


def test_oversized_profile_is_rejected_before_klaviyo_sees_it() -> None:
    mapper = ProfileMapper.for_columns(FieldMapping.from_pairs("email", ["blob=properties.blob"]), ["email", "blob"])
    chunk = map_chunk(mapper, RowBlock([2, 3], [["a@x.com", "x" * 110_000], ["b@x.com", "small"]]))
    assert list(chunk.lines) == [3] and chunk.rows == 2
    assert chunk.rejects[0].line == 2
    assert "bytes; Klaviyo allows 100,000 (this exporter sends at most 99,000)" in chunk.rejects[0].reason
    assert bytes(chunk.body(0)) == b'{"type":"profile","attributes":{"email":"b@x.com","properties":{"blob":"small"}}}'


def test_the_byte_limits_are_klaviyos_decimal_ones_with_a_margin() -> None:
    """Klaviyo documents 5 MB and 100 KB: a profile of 99,500 bytes (under 100 KiB, and under
    100 KB) is not sent, and no job body reaches 5,000,000 bytes."""
    from exporter.batching import JobBatcher
    from exporter.klaviyo.limits import KLAVIYO_JOB_BYTES, MAX_JOB_BYTES

    mapper = ProfileMapper.for_columns(FieldMapping.from_pairs("email", ["blob=properties.blob"]), ["email", "blob"])
    chunk = map_chunk(mapper, RowBlock([2], [["a@x.com", "x" * 99_400]]))
    assert len(chunk) == 0 and "profile is 99," in chunk.rejects[0].reason
    rows = [[f"u{i}@x.com", "y" * 90_000] for i in range(120)]  # 120 profiles of ~90 KB: ~10.8 MB
    chunk = map_chunk(mapper, RowBlock(list(range(2, 122)), rows))
    batcher = JobBatcher("L1")
    jobs = batcher.add(chunk, list(range(len(chunk)))) + batcher.flush()
    assert sum(len(job) for job in jobs) == 120
    assert all(len(job.payload) <= MAX_JOB_BYTES < KLAVIYO_JOB_BYTES for job in jobs)
    assert max(len(job.payload) for job in jobs) > KLAVIYO_JOB_BYTES - 200_000  # full jobs, just under the margin


def test_undecodable_row_is_rejected_and_others_are_kept() -> None:
    mapper = ProfileMapper.for_columns(FieldMapping.from_pairs("email", []), ["email", "name"])
    block = RowBlock([2, 3], [["a@x.com", "\udcff"], ["b@x.com", "ok"]], has_undecodable=True)
    profiles, rejects, _ = mapper.map_block(block)
    assert [p.line for p in profiles] == [3]
    assert rejects[0].line == 2 and "UTF-8" in rejects[0].reason


def test_duplicates_are_case_insensitive_and_the_first_row_wins() -> None:
    mapper = ProfileMapper.for_columns(FieldMapping.from_pairs("email", []), ["email"])
    chunk = map_chunk(mapper, RowBlock([2, 3, 4], [["A@x.com"], ["b@x.com"], [" a@X.COM "]]))
    dedupe = Deduplicator()
    keep, seen = dedupe.unique(chunk.keys, chunk.lines)
    assert [chunk.lines[i] for i in keep] == [2, 3] and seen == [(2, 2)]  # line 4 repeats line 2
    assert dedupe.unique(chunk.keys, [7, 8, 9]) == ([], [(0, 2), (1, 3), (2, 2)])  # remembered across blocks


def test_dedupe_table_keeps_every_key_as_it_grows() -> None:
    mapper = ProfileMapper.for_columns(FieldMapping.from_pairs("email", []), ["email"])
    chunk = map_chunk(mapper, RowBlock(list(range(2, 150_002)), [[f"u{i}@x.com"] for i in range(150_000)]))
    dedupe = Deduplicator(capacity=8)
    assert len(dedupe.unique(chunk.keys, chunk.lines)[0]) == 150_000
    keep, seen = dedupe.unique(chunk.keys[::7], chunk.lines[::7])
    assert keep == [] and [line for _, line in seen] == list(range(2, 150_002, 7))


@pytest.mark.parametrize("value, region, expected", [
    ("+44 20 7946 0958", None, "+442079460958"),  # the fast path: already international
    ("(020) 7946 0958", "GB", "+442079460958"),
    ("020 7946 0958", None, None),  # a local format needs a region
    ("(212) 555-0123", "US", "+12125550123"),
    ("555-0100", "US", None),  # seven digits: not a valid US number
    ("030 901820", "DE", "+4930901820"),
    ("not a phone", "GB", None),
])
def test_local_phone_formats_parse_with_the_exports_region(value: str, region: str | None, expected: str | None) -> None:
    assert normalize_phone(value, region) == expected


def test_an_invalid_optional_field_is_dropped_with_a_warning_by_default() -> None:
    mapping = FieldMapping.from_pairs("email", ["phone=phone_number", "name=first_name"], phone_region="GB")
    mapper = ProfileMapper.for_columns(mapping, ["email", "phone", "name"])
    rows = [["a@x.com", "555-0100", "Ann"], ["b@x.com", "(020) 7946 0958", "n" * 1001], ["nope", "x", ""]]
    profiles, rejects, warnings = mapper.map_block(RowBlock([2, 3, 4], rows))
    assert [p.attributes for p in profiles] == [{"email": "a@x.com", "first_name": "Ann"},
                                                {"email": "b@x.com", "phone_number": "+442079460958"}]
    assert [(w.line, w.column) for w in warnings] == [(2, "phone"), (3, "name")]
    assert warnings[0].reason == ("phone_number is not a valid phone number for region GB; "
                                  "left out, the row was sent without it")
    assert [(r.line, r.column) for r in rejects] == [(4, "email")]  # the email stays required


def test_an_unknown_phone_region_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="phone region 'UK' is not a two-letter region"):
        FieldMapping.from_pairs("email", [], phone_region="UK")


def test_a_reservation_from_a_misleading_size_is_capped() -> None:
    """The run reserves the table from the stored size and the first 1,000 rows: a file whose
    first rows are tiny and the rest huge lines (or a lying size) must not reserve gigabytes.
    Past the cap the table still grows as it fills."""
    from exporter.mapping.dedupe import MAX_RESERVED_SLOTS, slots_for

    assert slots_for(1_000_000) == 1 << 21
    assert slots_for(10**12) == MAX_RESERVED_SLOTS == 1 << 24  # 12 bytes a slot: 201 MB at most
    table = Deduplicator()
    table.reserve(10**12)  # allocates the capped table, not 12 TB
    keep, _ = table.unique(list(range(1, 20_001)), list(range(1, 20_001)))
    assert len(keep) == 20_000
