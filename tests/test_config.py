"""Exports configuration: valid documents load; every problem is reported at once, by name."""

from __future__ import annotations

import copy

import orjson
import pytest

from exporter.config import ConfigProblems, UnknownExport, parse_config

VALID = {
    "connections": [{"name": "main", "display_name": "Main", "key_vault_secret": "klaviyo-api-key"},
                    {"name": "local", "env": "KLAVIYO_API_KEY"}],
    "exports": [
        {"name": "vip", "connection": "main", "source": "vip/", "list_id": "Ab12",
         "mapping": {"email": "Email", "phone_number": "Phone", "properties.tier": "Tier", "city": "Town"}},
        {"name": "lapsed", "connection": "local", "source": "lapsed/customers.csv", "list_id": "Cd34",
         "mapping": {"email": "email"}, "enabled": False},
    ],
}


def load(document: object):
    return parse_config(orjson.dumps(document), "test.json")


def assert_one_export_refused(problem: str, **export: object) -> None:
    """A document with one export of these settings is refused, naming ``problem``."""
    document = {"connections": [{"name": "c", "env": "KLAVIYO_API_KEY"}],
                "exports": [{"name": "vip", "connection": "c", "source": "vip/", "list_id": "L1",
                             "mapping": {"email": "email"}, **export}]}
    with pytest.raises(ConfigProblems, match=problem):
        load(document)


def test_a_valid_document_loads_with_its_mapping() -> None:
    config = load(VALID)
    vip = config.export("vip")
    assert vip.connection.key_vault_secret == "klaviyo-api-key" and vip.mapping.email_column == "Email"
    assert vip.mapping.fields == {"phone_number": "Phone", "properties.tier": "Tier", "location.city": "Town"}
    assert [e.name for e in config.enabled()] == ["vip"]


def test_blobs_are_claimed_by_path_or_prefix() -> None:
    config = load(VALID)
    assert [e.name for e in config.exports_for_blob("vip/2026-11-25.csv")] == ["vip"]
    assert [e.name for e in config.exports_for_blob("lapsed/customers.csv")] == ["lapsed"]
    assert config.exports_for_blob("lapsed/other.csv") == []
    assert config.exports_for_blob("vipers/x.csv") == []


def test_every_problem_is_reported_at_once_by_export_name() -> None:
    broken = copy.deepcopy(VALID)
    broken["exports"] += [
        {"name": "a", "connection": "nope", "source": "a.csv", "list_id": "L", "mapping": {"email": "e"}},
        {"name": "b", "connection": "main", "source": "b.csv", "list_id": 12345, "mapping": {"email": "e"}},
        {"name": "c", "connection": "main", "source": "c.csv", "list_id": "L", "mapping": {"phone_number": "p"}},
        {"name": "d", "connection": "main", "source": "vip/d.csv", "list_id": "L", "mapping": {"email": "e"}},
        {"name": "e", "connection": "main", "source": "e.csv", "list_id": "L", "mapping": {"email": "e", "nick": "n"}},
    ]
    with pytest.raises(ConfigProblems) as raised:
        load(broken)
    problems = raised.value.problems
    assert problems == [
        "export 'a': unknown connection 'nope' (known: local, main)",
        "export 'b': 'list_id' must be a non-empty string (got int)",
        "export 'c': 'mapping' must name the email column, e.g. {\"email\": \"Email\"}",
        problems[3],
        "exports 'vip' and 'd' are both bound to 'vip/d.csv'",
    ]
    assert problems[3].startswith("export 'e': unknown Klaviyo profile field 'nick'")
    assert str(raised.value).startswith("exports config test.json has 5 problem(s): export 'a'")


def test_two_exports_on_the_same_path_and_duplicate_names_are_refused() -> None:
    doubled = copy.deepcopy(VALID)
    doubled["exports"].append({**VALID["exports"][1], "name": "again"})  # type: ignore[dict-item]
    doubled["exports"].append(VALID["exports"][0])
    with pytest.raises(ConfigProblems) as raised:
        load(doubled)
    assert "export 'vip': defined twice" in raised.value.problems
    assert "exports 'lapsed' and 'again' are both bound to 'lapsed/customers.csv'" in raised.value.problems


def test_connection_problems_and_bad_json() -> None:
    with pytest.raises(ConfigProblems, match="give exactly one of 'key_vault_secret'"):
        load({"connections": [{"name": "x"}], "exports": []})
    with pytest.raises(ConfigProblems, match="not valid JSON"):
        parse_config(b"{", "x.json")


def test_unknown_export_names_the_known_ones() -> None:
    with pytest.raises(UnknownExport) as raised:
        load(VALID).export("nope")
    assert raised.value.known == ["lapsed", "vip"]
