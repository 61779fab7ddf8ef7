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
    profiles, rejects = mapper.map_block(RowBlock([2], [[" A@X.com", " Ann ", "+44 20 7946 0958", "C-1", "Oslo",
                                                        "", "gold", 12.5]]))
    assert rejects == []
    assert profiles[0].line == 2 and profiles[0].email_key == "a@x.com"
    assert profiles[0].attributes == {
        "email": "A@X.com", "first_name": "Ann", "phone_number": "+442079460958", "external_id": "C-1",
        "location": {"city": "Oslo"}, "properties": {"tier": "gold", "lifetime_value": 12.5}}


def test_bad_rows_are_rejected_with_line_column_and_reason() -> None:
    mapping = FieldMapping.from_pairs("email", ["phone=phone_number", "name=first_name"])
    mapper = ProfileMapper.for_columns(mapping, ["email", "phone", "name"])
    rows = [["", "", ""], ["nope", "", ""], ["a@x.com", "12", ""], ["b@x.com", "", "n" * 1001],
            [None, "", ""], ["c@x.com"]]
    profiles, rejects = mapper.map_block(RowBlock(list(range(2, 8)), rows))
    assert [(r.line, r.column) for r in rejects] == [(2, "email"), (3, "email"), (4, "phone"), (5, "name"), (6, "email")]
    assert "E.164" in rejects[2].reason and "1001 characters" in rejects[3].reason
    assert [p.line for p in profiles] == [7]  # a short row just lacks the optional fields
    assert all("a@x.com" not in r.reason for r in rejects)


def test_oversized_profile_is_rejected_before_klaviyo_sees_it() -> None:
    mapper = ProfileMapper.for_columns(FieldMapping.from_pairs("email", ["blob=properties.blob"]), ["email", "blob"])
    chunk = map_chunk(mapper, RowBlock([2, 3], [["a@x.com", "x" * 110_000], ["b@x.com", "small"]]))
    assert list(chunk.lines) == [3] and chunk.rows == 2
    assert chunk.rejects[0].line == 2 and "bytes; Klaviyo allows 102400" in chunk.rejects[0].reason
    assert bytes(chunk.body(0)) == b'{"type":"profile","attributes":{"email":"b@x.com","properties":{"blob":"small"}}}'


def test_undecodable_row_is_rejected_and_others_are_kept() -> None:
    mapper = ProfileMapper.for_columns(FieldMapping.from_pairs("email", []), ["email", "name"])
    block = RowBlock([2, 3], [["a@x.com", "\udcff"], ["b@x.com", "ok"]], has_undecodable=True)
    profiles, rejects = mapper.map_block(block)
    assert [p.line for p in profiles] == [3]
    assert rejects[0].line == 2 and "UTF-8" in rejects[0].reason


def test_duplicates_are_case_insensitive_and_the_first_row_wins() -> None:
    mapper = ProfileMapper.for_columns(FieldMapping.from_pairs("email", []), ["email"])
    chunk = map_chunk(mapper, RowBlock([2, 3, 4], [["A@x.com"], ["b@x.com"], [" a@X.COM "]]))
    dedupe = Deduplicator()
    assert [chunk.lines[i] for i in dedupe.unique(chunk.keys)] == [2, 3]
    assert dedupe.unique(chunk.keys) == []  # remembered across blocks


def test_dedupe_table_keeps_every_key_as_it_grows() -> None:
    mapper = ProfileMapper.for_columns(FieldMapping.from_pairs("email", []), ["email"])
    chunk = map_chunk(mapper, RowBlock(list(range(150_000)), [[f"u{i}@x.com"] for i in range(150_000)]))
    dedupe = Deduplicator(capacity=8)
    assert len(dedupe.unique(chunk.keys)) == 150_000
    assert dedupe.unique(chunk.keys[::7]) == []
