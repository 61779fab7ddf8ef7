"""Klaviyo's answers are untrusted: links to other hosts, several complaints about one
profile, counts larger than the job, and long throttling all get a bounded, honest outcome."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from exporter.errors import KlaviyoRequestError
from exporter.klaviyo.auth import StaticApiKey
from exporter.klaviyo.client import KlaviyoClient
from exporter.klaviyo.retry import RetryPolicy
from exporter.mapping import FieldMapping
from exporter.pipeline import ExportPlan, PipelineOptions, run_export
from exporter.rejects import RejectsFile
from tests.conftest import API_KEY, LIST_ID, write
from tests.hostile_klaviyo import HostileKlaviyo, job_resource, pointer_error

FAST_RETRY = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05, budget_seconds=20)


@pytest.fixture
async def hostile() -> AsyncIterator[HostileKlaviyo]:
    server = await HostileKlaviyo().start()
    yield server
    await server.stop()


@pytest.fixture
async def elsewhere() -> AsyncIterator[HostileKlaviyo]:
    """Another origin (same address, another port) that a link may try to send the key to."""
    server = await HostileKlaviyo().start()
    yield server
    await server.stop()


def client(server: HostileKlaviyo) -> KlaviyoClient:
    return KlaviyoClient(StaticApiKey(API_KEY), server.url, retry=FAST_RETRY, rate_limits=None)


def ok(body: Any, status: int = 200) -> Any:
    return lambda request: (status, body)


async def test_a_next_link_to_another_host_is_not_followed_and_gets_no_key(hostile, elsewhere) -> None:
    listing = {"data": [], "links": {"next": f"{elsewhere.url}/api/profile-bulk-import-jobs?page[cursor]=1"}}
    hostile.script("GET", "/api/profile-bulk-import-jobs", ok(listing))
    elsewhere.script("GET", "/api/profile-bulk-import-jobs", ok({"data": []}))
    async with client(hostile) as klaviyo:
        with pytest.raises(KlaviyoRequestError, match="linked to another host"):
            await klaviyo.job_statuses({"job-1"})
    assert elsewhere.seen == []


async def test_a_next_link_on_the_same_origin_is_followed(hostile) -> None:
    first = {"data": [], "links": {"next": f"{hostile.url}/api/page-two"}}
    hostile.script("GET", "/api/profile-bulk-import-jobs", ok(first))
    hostile.script("GET", "/api/page-two", ok({"data": [job_resource("job-1", "complete", 3, 0)], "links": {}}))
    async with client(hostile) as klaviyo:
        statuses = await klaviyo.job_statuses({"job-1"})
    assert statuses["job-1"].status == "complete"
    assert [s.path for s in hostile.seen] == ["/api/profile-bulk-import-jobs", "/api/page-two"]


async def test_eight_429s_in_a_row_are_waited_out_not_counted_as_failures(hostile) -> None:
    throttled = ok({"errors": [{"status": 429, "code": "throttled", "title": "Throttled."}]}, 429)
    listed = ok({"data": {"type": "list", "id": LIST_ID, "attributes": {"name": "VIP"}}})
    hostile.script("GET", f"/api/lists/{LIST_ID}", *[throttled] * 8, listed)
    async with client(hostile) as klaviyo:  # at most 3 attempts for failures
        assert await klaviyo.check_list(LIST_ID) == "VIP"
    assert len(hostile.seen) == 9


async def test_throttling_is_bounded_by_time(hostile) -> None:
    hostile.script("GET", f"/api/lists/{LIST_ID}", ok({"errors": []}, 429))
    retry = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.02, budget_seconds=0.3)
    async with KlaviyoClient(StaticApiKey(API_KEY), hostile.url, retry=retry, rate_limits=None) as klaviyo:
        with pytest.raises(KlaviyoRequestError, match="kept throttling"):
            await klaviyo.check_list(LIST_ID)
    assert len(hostile.seen) > 3  # more tries than the attempt count, within the time budget


def _job_answers(hostile: HostileKlaviyo) -> None:
    """A 400 with two complaints about profile 1, then acceptance; the job then reports two
    import errors for profile 0 (one failed profile)."""
    hostile.script("GET", f"/api/lists/{LIST_ID}", ok({"data": {"type": "list", "id": LIST_ID, "attributes": {}}}))
    hostile.script("POST", "/api/profile-bulk-import-jobs",
                   ok({"errors": [pointer_error(1, "email"), pointer_error(1, "phone_number", "Bad phone.")]}, 400),
                   ok({"data": job_resource("job-1", "queued", 2, 0)}, 202))
    hostile.script("GET", "/api/profile-bulk-import-jobs", ok({"data": [job_resource("job-1", "complete", 2, 1)]}))
    errors = [{"type": "import-error", "id": str(i),
               "attributes": {"code": "invalid", "title": title, "detail": title,
                              "source": {"pointer": f"/data/attributes/profiles/data/0/attributes/{field}"}}}
              for i, (field, title) in enumerate([("email", "Bad email."), ("first_name", "Bad name.")])]
    hostile.script("GET", "/api/profile-bulk-import-jobs/job-1/import-errors", ok({"data": errors, "links": {}}))


async def test_several_complaints_about_one_profile_reject_one_row(hostile, tmp_path: Path) -> None:
    _job_answers(hostile)
    source = write(tmp_path, "s.csv", b"email,first,phone\na@x.com,Ann,+447700900001\nb@x.com,Bob,+447700900002\n"
                                      b"c@x.com,Cy,+447700900003\n")
    plan = ExportPlan("t", source, LIST_ID, FieldMapping.from_pairs("email", ["first=first_name", "phone=phone_number"]))
    rejects = RejectsFile(tmp_path / "rejects.csv")
    async with client(hostile) as klaviyo:
        report = await asyncio.wait_for(run_export(plan, klaviyo, rejects, options=PipelineOptions(poll_interval=0.01)),
                                        30)
    c = report.counts
    assert report.error is None
    assert c.rows_read == 3 == c.sent + c.rejected + c.duplicates + c.unchanged
    assert (c.sent, c.rejected) == (1, 2)
    lines = (tmp_path / "rejects.csv").read_text().splitlines()[1:]
    assert sorted(lines) == ["2,email; first,Klaviyo: Bad email.; Klaviyo: Bad name.",
                     "3,email; phone,Klaviyo: Invalid input.; Klaviyo: Bad phone."]


@pytest.mark.parametrize("answer", [b"<html>oops</html>", b'"not an object"', b'{"data": {"id": 1}}', b"[]"])
async def test_an_answer_of_the_wrong_shape_is_a_clear_error(hostile, answer: bytes) -> None:
    hostile.script("GET", f"/api/lists/{LIST_ID}", ok(answer))
    hostile.script("POST", "/api/profile-bulk-import-jobs", ok(answer, 202))
    async with client(hostile) as klaviyo:
        with pytest.raises(KlaviyoRequestError, match="Klaviyo answered"):
            await klaviyo.check_list(LIST_ID)
        with pytest.raises(KlaviyoRequestError, match="Klaviyo answered"):
            await klaviyo.create_import_job(b"{}")


async def test_a_passing_403_is_tried_again_and_a_lasting_one_names_both_causes(hostile: HostileKlaviyo) -> None:
    """Klaviyo's CDN challenges shared cloud IPs now and then (403): it passes, so a 403 is
    tried a few times; one that lasts is either a missing scope or the challenge, and says so."""
    from exporter.errors import KlaviyoAuthError

    challenge = (403, {"errors": [{"status": 403, "code": "permission_denied", "title": "Forbidden."}]})
    hostile.script("GET", f"/api/lists/{LIST_ID}", lambda r: challenge,
                   lambda r: (200, {"data": {"type": "list", "id": LIST_ID, "attributes": {"name": "VIP"}}}))
    async with client(hostile) as klaviyo:
        assert await klaviyo.check_list(LIST_ID) == "VIP"
    hostile.script("GET", f"/api/lists/{LIST_ID}", lambda r: challenge)
    before = len(hostile.seen)
    async with client(hostile) as klaviyo:
        with pytest.raises(KlaviyoAuthError) as denied:
            await klaviyo.check_list(LIST_ID)
    assert len(hostile.seen) - before == 3
    assert "lacks a scope" in str(denied.value) and "CDN" in str(denied.value)


@pytest.mark.parametrize("sync", [False, True])
async def test_import_errors_without_a_pointer_or_pointing_elsewhere_find_their_row_by_original_payload(
        hostile, tmp_path: Path, sync: bool) -> None:
    """The pointer is the first guide, the ``original_payload``'s email the check and the
    fallback: with no pointer, or one at another profile, the right row is still refused, and
    no row is "without details" (which would keep the whole job out of the snapshot)."""
    from exporter.sync.plan import SyncPlan
    from exporter.sync.snapshot import LocalSnapshotStore, load_snapshot

    hostile.script("GET", f"/api/lists/{LIST_ID}", ok({"data": {"type": "list", "id": LIST_ID, "attributes": {}}}))
    hostile.script("POST", "/api/profile-bulk-import-jobs", ok({"data": job_resource("job-1", "queued", 4, 0)}, 202))
    hostile.script("GET", "/api/profile-bulk-import-jobs", ok({"data": [job_resource("job-1", "complete", 4, 2)]}))
    errors = [
        {"type": "import-error", "id": "1", "attributes": {  # no pointer at all
            "code": "invalid", "title": "Bad email.", "detail": "x", "source": {},
            "original_payload": {"email": "C@x.com", "first_name": "Cy"}}},
        {"type": "import-error", "id": "2", "attributes": {  # a pointer at profile 0, about profile 3
            "code": "invalid", "title": "Bad name.", "detail": "x",
            "source": {"pointer": "/data/attributes/profiles/data/0/attributes/first_name"},
            "original_payload": {"type": "profile", "attributes": {"email": "d@x.com"}}}},
    ]
    hostile.script("GET", "/api/profile-bulk-import-jobs/job-1/import-errors", ok({"data": errors, "links": {}}))
    source = write(tmp_path, "s.csv", b"email,first\na@x.com,Ann\nb@x.com,Bob\nc@x.com,Cy\nd@x.com,Di\n")
    plan = ExportPlan("t", source, LIST_ID, FieldMapping.from_pairs("email", ["first=first_name"]),
                      sync=SyncPlan(LocalSnapshotStore(tmp_path / "state")) if sync else None)
    async with client(hostile) as klaviyo:
        report = await asyncio.wait_for(run_export(plan, klaviyo, RejectsFile(tmp_path / "rejects.csv"),
                                                   options=PipelineOptions(poll_interval=0.01)), 30)
    assert (report.counts.sent, report.counts.rejected) == (2, 2)
    lines = (tmp_path / "rejects.csv").read_text().splitlines()[1:]
    assert lines == ["4,,Klaviyo: Bad email.", "5,first,Klaviyo: Bad name."]
    if sync:
        snapshot = await load_snapshot(LocalSnapshotStore(tmp_path / "state"))
        assert snapshot is not None and snapshot.members == 2  # the two imported, not the whole job's four


@pytest.mark.parametrize("policy", ["drop", "reject"])
async def test_a_field_klaviyo_refuses_is_dropped_and_the_row_resent_when_invalid_fields_drop(
        hostile, tmp_path: Path, policy: str) -> None:
    """Our E.164 check is a fast path; Klaviyo's is the word. A phone it refuses leaves the
    profile without it (a warning) when invalid fields are dropped, or the row when rejected."""
    import orjson

    hostile.script("GET", f"/api/lists/{LIST_ID}", ok({"data": {"type": "list", "id": LIST_ID, "attributes": {}}}))
    bodies: list[dict] = []

    def refuse_then_take(request: Any) -> Any:
        return 400, {"errors": [pointer_error(1, "phone_number", "Invalid phone number.")]}

    def take(request: Any) -> Any:
        return 202, {"data": job_resource("job-1", "queued", 3, 0)}

    async def record(request: Any) -> None:
        if request.method == "POST":
            bodies.append(orjson.loads(await request.read()))

    hostile.script("POST", "/api/profile-bulk-import-jobs", refuse_then_take, take)
    hostile.script("GET", "/api/profile-bulk-import-jobs", ok({"data": [job_resource("job-1", "complete", 3, 0)]}))
    hostile.on_request = record
    source = write(tmp_path, "s.csv", b"email,phone\na@x.com,+447700900001\nb@x.com,+999999999999\n"
                                      b"c@x.com,+447700900003\n")
    plan = ExportPlan("t", source, LIST_ID, FieldMapping.from_pairs("email", ["phone=phone_number"],
                                                                    invalid_fields=policy))
    async with client(hostile) as klaviyo:
        report = await asyncio.wait_for(run_export(plan, klaviyo, RejectsFile(tmp_path / "rejects.csv"),
                                                   options=PipelineOptions(poll_interval=0.01)), 30)
    resent = [p["attributes"] for p in bodies[-1]["data"]["attributes"]["profiles"]["data"]]
    import csv

    lines = [",".join(row) for row in csv.reader((tmp_path / "rejects.csv").read_text().splitlines()[1:])]
    if policy == "drop":
        assert (report.counts.sent, report.counts.rejected, report.counts.warnings) == (3, 0, 1)
        assert resent[1] == {"email": "b@x.com"} and resent[0]["phone_number"] == "+447700900001"
        assert lines == ["3,phone,Klaviyo: Invalid phone number. (phone_number); left out, the row was sent without it"]
    else:
        assert (report.counts.sent, report.counts.rejected) == (2, 1) and len(resent) == 2
        assert lines == ["3,phone,Klaviyo: Invalid phone number."]
