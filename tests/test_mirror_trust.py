"""Mirror mode removes nobody who is still in the segment: each way a read can be damaged or
half-written, a lookup can go wrong or a caller can overreach, replayed through the real
path (Azurite, the function objects, the simulator, the CLI)."""

from __future__ import annotations

import asyncio
import csv
from pathlib import Path

import orjson
import pytest
from azure.functions.timer import TimerRequest

import function_app
from exporter.config import ConfigProblems, parse_config
from exporter.klaviyo.lists import MAX_LOOKUP_PAGES
from exporter.mapping import FieldMapping
from exporter.pipeline import ExportPlan, run_export
from exporter.rejects import RejectsFile
from exporter.sync.plan import SyncPlan
from exporter.sync.snapshot import LocalSnapshotStore
from tests.app_harness import App, call, post
from tests.conftest import API_KEY, LIST_ID, client_for
from tests.test_sync import emails_in, run, segment, stored_snapshot, sync_config


def members(app: App) -> set[str]:
    return {email.lower() for email in app.sim.simulator.account.member_emails(LIST_ID)}


async def mirrored(app: App, rows: int = 1_000, **export: object) -> bytes:
    """A mirror export of ``vip/all.csv`` whose first run put ``rows`` members in the list."""
    await app.set_config(sync_config("mirror", **export))
    data = segment(rows)
    await app.put(app.segments, "vip/all.csv", data)
    first = (await run(app))["report"]
    assert first["status"] == "succeeded" and len(members(app)) == rows
    return data


def assert_held(report: dict, everyone: set[str], app: App, why: str) -> None:
    sync = report["sync"]
    assert report["status"] == "partial" and report["counts"]["removed"] == 0
    assert report["counts"]["remove_pending"] == sync["leavers"] > 0
    assert sync["damage"] and why in sync["damage"] and sync["read_whole"] is False
    assert any(why in hint for hint in report["hints"])
    assert members(app) == everyone  # nobody removed


async def test_a_csv_cut_mid_line_removes_nobody(app) -> None:
    data = await mirrored(app)
    cut = data[:int(len(data) * 0.55)]
    assert not cut.endswith(b"\n")
    await app.put(app.segments, "vip/all.csv", cut)
    report = (await run(app))["report"]
    assert_held(report, emails_in(data), app, "last line has no line end")
    cut_line = cut.count(b"\n") + 1
    assert f"line {cut_line}:" in report["sync"]["damage"]  # where the cut is
    c = report["counts"]
    assert c["rows_read"] == c["sent"] + c["rejected"] + c["duplicates"] + c["unchanged"]  # conservation holds
    _, snapshot = await stored_snapshot(app)
    assert snapshot is not None and snapshot.members == 1_000  # the leavers wait in the snapshot


async def test_stray_quotes_that_swallow_lines_remove_nobody(app) -> None:
    data = await mirrored(app)
    lines = data.decode().splitlines(keepends=True)
    for at in (100, 180, 400, 420, 700):  # five first names that start with a quote
        email, first, rest = lines[at].split(",", 2)
        lines[at] = f'{email},"{first},{rest}'
    await app.put(app.segments, "vip/all.csv", "".join(lines).encode())
    report = (await run(app))["report"]
    assert_held(report, emails_in(data), app, "a quoted field runs over")


async def test_undecodable_bytes_remove_nobody(app) -> None:
    data = await mirrored(app)
    lines = data.splitlines(keepends=True)
    lines[10] = lines[10].replace(b"Ada", b"Ad\xe9", 1) if b"Ada" in lines[10] else lines[10][:-1] + b"\xff\n"
    await app.put(app.segments, "vip/all.csv", b"".join(lines[:500] + lines[501:]))  # and someone left
    report = (await run(app))["report"]
    assert_held(report, emails_in(data), app, "bytes that are not valid UTF-8")


async def test_a_clean_refresh_still_removes_its_leavers(app) -> None:
    data = await mirrored(app)
    refreshed = segment(1_000, removed=range(3, 1_000, 50))
    await app.put(app.segments, "vip/all.csv", refreshed)
    report = (await run(app))["report"]
    assert report["status"] == "succeeded" and report["sync"]["read_whole"] is True
    assert report["counts"]["removed"] == 20 and report["counts"]["remove_pending"] == 0
    assert members(app) == emails_in(refreshed) and len(emails_in(data)) == 1_000


async def test_a_timer_start_waits_for_a_folder_run_still_being_written(app) -> None:
    """Three of four part files are there: the timer's run waits (status waiting), reads
    nothing and removes nobody; once quiet, the whole run is read."""
    def part(rows: range) -> bytes:
        lines = segment(400).decode().splitlines(keepends=True)
        return (lines[0] + "".join(lines[1 + i] for i in rows)).encode()

    await app.set_config(sync_config("mirror", settle_seconds=0))
    for number in range(4):
        await app.put(app.segments, f"vip/2026/11/24/part-{number}.csv", part(range(number * 100, number * 100 + 100)))
    assert (await run(app))["report"]["counts"]["sent"] == 400
    everyone = members(app)
    await app.set_config(sync_config("mirror", settle_seconds=3600))
    for number in range(3):
        await app.put(app.segments, f"vip/2026/11/25/part-{number}.csv", part(range(number * 100, number * 100 + 100)))
    jobs = app.sim.simulator.stats.jobs_received
    await call(function_app.scheduled_exports, TimerRequest(past_due=False))
    await app.deliver()
    states = [s for s in await runs(app) if s["trigger"] == "timer"]
    assert [s["status"] for s in states] == ["waiting"]
    assert "quiet for 3600 s" in states[0]["error"]
    assert app.sim.simulator.stats.jobs_received == jobs and members(app) == everyone


async def runs(app: App) -> list[dict]:
    container = app.runtime.service().store.container
    found = []
    async for blob in container.list_blobs(name_starts_with="vip/"):
        if blob.name.endswith("/state.json"):
            found.append(orjson.loads(await (await container.download_blob(blob.name)).readall()))
    return found


def test_a_mirrored_list_has_one_export_only() -> None:
    document = {"connections": [{"name": "c", "env": "KLAVIYO_API_KEY"}],
                "exports": [{"name": "vip", "connection": "c", "source": "vip/", "list_id": "L1", "mode": "mirror",
                             "mapping": {"email": "email"}},
                            {"name": "lapsed", "connection": "c", "source": "lapsed.csv", "list_id": "L1",
                             "mapping": {"email": "email"}}]}
    with pytest.raises(ConfigProblems) as refused:
        parse_config(orjson.dumps(document), "exports.json")
    assert "export 'vip' mirrors list 'L1', which export(s) 'lapsed' also use" in str(refused.value)
    document["exports"][0]["mode"] = "add"  # two add exports may share a list
    assert set(parse_config(orjson.dumps(document), "exports.json").exports) == {"vip", "lapsed"}


def test_the_cli_refuses_a_mirror_of_a_shared_list(tmp_path: Path) -> None:
    from tests.test_cli import cli

    (tmp_path / "s.csv").write_bytes(segment(3))
    document = {"connections": [{"name": "c", "env": "KLAVIYO_API_KEY"}],
                "exports": [{"name": "vip", "connection": "c", "source": "vip.csv", "list_id": "L1",
                             "mapping": {"email": "email"}},
                            {"name": "lapsed", "connection": "c", "source": "lapsed.csv", "list_id": "L1",
                             "mapping": {"email": "email"}}]}
    (tmp_path / "exports.json").write_bytes(orjson.dumps(document))
    result = cli("export", "--config", str(tmp_path / "exports.json"), "--export", "vip", "--mode", "mirror",
                 "--source", str(tmp_path / "s.csv"), "--dry-run", env={"KLAVIYO_API_KEY": API_KEY})
    assert result.returncode == 2 and "is also used by 'lapsed'" in result.stderr


@pytest.mark.parametrize("fault", ["cut", "loop"])
async def test_a_lookup_that_cannot_be_read_whole_leaves_its_leavers_pending(app, fault: str) -> None:
    """Klaviyo's answer pages wrongly: half the members and a page that fails, or a page that
    links to itself. Nobody counts as removed or as off the list; the lookups are bounded;
    the export is free again; the next run, with a healthy answer, removes them."""
    data = await mirrored(app)
    refreshed = segment(1_000, removed=range(0, 1_000, 25))  # 40 leavers: one lookup batch
    await app.put(app.segments, "vip/all.csv", refreshed)
    app.sim.simulator.paging_fault = fault
    lookups = app.sim.simulator.stats.by_route.get("GET /api/lists/{id}/profiles", 0)
    report = (await run(app))["report"]
    made = app.sim.simulator.stats.by_route["GET /api/lists/{id}/profiles"] - lookups
    assert made <= MAX_LOOKUP_PAGES
    c = report["counts"]
    assert report["status"] == "partial" and (c["removed"], c["remove_pending"], c["remove_failed"]) == (0, 40, 40)
    assert report["sync"]["not_on_list"] == 0 and members(app) == emails_in(data)
    _, snapshot = await stored_snapshot(app)
    assert snapshot is not None and snapshot.members == 1_000  # still there, to be tried again
    app.sim.simulator.paging_fault = None
    again = (await run(app))["report"]  # started at once: the export was not left locked
    assert again["status"] == "succeeded" and again["counts"]["removed"] == 40
    assert members(app) == emails_in(refreshed)


async def test_a_function_key_cannot_widen_removals(app) -> None:
    await mirrored(app)
    await app.put(app.segments, "vip/all.csv", b"email,first_name,last_name,phone,city,tier\n")  # header only
    response = await call(function_app.start_run, post("vip", body=b'{"allowMassRemoval": true}'))
    assert response.status_code == 403
    assert "admin-runs" in orjson.loads(response.get_body())["error"]
    await app.deliver()
    assert len(members(app)) == 1_000
    held = (await run(app))["report"]  # without the override: the guard holds
    assert held["status"] == "partial" and held["counts"]["removed"] == 0 and held["sync"]["guard"]
    allowed = (await run(app, {"allowMassRemoval": True}))["report"]  # the admin key's route
    assert allowed["counts"]["removed"] == 1_000 and members(app) == set()


async def test_an_override_does_not_lift_a_damage_hold(app) -> None:
    data = await mirrored(app)
    await app.put(app.segments, "vip/all.csv", data[:len(data) // 2])
    report = (await run(app, {"allowMassRemoval": True}))["report"]
    assert_held(report, emails_in(data), app, "last line has no line end")


def local_plan(source: Path, state: Path, mode: str = "mirror") -> ExportPlan:
    return ExportPlan("t", str(source), LIST_ID, FieldMapping("email"),
                      sync=SyncPlan(LocalSnapshotStore(state), mode, max_remove_fraction=0.9))


async def damaged_snapshot_run(simulator, tmp_path: Path, damage) -> tuple[object, set[str]]:
    source, state = tmp_path / "s.csv", tmp_path / "state"
    source.write_bytes(segment(300))
    async with client_for(simulator) as klaviyo:
        assert (await run_export(local_plan(source, state), klaviyo, RejectsFile(tmp_path / "r1.csv"))).status \
            == "succeeded"
    before = {e.lower() for e in simulator.simulator.account.member_emails(LIST_ID)}
    path = state / "snapshot.bin"
    path.write_bytes(damage(path.read_bytes()))
    source.write_bytes(segment(300, removed=range(0, 300, 30)))
    async with client_for(simulator) as klaviyo:
        report = await run_export(local_plan(source, state), klaviyo, RejectsFile(tmp_path / "r2.csv"))
    return report, before


def rotate_emails(stored: bytes) -> bytes:
    """The emails section moved by one line: every member's email is its neighbour's."""
    head, emails = _split_emails(stored)
    lines = emails.splitlines(keepends=True)
    return head + b"".join(lines[1:] + lines[:1])


def _split_emails(stored: bytes) -> tuple[bytes, bytes]:
    magic, header, checksum, rest = stored.split(b"\n", 3)
    document = orjson.loads(header)
    cut = len(magic) + len(header) + len(checksum) + 3 + 12 * document["members"] + 8 * document.get("warned", 0)
    return stored[:cut], stored[cut:]


def flip_a_key_byte(stored: bytes) -> bytes:
    magic, header, checksum, _ = stored.split(b"\n", 3)
    at = len(magic) + len(header) + len(checksum) + 3 + 8 * 7 + 6  # a middle byte of the 8th key
    return stored[:at] + bytes([stored[at] ^ 0x01]) + stored[at + 1:]


def _signed(document: dict, sections: bytes) -> bytes:
    """A snapshot whose header and checksums are all correct: only its contents can give it away."""
    import xxhash

    from exporter.sync.snapshot import MAGIC

    header = orjson.dumps(document)
    return MAGIC + header + b"\n" + xxhash.xxh3_128_hexdigest(header).encode() + b"\n" + sections


def swap_two_keys_and_sign(stored: bytes) -> bytes:
    """Keys 7 and 8 swapped, with the keys section's checksum recomputed: out of order."""
    import xxhash

    _, header, _, rest = stored.split(b"\n", 3)
    document = orjson.loads(header)
    keys = bytearray(rest[:8 * document["members"]])
    keys[56:64], keys[64:72] = keys[64:72], keys[56:64]
    document["sections"]["keys"] = xxhash.xxh3_128_hexdigest(bytes(keys))
    return _signed(document, bytes(keys) + rest[len(keys):])


def claim_a_trillion_members_and_sign(stored: bytes) -> bytes:
    """A header that claims 10^12 members (about 12 TB of keys and fingerprints), signed: the
    load must fail when the bytes run out, never size memory from the claim."""
    _, header, _, rest = stored.split(b"\n", 3)
    document = orjson.loads(header)
    document["members"] = 10 ** 12
    return _signed(document, rest)


@pytest.mark.parametrize("damage", [rotate_emails, flip_a_key_byte, swap_two_keys_and_sign,
                                    claim_a_trillion_members_and_sign])
async def test_a_damaged_snapshot_fails_the_run_and_removes_nobody(simulator, tmp_path, damage) -> None:
    report, before = await damaged_snapshot_run(simulator, tmp_path, damage)
    assert report.status == "failed" and "damaged" in (report.error or "") and "delete it" in (report.error or "")
    if damage in (swap_two_keys_and_sign, claim_a_trillion_members_and_sign):  # the load itself refuses them
        assert "is damaged or not a snapshot" in (report.error or "")
    assert report.counts.removed == 0
    assert {e.lower() for e in simulator.simulator.account.member_emails(LIST_ID)} == before


async def test_a_format_2_snapshot_with_rotated_emails_removes_nobody(simulator, tmp_path) -> None:
    """No checksums to catch it: each leaver's email is checked against its key instead."""
    from exporter.sync.snapshot import MAGIC_V2

    def as_version_2_rotated(stored: bytes) -> bytes:
        head, emails = _split_emails(rotate_emails(stored))
        magic, header, _, rest = head.split(b"\n", 3)
        document = orjson.loads(header)
        document.pop("sections")
        return MAGIC_V2 + orjson.dumps(document) + b"\n" + rest + emails

    report, before = await damaged_snapshot_run(simulator, tmp_path, as_version_2_rotated)
    assert report.status == "failed" and "does not match its key" in (report.error or "")
    assert {e.lower() for e in simulator.simulator.account.member_emails(LIST_ID)} == before


async def read_preview(app: App, report: dict) -> list[list[str]]:
    container = app.runtime.service().store.container
    name = report["sync"]["preview"].split(f"/{app.reports}/")[1]
    return list(csv.reader((await (await container.download_blob(name)).readall()).decode().splitlines()))


async def test_an_add_mode_preview_lists_no_removal(app) -> None:
    await app.set_config(sync_config("add"))
    await app.put(app.segments, "vip/all.csv", segment(200))
    await run(app)
    await app.put(app.segments, "vip/all.csv", segment(200, removed=range(0, 200, 20), added=3))
    report = (await run(app, {"dryRun": True}))["report"]
    assert report["sync"]["would_remove"] == 0 and report["sync"]["leavers"] == 10
    rows = await read_preview(app, report)
    kinds = [row[0] for row in rows[1:]]
    assert "remove" not in kinds and kinds.count("keep") == 10
    assert all(row[3] == "add mode never removes anyone" for row in rows[1:] if row[0] == "keep")


async def test_a_guarded_preview_says_the_removals_are_held(app, tmp_path) -> None:
    await mirrored(app, 100)
    await app.put(app.segments, "vip/all.csv", segment(100, removed=range(60)))
    report = (await run(app, {"dryRun": True}))["report"]
    assert report["sync"]["guard"] and report["sync"]["would_remove"] == 0
    rows = await read_preview(app, report)
    held = [row for row in rows[1:] if row[0].startswith("remove")]
    assert held and all(row[0] == "remove, but held" and "max_remove_fraction" in row[3] for row in held)


async def test_the_cli_summary_agrees_with_a_held_report(simulator, tmp_path) -> None:
    from tests.test_cli import cli

    source = tmp_path / "s.csv"
    source.write_bytes(segment(100))
    args = ("export", "--source", str(source), "--list-id", LIST_ID, "--email-column", "email", "--mode", "mirror",
            "--klaviyo-url", simulator.url, "--state", str(tmp_path / "state"))
    env = {"KLAVIYO_API_KEY": API_KEY}
    assert (await asyncio.to_thread(cli, *args, env=env)).returncode == 0
    source.write_bytes(segment(100, removed=range(0, 100, 4)) + b"someone.cut@exam")
    result = await asyncio.to_thread(cli, *args, "--dry-run", env=env)
    report = orjson.loads(result.stdout)
    assert report["sync"]["damage"] and report["sync"]["would_remove"] == 0
    assert "25 leavers kept: removals held" in result.stderr and "would remove" not in result.stderr


async def test_spreadsheet_formulas_in_the_files_people_open_are_neutralized(simulator, tmp_path) -> None:
    """An email that starts with '=' reaches Klaviyo as it is, and shows as text in the
    preview; a column name starting with '@' shows as text in the rejects file."""
    source = tmp_path / "s.csv"
    source.write_text("email,@phone\n=1+1@x.com,not a phone\n-2@x.com,+44 20 7946 0000\n")
    plan = ExportPlan("t", str(source), LIST_ID, FieldMapping("email", {"phone_number": "@phone"}),
                      sync=SyncPlan(LocalSnapshotStore(tmp_path / "state"), preview=tmp_path / "preview.csv"))
    dry = await run_export(plan, None, RejectsFile(tmp_path / "dry.csv"))
    preview = list(csv.reader((tmp_path / "preview.csv").read_text().splitlines()))
    assert [row[2] for row in preview[1:]] == ["'=1+1@x.com", "'-2@x.com"]
    assert dry.counts.warnings == 1
    rejects = list(csv.reader((tmp_path / "dry.csv").read_text().splitlines()))
    assert rejects[1][1] == "'@phone"
    async with client_for(simulator) as klaviyo:
        report = await run_export(plan, klaviyo, RejectsFile(tmp_path / "r.csv"))
    assert report.counts.sent == 2
    assert set(simulator.simulator.account.member_emails(LIST_ID)) == {"=1+1@x.com", "-2@x.com"}


def parse(text: str) -> list:
    from exporter.sources.csv_format import CsvParser
    from exporter.sources.lines import LineSplitter

    splitter, parser = LineSplitter(), CsvParser()
    lines, _ = splitter.feed(text, final=True)
    block = parser.feed(lines, final=True)
    return block.damage + [("unterminated", splitter.unterminated)] * bool(splitter.unterminated)


def test_a_well_formed_multi_line_field_is_no_damage_but_a_swallowing_quote_is() -> None:
    assert parse('email,address\na@x.com,"1 High St\nLondon"\nb@x.com,x\n') == []
    swallowed = parse('email,first,last\na@x.com,"Ann,Lee\nb@x.com,Bob,Ray\nc@x.com,"Cat,Fox\n')
    assert [damage.line for damage in swallowed] == [2]
    assert "a stray quote may have swallowed rows" in swallowed[0].reason


def test_only_a_last_line_with_content_and_no_line_end_is_a_cut() -> None:
    assert parse("email\na@x.com\n") == [] and parse("email\na@x.com\n  ") == []
    assert parse("email\na@x.com\nb@x.co") == [("unterminated", 3)]
    assert parse("email\r\na@x.com\r") == []  # an old Mac line end is a line end


async def test_the_progress_line_shows_leavers_looked_up_and_removed(simulator, tmp_path) -> None:
    from tests.test_cli import on_a_terminal

    source, state = tmp_path / "s.csv", tmp_path / "state"
    args = ("export", "--source", str(source), "--list-id", LIST_ID, "--email-column", "email", "--mode", "mirror",
            "--klaviyo-url", simulator.url, "--state", str(state))
    source.write_bytes(segment(300))
    assert (await on_a_terminal(*args))[0] == 0
    source.write_bytes(segment(300, removed=range(0, 300, 3)))
    code, screen = await on_a_terminal(*args)
    assert code == 0 and "leavers: 100 of 100 looked up, 100 removed" in screen, screen


async def test_the_status_api_shows_the_removal_phase_and_it_goes_on_across_legs(azurite, simulator,
                                                                                 monkeypatch) -> None:
    """With no time budget each leg looks up one batch, says so in its progress, and hands
    over; the run ends with every leaver removed once."""
    from azure.functions.queue import QueueMessage

    from tests.test_sync import run as start_and_deliver

    app = App(azurite, simulator, budget=0, monkeypatch=monkeypatch)
    await app.set_config(sync_config("mirror"))
    refreshed = segment(2_000, removed=range(0, 2_000, 8))  # 250 leavers: three lookup batches
    await app.put(app.segments, "vip/all.csv", segment(2_000))
    assert (await start_and_deliver(app))["report"]["counts"]["sent"] == 2_000
    await app.put(app.segments, "vip/all.csv", refreshed)
    answer = orjson.loads((await call(function_app.start_run, post("vip"))).get_body())
    queue, worker = app.runtime.service().queue, function_app.run_worker.build().get_user_function()
    seen = []
    for _ in range(40):
        batch = [m async for m in queue.receive_messages(max_messages=1, visibility_timeout=30)]
        if not batch:
            break
        await worker(QueueMessage(id=batch[0].id, body=batch[0].content.encode(), dequeue_count=1))
        await queue.delete_message(batch[0])
        seen.append((await app.runtime.service().status("vip", answer["run_id"])) or {})
    await app.runtime.aclose()
    looked_up = [s["progress"]["leavers_looked_up"] for s in seen if "leavers_looked_up" in (s.get("progress") or {})]
    assert looked_up and looked_up == sorted(looked_up) and looked_up[0] < 250
    final = seen[-1]["report"]
    assert final["counts"]["removed"] == 250 and final["sync"]["not_on_list"] == 0
    assert members(app) == emails_in(refreshed)


@pytest.mark.parametrize("arguments", [5, True, "columnHeaders"])
def test_cdm_trait_arguments_of_the_wrong_type_are_a_reason_not_a_crash(arguments: object) -> None:
    from exporter.errors import SourceError
    from exporter.sources.cdm import _trait_arguments

    traits = [{"traitReference": "is.partition.format.CSV", "arguments": arguments}]
    with pytest.raises(SourceError, match=r"manifest.cdm.json: the partition format trait's 'arguments' must be a list"):
        _trait_arguments(traits, "manifest.cdm.json")


def test_the_run_of_a_cdm_manifest_is_its_newest_refresh_time_in_any_subfolder(tmp_path) -> None:
    from exporter.sources.cdm import Partition, _newest
    from exporter.sources.folders import Entry

    def partition(name: str, refreshed: str | None) -> Partition:
        from datetime import datetime

        stamp = datetime.fromisoformat(refreshed) if refreshed else None
        return Partition(Entry(name, 0.0, 1), None, None, None, stamp)

    listed = [partition("VIP/2026/11/25/a/VIP_1.csv", "2026-11-25T06:00:00+00:00"),
              partition("VIP/2026/11/25/b/VIP_2.csv", "2026-11-25T06:00:00+00:00"),
              partition("VIP/2026/11/24/VIP_1.csv", "2026-11-24T06:00:00+00:00")]
    assert [p.entry.name for p in _newest(listed)] == ["VIP/2026/11/25/a/VIP_1.csv", "VIP/2026/11/25/b/VIP_2.csv"]
    undated = [partition(p.entry.name, None) for p in listed]  # nothing tells runs apart: read them all
    assert len(_newest(undated)) == 3


@pytest.mark.parametrize("engine", ["columnar", "row"])
async def test_a_delta_run_lists_the_warnings_of_unchanged_rows_too(simulator, tmp_path, engine: str) -> None:
    """Unchanged rows are not sent, but those whose fields drew warnings when they were sent are
    mapped again, so every run's rejects file tells the same data-quality story."""

    lines = segment(200).decode().splitlines(keepends=True)
    for at in (3, 50, 120):
        email, first, last, _, rest = lines[at].split(",", 4)
        lines[at] = f"{email},{first},{last},not a phone,{rest}"
    source, state = tmp_path / "s.csv", tmp_path / "state"
    source.write_text("".join(lines))
    plan = ExportPlan("t", str(source), LIST_ID, FieldMapping("email", {"phone_number": "phone"}, "GB"),
                      sync=SyncPlan(LocalSnapshotStore(state)), engine=engine)

    async def export(number: int) -> tuple[object, list[list[str]]]:
        async with client_for(simulator) as klaviyo:
            report = await run_export(plan, klaviyo, RejectsFile(tmp_path / f"r{number}.csv", always=True))
        return report, list(csv.reader((tmp_path / f"r{number}.csv").read_text().splitlines()))[1:]

    first, warned = await export(1)
    assert first.counts.sent == 200 and [row[0] for row in warned] == ["4", "51", "121"]
    again, rewarned = await export(2)
    assert (again.counts.sent, again.counts.unchanged, again.counts.warnings) == (0, 200, 3)
    assert rewarned == warned and again.sync["warnings_rechecked"] == 3
    email, first_name, last, _, rest = lines[50].split(",", 4)
    lines[50] = f"{email},{first_name},{last},+44 20 7946 0001,{rest}"  # mended at the source
    source.write_text("".join(lines))
    mended, _ = await export(3)
    assert mended.counts.sent == 1
    quiet, left = await export(4)
    assert quiet.counts.sent == 0 and [row[0] for row in left] == ["4", "121"]
