"""Delta refresh, mirror mode, the guard and the preview, through Azurite, the function
app and the simulator (and the CLI's local snapshot), as issue 10 asks."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
from pathlib import Path

import orjson
import pytest

import function_app
from devtools.sample import refreshed_lines
from exporter.mapping import FieldMapping
from exporter.pipeline import ExportPlan, PipelineOptions, run_export
from exporter.rejects import RejectsFile
from exporter.sources.files import BlobLocation
from exporter.sync.keys import KEYINGS
from exporter.sync.plan import SyncPlan
from exporter.sync.snapshot import MAGIC_V2, BlobSnapshotStore, LocalSnapshotStore, Snapshot, copy_emails, load_snapshot
from tests.app_harness import SECOND_LIST, App, call, config, post, status_of
from tests.conftest import API_KEY, LIST_ID, client_for


def every_key(snapshot: Snapshot) -> list[int]:
    return list(snapshot.index.keys_between(0, snapshot.members))


def segment(rows: int, *, changed: range = range(0), removed: range = range(0), added: int = 0,
            bad_every: int = 0) -> bytes:
    """``rows`` synthetic rows, some renamed (changed), some left out (removed), some new."""
    return "".join(refreshed_lines(rows, changed=changed, removed=removed, added=added, bad_every=bad_every)).encode()


def emails_in(data: bytes) -> set[str]:
    return {line.split(",")[0].lower() for line in data.decode().splitlines()[1:]}


def sync_config(mode: str = "add", **export: object) -> dict:
    document = config()
    document["exports"][0].update({"mode": mode, **export})
    return document


async def run(app: App, body: dict | None = None) -> dict:
    """A run started as an operator would: overrides through the admin-key route."""
    route = function_app.start_run_with_overrides if (body or {}).get("allowMassRemoval") else function_app.start_run
    answer = orjson.loads((await call(route, post("vip", body=orjson.dumps(body or {})))).get_body())
    await app.deliver()
    return await status_of("vip", answer["run_id"])


async def stored_snapshot(app: App, export: str = "vip"):
    location = BlobLocation(app.runtime.service().storage.blobs.url, app.reports, f"{export}/snapshot.bin",
                            app.runtime.service().storage.credential)
    store = BlobSnapshotStore(location)
    return store, await load_snapshot(store)


async def test_an_unchanged_segment_sends_nothing_the_second_time(app) -> None:
    data = segment(100_000)
    await app.put(app.segments, "vip/all.csv", data)
    first = (await run(app))["report"]
    assert first["counts"]["sent"] == 100_000 and first["sync"]["full"] is True
    received = app.sim.simulator.stats.profiles_received
    second = (await run(app))["report"]
    assert second["status"] == "succeeded"
    assert second["counts"]["sent"] == 0 and second["counts"]["unchanged"] == 100_000 and second["jobs"] == []
    assert app.sim.simulator.stats.profiles_received == received
    _, snapshot = await stored_snapshot(app)
    assert snapshot is not None and snapshot.header.members == 100_000 and snapshot.header.list_id == LIST_ID


async def test_a_refresh_sends_what_changed_and_mirror_mode_removes_leavers(app) -> None:
    rows = 100_000
    await app.set_config(sync_config("add"))
    await app.put(app.segments, "vip/all.csv", segment(rows))
    await run(app)
    changed, removed = range(0, rows, 100), range(50, rows, 100)  # 1% each
    refreshed = segment(rows, changed=changed, removed=removed, added=1_000)
    await app.put(app.segments, "vip/all.csv", refreshed)
    received = app.sim.simulator.stats.profiles_received
    delta = (await run(app))["report"]
    c = delta["counts"]
    assert (c["sent"], c["unchanged"], c["removed"]) == (2_000, rows - 2_000, 0)
    assert (delta["sync"]["new"], delta["sync"]["changed"], delta["sync"]["leavers"]) == (1_000, 1_000, 1_000)
    assert app.sim.simulator.stats.profiles_received - received == 2_000  # exactly the changed and added rows
    account = app.sim.simulator.account
    members = {e.lower() for e in account.member_emails(LIST_ID)}
    assert members == emails_in(segment(rows)) | emails_in(refreshed)  # add mode keeps the leavers
    renamed = account.attributes(*account.profile_ids_by_email(["ada.lovelace.0@example.com"]))
    assert renamed["first_name"] == "Renamed"

    await app.set_config(sync_config("mirror"))
    mirror = (await run(app))["report"]
    assert mirror["status"] == "succeeded", mirror
    assert (mirror["counts"]["sent"], mirror["counts"]["removed"], mirror["counts"]["remove_failed"]) == (0, 1_000, 0)
    assert {e.lower() for e in account.member_emails(LIST_ID)} == emails_in(refreshed)  # the list mirrors the segment
    assert account.profile_count() >= rows + 1_000  # removal takes members off the list, never deletes profiles
    again = (await run(app))["report"]
    assert (again["counts"]["sent"], again["counts"]["removed"], again["sync"]["leavers"]) == (0, 0, 0)


@pytest.mark.parametrize(("kept", "reason"), [
    (100, "mirror mode would remove 900 of the list's 1,000 members (90%), more than max_remove_fraction 0.5 allows"),
    (0, "the segment is empty, so mirror mode would remove all 1,000 members of the list"),
])
async def test_the_guard_stops_a_mirror_run_that_would_empty_much_of_the_list(app, kept, reason) -> None:
    await app.set_config(sync_config("mirror"))
    await app.put(app.segments, "vip/all.csv", segment(1_000))
    await run(app)
    await app.put(app.segments, "vip/all.csv", segment(kept))  # lost 90% of its rows, or every row
    stopped = await run(app)
    report = stopped["report"]
    assert stopped["status"] == report["status"] == "partial"
    assert report["counts"]["removed"] == 0 and report["sync"]["guard"].startswith(reason)
    assert "--allow-mass-removal" in report["sync"]["guard"] and reason in report["hints"][0]
    assert len(app.sim.simulator.account.member_emails(LIST_ID)) == 1_000
    allowed = (await run(app, {"allowMassRemoval": True}))["report"]
    assert allowed["counts"]["removed"] == 1_000 - kept and allowed["status"] == "succeeded"
    assert len(app.sim.simulator.account.member_emails(LIST_ID)) == kept


async def test_a_dry_run_previews_and_changes_nothing(app) -> None:
    await app.set_config(sync_config("mirror"))
    await app.put(app.segments, "vip/all.csv", segment(2_000))
    await run(app)
    store, before = await stored_snapshot(app)
    refreshed = segment(2_000, changed=range(0, 2_000, 100), removed=range(1, 2_000, 100), added=30)
    await app.put(app.segments, "vip/all.csv", refreshed)
    received = app.sim.simulator.stats.profiles_received
    preview = (await run(app, {"dryRun": True}))["report"]
    assert preview["dry_run"] is True
    sync = preview["sync"]
    assert (sync["new"], sync["changed"], sync["unchanged"], sync["would_remove"], sync["guard"]) == (
        30, 20, 2_000 - 40, 20, None)
    assert app.sim.simulator.stats.profiles_received == received and app.sim.simulator.stats.jobs_received == 1
    assert len(app.sim.simulator.account.member_emails(LIST_ID)) == 2_000
    _, after = await stored_snapshot(app)
    assert after is not None and before is not None and every_key(after) == every_key(before) and after.fps == before.fps
    blob = app.runtime.service().store.container.get_blob_client(preview["sync"]["preview"].split(f"/{app.reports}/")[1])
    rows = list(csv.reader((await (await blob.download_blob()).readall()).decode().splitlines()))
    assert rows[0] == ["would", "line", "email", "note"]
    kinds = {kind for kind, _, _, _ in rows[1:]}
    assert kinds == {"add", "update", "remove"} and all("@" in email for _, _, email, _ in rows[1:])
    lines = refreshed.decode().splitlines()
    numbered = [int(line) for kind, line, _, _ in rows[1:] if kind != "remove"]
    assert numbered == sorted(numbered)  # in line order, adds and updates together
    for kind, line, email, _ in rows[1:]:
        if kind != "remove":
            assert lines[int(line) - 1].split(",")[0].lower() == email


async def test_a_mapping_change_or_a_full_request_resends_everything(app) -> None:
    await app.put(app.segments, "vip/all.csv", segment(3_000))
    await run(app)
    full = (await run(app, {"full": True}))["report"]
    assert full["counts"]["sent"] == 3_000 and full["sync"]["full_reason"] == "a full run was asked for"
    remapped = config()
    remapped["exports"][0]["mapping"]["last_name"] = "last_name"
    await app.set_config(remapped)
    after = (await run(app))["report"]
    assert after["counts"]["sent"] == 3_000 and after["sync"]["full_reason"] == "the mapping changed since the snapshot"
    assert (await run(app))["report"]["counts"]["unchanged"] == 3_000
    moved = config()
    moved["exports"][0].update({"list_id": SECOND_LIST, "mapping": remapped["exports"][0]["mapping"]})
    await app.set_config(moved)
    other = (await run(app))["report"]
    assert other["counts"]["sent"] == 3_000 and other["sync"]["full_reason"].startswith("the snapshot is of list")
    assert len(app.sim.simulator.account.member_emails(SECOND_LIST)) == 3_000


async def test_full_every_n_runs_resends_everything(app) -> None:
    await app.set_config(sync_config(full_every=2))
    await app.put(app.segments, "vip/all.csv", segment(500))
    sent = [(await run(app))["report"]["counts"]["sent"] for _ in range(4)]
    assert sent == [500, 0, 500, 0]


async def test_a_continuation_across_legs_gives_the_same_result_as_one_leg(azurite, simulator, monkeypatch) -> None:
    """The same two runs (a full one, then a mirror refresh) in one leg each and in many."""
    results = []
    for budget, list_id in ((1500, LIST_ID), (0, SECOND_LIST)):
        if not budget:  # Klaviyo still busy at the first poll: the refresh's one job hands over too
            monkeypatch.setattr(simulator.simulator.account, "job_delay", 1.0)
        app = App(azurite, simulator, budget=budget, monkeypatch=monkeypatch)
        document = sync_config("mirror")
        document["exports"][0]["list_id"] = list_id
        document["exports"][1]["list_id"] = "Lst004"  # a mirrored list has one export only
        await app.set_config(document)
        await app.put(app.segments, "vip/all.csv", segment(34_000, bad_every=1_000))
        first = await run(app)
        await app.put(app.segments, "vip/all.csv", segment(34_000, changed=range(0, 34_000, 50),
                                                            removed=range(7, 34_000, 100), added=500, bad_every=1_000))
        second = await run(app)
        _, snapshot = await stored_snapshot(app)
        await app.runtime.aclose()
        results.append((first, second, snapshot, sorted(simulator.simulator.account.member_emails(list_id))))
    (one_a, one_b, one_snapshot, one_members), (many_a, many_b, many_snapshot, many_members) = results
    assert one_a["legs"] == 1 and many_a["legs"] > 1 and many_b["legs"] > 1
    for single, legs in ((one_a, many_a), (one_b, many_b)):
        assert single["report"]["counts"] == legs["report"]["counts"]
        timing = ("snapshot", "removal_seconds")
        assert {k: v for k, v in single["report"]["sync"].items() if k not in timing} == \
               {k: v for k, v in legs["report"]["sync"].items() if k not in timing}
    assert one_members == many_members
    assert every_key(one_snapshot) == every_key(many_snapshot) and one_snapshot.fps == many_snapshot.fps


# ---- the pipeline and the CLI with a local snapshot --------------------------------------


def plan(source: str, state: Path, mode: str = "add", **sync: object) -> ExportPlan:
    return ExportPlan("t", source, LIST_ID, FieldMapping("email", {"first_name": "first_name"}),
                      sync=SyncPlan(LocalSnapshotStore(state), mode, **sync))  # type: ignore[arg-type]


async def test_a_failed_run_leaves_the_snapshot_where_klaviyo_is_and_the_next_run_converges(
        start_simulator, tmp_path) -> None:
    sim = await start_simulator(job_delay=0.05)
    state = tmp_path / "state"
    source = tmp_path / "segment.csv"
    source.write_bytes(segment(30_000, bad_every=997))  # some rows Klaviyo refuses (.invalid addresses)
    async with client_for(sim) as klaviyo:
        first = await run_export(plan(str(source), state), klaviyo, RejectsFile(tmp_path / "r1.csv"))
    assert first.status == "partial" and first.counts.klaviyo_errors > 0
    snapshot = await load_snapshot(LocalSnapshotStore(state))
    assert snapshot is not None
    emails = await copy_emails(LocalSnapshotStore(state), snapshot, tmp_path / "emails.txt")
    stored = set(emails.read_text().split())
    assert stored == {e.lower() for e in sim.simulator.account.member_emails(LIST_ID)}  # refused rows are not in it
    assert snapshot.header.keys == "xxh3"
    keys = KEYINGS[snapshot.header.keys].email_keys([email.encode() for email in sorted(stored)])
    assert all(snapshot.find(key) >= 0 for key in keys)
    before = (state / "snapshot.bin").read_bytes()

    source.write_bytes(segment(30_000, changed=range(0, 30_000, 10), bad_every=997))
    sim.simulator.account.job_delay = 30.0  # Klaviyo stops finishing jobs: the run times out midway
    async with client_for(sim) as klaviyo:
        failed = await run_export(plan(str(source), state), klaviyo, RejectsFile(tmp_path / "r2.csv"),
                                  options=PipelineOptions(job_timeout=0.5, poll_interval=0.05))
    assert failed.status == "failed" and (state / "snapshot.bin").read_bytes() == before

    sim.simulator.account.job_delay = 0.05
    async with client_for(sim) as klaviyo:
        converged = await run_export(plan(str(source), state), klaviyo, RejectsFile(tmp_path / "r3.csv"))
    assert converged.status == "partial"  # the refused rows are refused again: they are retried every run
    assert converged.counts.sent == 3_000 - sum(1 for i in range(0, 30_000, 10) if i % 997 == 996)
    again = await run_export(plan(str(source), state), None, RejectsFile(tmp_path / "r4.csv"))
    assert again.counts.sent == first.counts.klaviyo_errors  # only what Klaviyo refused would be sent again


async def test_a_damaged_snapshot_fails_clearly(tmp_path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "snapshot.bin").write_bytes(b"KLAVIYO-EXPORTER-SNAPSHOT 2\n{\"list_id\": \"L\"}\n")
    source = tmp_path / "s.csv"
    source.write_bytes(segment(10))
    report = await run_export(plan(str(source), state), None, RejectsFile(tmp_path / "r.csv"))
    assert report.status == "failed"
    assert report.error == (f"the snapshot {state / 'snapshot.bin'} is damaged or not a snapshot; delete it to start "
                            "over (the next run is then a full one, and mirror mode cannot remove members of the lost "
                            "snapshot)")


@pytest.mark.parametrize("engine", ["columnar", "row"])
async def test_a_snapshot_of_an_earlier_version_keeps_its_blake2b_keys(simulator, tmp_path, monkeypatch,
                                                                      engine: str) -> None:
    """Snapshots written before xxHash have no ``keys`` in their header and BLAKE2b keys: a
    run over one keys its rows the same way (or nothing would match), and stays on it."""
    state, source = tmp_path / "state", tmp_path / "segment.csv"
    source.write_bytes(segment(5_000))
    export = dataclasses.replace(plan(str(source), state), engine=engine)
    with monkeypatch.context() as patched:
        patched.setattr("exporter.sync.delta.NEW_SNAPSHOTS", KEYINGS["blake2b"])
        async with client_for(simulator) as klaviyo:
            await run_export(export, klaviyo, RejectsFile(tmp_path / "r1.csv"))
    stored = (state / "snapshot.bin").read_bytes()
    _, header, _, rest = stored.split(b"\n", 3)
    document = orjson.loads(header)
    assert document.pop("keys") == "blake2b" and document.pop("sections")
    (state / "snapshot.bin").write_bytes(MAGIC_V2 + orjson.dumps(document) + b"\n" + rest)  # as version 2 wrote it

    source.write_bytes(segment(5_000, changed=range(0, 5_000, 100)))
    async with client_for(simulator) as klaviyo:
        report = await run_export(export, klaviyo, RejectsFile(tmp_path / "r2.csv"))
    assert (report.counts.sent, report.counts.unchanged) == (50, 4_950)
    snapshot = await load_snapshot(LocalSnapshotStore(state))
    assert snapshot is not None and snapshot.header.keys == "blake2b" and snapshot.members == 5_000


async def test_a_snapshot_naming_an_unknown_hash_is_refused(tmp_path) -> None:
    state, source = tmp_path / "state", tmp_path / "s.csv"
    state.mkdir()
    header = {"list_id": LIST_ID, "mapping": "m", "members": 0, "keys": "md5"}
    (state / "snapshot.bin").write_bytes(b"KLAVIYO-EXPORTER-SNAPSHOT 2\n" + orjson.dumps(header) + b"\n")
    source.write_bytes(segment(10))
    report = await run_export(plan(str(source), state), None, RejectsFile(tmp_path / "r.csv"))
    assert report.status == "failed" and "is damaged or not a snapshot" in (report.error or "")


async def test_the_cli_runs_delta_and_mirror_with_a_local_snapshot(simulator, tmp_path) -> None:
    from tests.test_cli import cli

    source = tmp_path / "s.csv"
    source.write_bytes(segment(1_000))
    args = ("export", "--source", str(source), "--list-id", LIST_ID, "--email-column", "email",
            "--map", "first_name=first_name", "--klaviyo-url", simulator.url, "--state", str(tmp_path / "state"))
    env = {"KLAVIYO_API_KEY": API_KEY}
    dry = await asyncio.to_thread(cli, *args, "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert not (tmp_path / "state" / "snapshot.bin").exists()  # a dry run keeps no snapshot
    first = await asyncio.to_thread(cli, *args, env=env)
    assert orjson.loads(first.stdout)["counts"]["sent"] == 1_000
    refreshed = segment(1_000, changed=range(0, 1_000, 100), removed=range(1, 1_000, 100))
    source.write_bytes(refreshed)
    preview = await asyncio.to_thread(cli, *args, "--mode", "mirror", "--dry-run", "--report",
                                      str(tmp_path / "out" / "report.json"), env=env)
    assert preview.returncode == 0, preview.stderr
    assert ", 980 unchanged, would remove 10; preview in " in preview.stderr
    assert sum(1 for line in (tmp_path / "out").glob("preview-*.csv").__next__().read_text().splitlines()
               if line.startswith("remove,")) == 10
    mirror = await asyncio.to_thread(cli, *args, "--mode", "mirror", env=env)
    assert mirror.returncode == 0, mirror.stderr
    counts = orjson.loads(mirror.stdout)["counts"]
    assert (counts["sent"], counts["unchanged"], counts["removed"]) == (10, 980, 10)
    assert "succeeded: 990 rows read, 10 sent, 0 rejected, 0 duplicates, 1 Klaviyo job, 980 unchanged, 10 removed" \
        in mirror.stderr
    assert {e.lower() for e in simulator.simulator.account.member_emails(LIST_ID)} == emails_in(refreshed)


async def test_a_mirror_export_of_a_folder_never_reads_one_named_file(app) -> None:
    await app.set_config(sync_config("mirror"))
    await app.put(app.segments, "vip/2026/11/25/part-1.csv", segment(10))
    response = await call(function_app.start_run, post("vip", body=b'{"source": "vip/2026/11/25/part-1.csv"}'))
    assert response.status_code == 400
    assert "mirrors its folder's newest run" in orjson.loads(response.get_body())["error"]


async def test_a_failed_removal_batch_is_counted_and_kept_for_the_next_run() -> None:
    """Klaviyo refuses the first DELETE batch and takes the second: only the second's leavers
    are reported removed (the others stay in the snapshot, to be tried again)."""
    from exporter.klaviyo.auth import StaticApiKey
    from exporter.klaviyo.client import KlaviyoClient
    from exporter.sync.mirror import remove_leavers
    from tests.hostile_klaviyo import HostileKlaviyo
    from tests.test_klaviyo_answers import FAST_RETRY

    server = await HostileKlaviyo().start()
    try:
        def profiles(request):
            emails = request.query["filter"].split("[", 1)[1].rstrip("])").replace('"', "").split(",")
            return 200, {"data": [{"type": "profile", "id": f"id-{e}", "attributes": {"email": e}} for e in emails],
                         "links": {"next": None}}

        server.script("GET", f"/api/lists/{LIST_ID}/profiles", profiles)
        server.script("DELETE", f"/api/lists/{LIST_ID}/relationships/profiles",
                      lambda request: (400, {"errors": [{"status": 400, "detail": "refused"}]}),
                      lambda request: (204, b""))
        leavers = {position: f"leaver{position}@example.com" for position in range(0, 3_000, 2)}  # 1,500: 2 batches
        async with KlaviyoClient(StaticApiKey(API_KEY), server.url, retry=FAST_RETRY, rate_limits=None) as klaviyo:
            removal = await remove_leavers(klaviyo, LIST_ID, leavers)
    finally:
        await server.stop()
    assert (removal.removed, removal.failed, removal.pending) == (500, 1_000, 1_000)
    assert removal.gone == set(range(2_000, 3_000, 2))


async def test_the_cli_keeps_its_snapshot_under_the_current_directory_by_default(simulator, tmp_path) -> None:
    from tests.test_cli import cli

    source = tmp_path / "s.csv"
    source.write_bytes(segment(300))
    args = ("export", "--source", str(source), "--list-id", LIST_ID, "--email-column", "email",
            "--klaviyo-url", simulator.url)
    env = {"KLAVIYO_API_KEY": API_KEY}
    first = await asyncio.to_thread(cli, *args, env=env, cwd=tmp_path)
    second = await asyncio.to_thread(cli, *args, env=env, cwd=tmp_path)
    assert orjson.loads(first.stdout)["counts"]["sent"] == 300
    assert orjson.loads(second.stdout)["counts"]["unchanged"] == 300
    assert (tmp_path / ".exporter-state" / LIST_ID / "snapshot.bin").is_file()


def test_sorted_runs_merge_into_one_ascending_sequence_of_every_member() -> None:
    """The block merge that writes a snapshot's new members: runs of every size, blocks of
    every size, keys from both ends of the range; nothing lost, nothing repeated, in order."""
    import random
    from array import array

    from exporter.sync.delta import _merged

    rng = random.Random(8)
    for _ in range(30):
        runs, expected = [], []
        for _ in range(rng.randint(1, 12)):
            keys = sorted({rng.randint(-2**63, 2**63 - 1) for _ in range(rng.randint(1, 300))})
            expected += keys
            block = rng.randint(1, 50)
            runs.append(iter([(array("q", keys[i:i + block]), array("I", [k & 0xFFFF for k in keys[i:i + block]]),
                               array("I", [k & 0xFFFFF for k in keys[i:i + block]]),
                               [b"%d\n" % k for k in keys[i:i + block]]) for i in range(0, len(keys), block)]))
        merged = [member for block in _merged(runs) for member in zip(*block, strict=True)]
        assert [k for k, *_ in merged] == sorted(expected)
        assert all(f == k & 0xFFFF and line == k & 0xFFFFF and e == b"%d\n" % k for k, f, line, e in merged)


def test_xxh3_keys_are_the_signed_canonical_digest_and_never_zero(monkeypatch) -> None:
    import xxhash

    keying = KEYINGS["xxh3"]
    emails = [f"user{i}@example.com".encode() for i in range(2_000)] + [b"", "ren\u00e9@x.com".encode()]
    keys = keying.email_keys(emails)
    assert list(keys) == [int.from_bytes(xxhash.xxh3_64_digest(e), "big", signed=True) if e else 0 for e in emails]
    assert any(key < 0 for key in keys) and any(key > 0 for key in keys)
    texts = [b"a\x1fb", b"", b"c"]
    assert list(keying.fingerprints(texts)) == [xxhash.xxh32_intdigest(t) for t in texts]
    monkeypatch.setattr(xxhash, "xxh3_64_intdigest", lambda data: 0)  # a digest of 0 would mark an empty slot
    monkeypatch.setattr(xxhash, "xxh32_intdigest", lambda data: 0)  # and a fingerprint of 0 means "resend"
    assert list(keying.email_keys([b"a@x.com", b""])) == [1, 0] and list(keying.fingerprints([b"x"])) == [1]


@pytest.mark.parametrize("fan_in", [320, 3])
def test_merging_the_new_members_early_changes_nothing_the_snapshot_gets(tmp_path: Path, monkeypatch,
                                                                         fan_in: int) -> None:
    """A sending run merges the spool's sorted runs into one once every job is sent; the write
    at the end then leaves out the lines Klaviyo refused. Same members, same order, same
    fingerprints and emails as merging at the write, with or without refused lines, in one
    pass or (more runs than ``FAN_IN``) in groups first."""
    import random
    from array import array

    from exporter.sync import delta
    from exporter.sync.delta import _Spool

    monkeypatch.setattr(_Spool, "RUN", 40)
    monkeypatch.setattr(delta, "FAN_IN", fan_in)

    def members(folder: Path, merge_early: bool, refused: set[int]) -> list[tuple[object, ...]]:
        rng, line = random.Random(5), 1
        folder.mkdir()
        spool = _Spool(folder)
        for _ in range(30):
            size = rng.randint(1, 25)
            keys = array("q", (rng.randint(-2**63, 2**63 - 1) for _ in range(size)))
            fps, lines = array("I", (rng.getrandbits(32) for _ in range(size))), array("I", range(line, line + size))
            spool.add(keys, fps, lines, [f"u{n}@example.com" for n in lines])
            line += size
        if merge_early:
            spool.merge_runs()
            assert len(spool._runs) == 1
        got = [member for block in spool.sorted_members(refused) for member in zip(*block, strict=True)]
        spool.close()
        return got

    for case, refused in enumerate((set(), set(range(3, 400, 7)))):
        early = members(tmp_path / f"early{case}", True, refused)
        late = members(tmp_path / f"late{case}", False, refused)
        assert early == late and len(early) > 300
        assert [key for key, *_ in early] == sorted(key for key, *_ in early)
        assert not any(email.decode().strip() in {f"u{n}@example.com" for n in refused} for *_, email in early)


async def test_a_sending_run_merges_new_members_before_the_write_and_keeps_refused_rows_out(
        start_simulator, tmp_path, monkeypatch) -> None:
    """Through the pipeline: the merge runs once every job is sent (before the write), and the
    snapshot still holds exactly what Klaviyo imported, not the rows it refused."""
    from exporter.sync.delta import Delta, _Spool

    monkeypatch.setattr(_Spool, "RUN", 4_000)  # several sorted runs in 30,000 rows
    calls: list[str] = []
    for name in ("merge_new_members", "write"):
        original = getattr(Delta, name)
        monkeypatch.setattr(Delta, name, lambda self, *a, _o=original, _n=name: (calls.append(_n), _o(self, *a))[1])
    sim = await start_simulator(job_delay=0.05)
    state, source = tmp_path / "state", tmp_path / "segment.csv"
    source.write_bytes(segment(30_000, bad_every=997))
    async with client_for(sim) as klaviyo:
        report = await run_export(plan(str(source), state), klaviyo, RejectsFile(tmp_path / "r.csv"))
    assert report.counts.klaviyo_errors > 0 and calls == ["merge_new_members", "write"]
    snapshot = await load_snapshot(LocalSnapshotStore(state))
    assert snapshot is not None and snapshot.header.members == len(sim.simulator.account.member_emails(LIST_ID))
    emails = await copy_emails(LocalSnapshotStore(state), snapshot, tmp_path / "emails.txt")
    assert set(emails.read_text().split()) == {e.lower() for e in sim.simulator.account.member_emails(LIST_ID)}
