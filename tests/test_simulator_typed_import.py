"""The simulator's typed decoder may only accept what its exact checks accept, with the same
profiles and lists; the bulk insert of a first import leaves the account as one-by-one
imports do. Pure logic: the HTTP path through both is covered in test_simulator.py."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import msgspec
import orjson
import pytest

from exporter.klaviyo.limits import KLAVIYO_PROFILE_BYTES
from exporter.simulator.state import Account
from exporter.simulator.typed_import import decode_import_job
from exporter.simulator.validation import check_import_job

SPACES = [chr(c) for c in range(0x110000) if chr(c).isspace()]


def profile(i: int) -> dict[str, Any]:
    return {"type": "profile", "attributes": {
        "email": f"ada.lovelace.{i}@example.com", "first_name": "Ada", "last_name": "Lovelace",
        "phone_number": f"+44207{i:07d}", "location": {"city": "London"}, "properties": {"tier": "gold"}}}


def body(profiles: list[dict[str, Any]], lists: Any = ...) -> dict[str, Any]:
    data: dict[str, Any] = {"type": "profile-bulk-import-job", "attributes": {"profiles": {"data": profiles}}}
    if lists is not ...:
        data["relationships"] = lists
    return {"data": data}


def valid() -> dict[str, Any]:
    return body([profile(i) for i in range(3)], {"lists": {"data": [{"type": "list", "id": "L1"}]}})


def with_attributes(**changes: Any) -> dict[str, Any]:
    """The valid body with profile 1's attributes changed (``None`` values are sent as null,
    ``...`` removes the attribute)."""
    document = valid()
    attributes = document["data"]["attributes"]["profiles"]["data"][1]["attributes"]
    for name, value in changes.items():
        if value is ...:
            attributes.pop(name, None)
        else:
            attributes[name] = value
    return document


ACCEPTED = [
    valid(),
    body([profile(0)]),
    body([profile(0)], None),
    body([profile(0)], {"lists": {"data": []}}),
    with_attributes(first_name=None, location=None, properties=None, phone_number=None),
    with_attributes(phone_number=...),
    with_attributes(location={"city": "Oslo", "latitude": "59.9", "zip": None}),
    with_attributes(email="Kelvin\u212a@x.com"),
    with_attributes(first_name="\u00e9\u4e2d\U0001f600 \\ \" \n \u0000"),
    with_attributes(properties={"p": "x" * (KLAVIYO_PROFILE_BYTES - 400)}),
]

REFUSED_OR_EXACT_ONLY = [
    with_attributes(nickname="B"),
    with_attributes(email=5),
    with_attributes(email=None),
    with_attributes(email=""),
    with_attributes(email=...),
    with_attributes(email="no-at-sign"),
    with_attributes(email="a@b@x.com"),
    with_attributes(email="a@x"),
    with_attributes(email="a@x.com\n"),
    *[with_attributes(email=f"a{space}b@x.com") for space in SPACES],
    with_attributes(phone_number="555-0100"),
    with_attributes(phone_number="+0441234567"),
    with_attributes(phone_number="+44207\n"),
    with_attributes(phone_number=44207),
    with_attributes(location={"city": 3}),
    with_attributes(location={"town": "Oslo"}),
    with_attributes(location={"latitude": 59.9}),
    with_attributes(location={"latitude": True}),
    with_attributes(location="Oslo"),
    with_attributes(properties={"vip": True, "n": 1e5}),
    with_attributes(properties=["x"]),
    with_attributes(first_name=["Ada"]),
    with_attributes(properties={"p": "x" * KLAVIYO_PROFILE_BYTES}),
    with_attributes(properties={"p": "\u0001" * (KLAVIYO_PROFILE_BYTES // 6 + 1)}),
    body([]),
    body([profile(i) for i in range(10_001)]),
    body([{"type": "profiles", "attributes": {"email": "a@x.com"}}]),
    body([{"type": "profile", "id": "x", "attributes": {"email": "a@x.com"}}]),
    body([{"type": "profile"}]),
    body([profile(0)], {}),
    body([profile(0)], {"lists": {"data": [{"type": "list", "id": 7}]}}),
    body([profile(0)], {"lists": {"data": [{"type": "segment", "id": "S"}]}}),
    body([profile(0)], {"lists": {"data": {"type": "list", "id": "L"}}}),
    {"data": body([profile(0)])["data"], "meta": {}},
    {"data": {**body([profile(0)])["data"], "type": "profile-import-job"}},
    [body([profile(0)])],
]


def exact(raw: bytes) -> tuple[list[Any], list[dict[str, Any]] | None, list[str] | None]:
    """The exact checks' problems, and the profiles' attributes and list ids when none."""
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return ["parse error"], None, None
    problems = check_import_job(document)
    if problems:
        return problems, None, None
    lists = ((document["data"].get("relationships") or {}).get("lists") or {}).get("data") or []
    return [], [p["attributes"] for p in document["data"]["attributes"]["profiles"]["data"]], [i["id"] for i in lists]


@pytest.mark.parametrize("document", ACCEPTED + REFUSED_OR_EXACT_ONLY)
def test_the_typed_decoder_accepts_only_what_the_exact_checks_accept(document: Any) -> None:
    raw = orjson.dumps(document)
    problems, profiles, list_ids = exact(raw)
    job = decode_import_job(raw)
    if job is not None:
        assert problems == []
        assert [msgspec.to_builtins(p) for p in job.profiles] == profiles and job.list_ids == list_ids
    if any(document is accepted for accepted in ACCEPTED):
        assert job is not None, "the quick way should take this body"
        assert problems == []


@pytest.mark.parametrize("raw", [
    b'{"data":{"type":"profile-bulk-import-job","attributes":{"profiles":{"data":[{"type":"profile",'
    b'"attributes":{"email":"a@x.com","email":"b"}}]}}}}',
    b'{"data":{"type":"profile-bulk-import-job","attributes":{"profiles":{"data":[{"type":"profile",'
    b'"attributes":{"email":"\\ud800@x.com"}}]}}}}',
    b'{"data":{"type":"profile-bulk-import-job","attributes":{"profiles":{"data":[{"type":"profile",'
    b'"attributes":{"email":"\xff@x.com"}}]}}}}',
    b'\xef\xbb\xbf' + orjson.dumps(body([profile(0)])),
    orjson.dumps(body([profile(0)])) + b"x",
])
def test_odd_bytes_get_the_same_verdict_both_ways(raw: bytes) -> None:
    problems, _, _ = exact(raw)
    assert problems != [] and decode_import_job(raw) is None


def test_emails_the_test_hook_refuses_take_the_exact_checks() -> None:
    raw = orjson.dumps(valid())
    assert decode_import_job(raw) is not None
    assert decode_import_job(raw, frozenset({"ada.lovelace.1@example.com"})) is None


def run_jobs(account: Account, jobs: list[list[Any]]) -> None:
    async def apply() -> None:
        for profiles in jobs:
            job = account.submit(profiles, ["L1"])
            account._apply(job)
            account._complete(job)

    asyncio.run(apply())


@pytest.mark.parametrize("repeat", [None, "ADA.LOVELACE.3@EXAMPLE.COM", "ada.lovelace.3@example.invalid"])
def test_a_first_import_in_bulk_leaves_the_account_as_one_by_one_imports_do(repeat: str | None) -> None:
    first = [profile(i) for i in range(50)]
    if repeat is not None:  # an email twice in the first job, or an undeliverable one: not in bulk
        first[7]["attributes"]["email"] = repeat
    later = [profile(i) for i in range(40, 60)] + [profile(5)]  # known, new and repeated emails
    later[0]["attributes"]["first_name"] = "Renamed"
    later[1]["attributes"]["email"] = "ADA.LOVELACE.41@EXAMPLE.COM"
    later[2]["attributes"]["email"] = "nobody@example.invalid"
    typed = [decode_import_job(orjson.dumps(body(copy.deepcopy(job)))) for job in (first, later)]
    assert typed[0] is not None and typed[1] is not None
    bulk, one_by_one = Account(), Account()
    for account in (bulk, one_by_one):
        account.add_list("L1")
    run_jobs(bulk, [typed[0].profiles, typed[1].profiles])
    run_jobs(one_by_one, [[p["attributes"] for p in job] for job in copy.deepcopy([first, later])])
    assert isinstance(one_by_one._profiles[10], dict)
    assert isinstance(bulk._profiles[10], dict) == (repeat is not None)  # bulk was taken exactly when it may be
    assert bulk.profile_count() == one_by_one.profile_count() == (60 if repeat is None else 59)
    assert bulk.member_emails("L1") == one_by_one.member_emails("L1")
    assert [bulk.attributes(p) for p in bulk.profile_ids()] == [one_by_one.attributes(p) for p in one_by_one.profile_ids()]
    assert [(j.completed, j.failed, j.errors) for j in bulk.jobs.values()] \
        == [(j.completed, j.failed, j.errors) for j in one_by_one.jobs.values()]
    assert bulk.attributes(bulk.profile_ids_by_email(["ada.lovelace.40@example.com"])[0])["first_name"] == "Renamed"
