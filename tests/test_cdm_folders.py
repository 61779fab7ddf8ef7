"""CDM export folders and folders of part files: the newest run, read as one segment, and
nothing outside the folder, whatever the manifest says."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import orjson
import pytest

import function_app
from devtools.sample import cdm_export_folder
from exporter.errors import SourceError
from exporter.mapping import FieldMapping
from exporter.pipeline import ExportPlan, run_export
from exporter.rejects import RejectsFile
from exporter.sources.folders import LocalFolder
from exporter.sources.parts import resolve_folder
from tests.app_harness import SECOND_LIST, call, config, status_of
from tests.conftest import LIST_ID

RUNS = [("2026/11/24/0600", 0, 90), ("2026/11/25/0600", 1_000, 120)]  # the second is newer
ORIGIN = "https://contoso.dfs.core.windows.net/customerinsights/CustomerInsights_0a1b/VIPExport"


def write_folder(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():  # in order: the newer run is written last
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def emails_of(files: dict[str, bytes], run: str) -> list[str]:
    return [line.split(",")[0] for name, data in sorted(files.items()) if f"/{run}/" in name
            for line in data.decode().splitlines()]


def model(files: dict[str, bytes]) -> dict:
    return orjson.loads(files["model.json"])


async def dry_run(source, tmp_path: Path, entity: str | None = None):
    folder = await resolve_folder(LocalFolder(Path(source)), entity)
    rejects = RejectsFile(tmp_path / "rejects.csv")
    plan = ExportPlan("t", folder, "L1", FieldMapping("email", {"first_name": "first_name"}))
    return await run_export(plan, None, rejects), rejects


async def test_the_newest_run_of_a_cdm_folder_is_one_segment_of_its_headerless_parts(tmp_path) -> None:
    files = cdm_export_folder(RUNS, listed=2)  # the manifest lists both runs' partitions: the newest is read
    report, _ = await dry_run(write_folder(tmp_path / "export", files), tmp_path)
    assert report.status == "succeeded", report.error
    assert report.counts.rows_read == 120 and report.counts.sent == 120
    assert report.source.endswith("/VIP/2026/11/25/0600/ (3 part files)")


async def test_rejects_name_the_part_file_and_its_own_line(tmp_path) -> None:
    files = cdm_export_folder(RUNS, bad_every=7)
    report, rejects = await dry_run(write_folder(tmp_path / "export", files), tmp_path)
    assert report.counts.rejected + report.counts.duplicates > 0
    assert report.counts.rows_read == report.counts.sent + report.counts.rejected + report.counts.duplicates
    with rejects.path.open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["line", "column", "reason", "file"]
    assert {row["file"] for row in rows} <= {f"VIP/2026/11/25/0600/VIP_{n}.csv" for n in (1, 2, 3)}
    assert len({row["file"] for row in rows}) > 1
    for row in rows:  # the named line of the named file holds the row the reason is about
        email = files[row["file"]].decode().splitlines()[int(row["line"]) - 1].split(",")[0]
        if row["reason"] == "email is empty":
            assert email == ""
        elif row["reason"].startswith("duplicate of line "):
            line, _, other = row["reason"].removeprefix("duplicate of line ").partition(" of ")
            assert files[other].decode().splitlines()[int(line) - 1].split(",")[0] == email
        else:
            assert row["reason"] == "email is not a valid address" and "@" not in email


async def test_a_manifest_cdm_json_folder_reads_the_same(tmp_path) -> None:
    files = cdm_export_folder(RUNS)
    entity = model(files)["entities"][0]
    del files["model.json"]
    files["VIP.cdm.json"] = orjson.dumps({"definitions": [{"entityName": "VIP", "hasAttributes": [
        {"name": a["name"], "dataFormat": "String"} for a in entity["attributes"]]}]})
    files["manifest.cdm.json"] = orjson.dumps({"manifestName": "VIPExport", "entities": [{
        "type": "LocalEntity", "entityName": "VIP", "entityPath": "VIP.cdm.json/VIP",
        "dataPartitions": [{"location": "adls:/" + p["location"].split("/VIPExport/")[1], "exhibitsTraits": [
            {"traitReference": "is.partition.format.CSV",
             "arguments": [{"name": "columnHeaders", "value": "false"}, {"name": "delimiter", "value": ","}]}]}
            for p in entity["partitions"]]}]})
    report, _ = await dry_run(write_folder(tmp_path / "export", files), tmp_path)
    assert report.status == "succeeded", report.error
    assert report.counts.sent == 120


def _relocate(files: dict[str, bytes], location: str, index: int = 1) -> dict[str, bytes]:
    document = model(files)
    document["entities"][0]["partitions"][index]["location"] = location
    return {**files, "model.json": orjson.dumps(document)}


@pytest.mark.parametrize(("location", "problem"), [
    ("https://evil.blob.core.windows.net/other/x.csv", "partition 2 of entity 'VIP' (x.csv) is not in"),
    (f"{ORIGIN}/VIP/2026/11/25/0600/VIP_9.csv", "partition 2 of entity 'VIP' (VIP_9.csv) is not in"),
    (f"{ORIGIN}/../Secrets/VIP/2026/11/25/0600/VIP_2.csv", "not a plain path"),
    (f"{ORIGIN}/VIP%2f..%2f..%2fSecrets/VIP_2.csv", "not a plain path"),
    (f"{ORIGIN}/VIP/2026/11/25/0600/VIP_2.csv\x00", "not a plain path"),
    (42, "a partition has no 'location'"),
])
async def test_a_partition_outside_the_folder_or_missing_fails_before_anything_is_read(tmp_path, location, problem) -> None:
    root = write_folder(tmp_path / "export", _relocate(cdm_export_folder(RUNS), location))
    # a file of that name beside the folder (another export's) must not be found through it
    write_folder(tmp_path / "Secrets", {"VIP/2026/11/25/0600/VIP_9.csv": b"stolen@example.com,,,,,\n",
                                        "VIP/2026/11/25/0600/VIP_2.csv": b"stolen@example.com,,,,,\n"})
    with pytest.raises(SourceError) as caught:
        await resolve_folder(LocalFolder(root))
    assert problem in str(caught.value) and str(caught.value).startswith("model.json")
    assert "stolen" not in str(caught.value)


@pytest.mark.parametrize(("mutate", "problem"), [
    (lambda d: b"{not json", "model.json is not valid JSON"),
    (lambda d: orjson.dumps({"entities": []}), "model.json lists no entities"),
    (lambda d: orjson.dumps({"entities": {"VIP": 1}}), "model.json 'entities' must be a list of objects"),
    (lambda d: orjson.dumps({"entities": [*d["entities"], {**d["entities"][0], "name": "Lapsed"}]}),
     "model.json holds 2 entities ('VIP', 'Lapsed'); name one with --entity"),
    (lambda d: orjson.dumps({"entities": [{**d["entities"][0], "attributes": [{"name": ""}]}]}),
     "model.json: entity 'VIP' must list its attributes, each with a non-empty 'name'"),
    (lambda d: orjson.dumps({"entities": [{**d["entities"][0], "partitions": []}]}),
     "model.json: entity 'VIP' lists no partitions"),
    (lambda d: b" " * (17 * 1024 * 1024), "model.json is larger than 16 MiB"),
])
async def test_a_bad_manifest_gets_a_clear_error_naming_the_file(tmp_path, mutate, problem) -> None:
    files = cdm_export_folder(RUNS)
    files["model.json"] = mutate(model(files))
    with pytest.raises(SourceError, match="^" + problem.replace("(", r"\(").replace(")", r"\)")):
        await resolve_folder(LocalFolder(write_folder(tmp_path / "export", files)))


async def test_an_entity_is_picked_by_name_and_an_unknown_one_is_named(tmp_path) -> None:
    files = cdm_export_folder(RUNS)
    document = model(files)
    document["entities"].insert(0, {**document["entities"][0], "name": "Lapsed", "partitions": []})
    files["model.json"] = orjson.dumps(document)
    root = write_folder(tmp_path / "export", files)
    report, _ = await dry_run(root, tmp_path, entity="VIP")
    assert report.counts.sent == 120
    with pytest.raises(SourceError, match="model.json has no entity 'Gold'; entities: 'Lapsed', 'VIP'"):
        await resolve_folder(LocalFolder(root), "Gold")


async def test_a_plain_folder_of_runs_reads_every_part_of_the_newest_run(tmp_path) -> None:
    files = {name: data for name, data in cdm_export_folder(RUNS).items() if name != "model.json"}
    header = b"email,first_name,last_name,phone,city,tier\n"
    files = {name: header + data for name, data in files.items()}
    files["VIP/2026/11/25/0600/_SUCCESS"] = b""
    report, _ = await dry_run(write_folder(tmp_path / "export", files), tmp_path)
    assert report.counts.rows_read == 120 and report.counts.sent == 120
    files["VIP/2026/11/25/0600/VIP_3.csv"] = b"mail,first\n" + files["VIP/2026/11/25/0600/VIP_3.csv"][len(header):]
    report, _ = await dry_run(write_folder(tmp_path / "other", files), tmp_path)
    assert report.status == "failed"
    assert report.error == ("part file VIP/2026/11/25/0600/VIP_3.csv has other columns than "
                            "VIP/2026/11/25/0600/VIP_1.csv; the parts of one run must share their columns")


def test_the_cli_reads_a_cdm_folder(tmp_path) -> None:
    from tests.test_export_end_to_end import run_cli

    root = write_folder(tmp_path / "export", cdm_export_folder(RUNS))
    result = run_cli("export", "--source", str(root / "model.json"), "--list-id", "L1", "--email-column", "email",
                     "--dry-run", "--rejects", str(tmp_path / "r.csv"))
    assert result.returncode == 0, result.stderr
    assert orjson.loads(result.stdout)["counts"]["sent"] == 120
    wrong = run_cli("export", "--source", str(root), "--entity", "Gold", "--list-id", "L1", "--email-column", "email",
                    "--dry-run")
    assert wrong.returncode == 2 and "model.json has no entity 'Gold'; entities: 'VIP'" in wrong.stderr


# ---- through the function app: Azurite, blob events, the simulator -------------------------


def cdm_config(**export: object) -> dict:
    document = config()
    document["exports"].append({"name": "cdp", "connection": "local", "source": "CustomerInsights_0a1b/VIPExport/",
                                "list_id": LIST_ID, "mapping": {"email": "email", "first_name": "first_name"},
                                **export})
    return document


async def put_folder(app, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        await app.put(app.segments, "CustomerInsights_0a1b/VIPExport/" + name, data)


async def drop(app, name: str) -> None:
    await call(function_app.segment_dropped, app.blob_client("CustomerInsights_0a1b/VIPExport/" + name))


async def runs_of(app, export: str) -> list[dict]:
    store = app.runtime.service().store
    found = []
    async for blob in store.container.list_blobs(name_starts_with=f"{export}/"):
        if blob.name.endswith("/state.json"):
            found.append(await status_of(export, blob.name.split("/")[1]))
    return found


async def test_every_blob_event_of_a_cdm_run_in_any_order_exports_the_newest_run_once(app) -> None:
    await app.set_config(cdm_config())
    files = cdm_export_folder(RUNS)
    await put_folder(app, files)
    events = [name for name in files if "/2026/11/25/" in name or name == "model.json"]
    events += ["VIP/2026/11/24/0600/VIP_2.csv"]  # an older run's part, delivered late
    events = events * 2  # every event delivered twice
    random.Random(4).shuffle(events)
    for name in events:
        await drop(app, name)
        await app.deliver()
    runs = await runs_of(app, "cdp")
    exported = [run for run in runs if run["status"] != "skipped"]
    assert [run["status"] for run in exported] == ["succeeded"]
    report = exported[0]["report"]
    assert report["counts"]["sent"] == 120 and report["counts"]["rows_read"] == 120
    assert app.sim.simulator.stats.profiles_received == 120  # each member sent once
    assert sorted(app.sim.simulator.account.member_emails(LIST_ID)) == sorted(emails_of(files, "2026/11/25/0600"))
    assert len(runs) == len(events)  # every other event ended as a skipped run that says why
    reasons = {run["error"].split(" ", 2)[2] if run["error"].startswith("run ") else run["error"].split(" is ")[1]
               for run in runs if run["status"] == "skipped"}
    assert reasons <= {f"already exported this version of the source ({report['source']})",
                       f"not a file of the source's newest run ({report['source']}); "
                       "a CDM run starts when its manifest lists it"}


async def test_parts_of_a_run_the_manifest_does_not_list_yet_start_nothing(app) -> None:
    await app.set_config(cdm_config())
    files = cdm_export_folder(RUNS[:1])
    await put_folder(app, files)
    await drop(app, "model.json")
    await app.deliver()
    newer = cdm_export_folder(RUNS)
    await put_folder(app, {n: d for n, d in newer.items() if "/2026/11/25/" in n})  # parts first, manifest later
    for name in newer:
        if "/2026/11/25/" in name:
            await drop(app, name)
    await app.deliver()
    assert sorted(app.sim.simulator.account.member_emails(LIST_ID)) == sorted(emails_of(files, "2026/11/24/0600"))
    await put_folder(app, {"model.json": newer["model.json"]})
    await drop(app, "model.json")
    await app.deliver()
    members = app.sim.simulator.account.member_emails(LIST_ID)
    assert set(members) == set(emails_of(files, "2026/11/24/0600")) | set(emails_of(newer, "2026/11/25/0600"))
    assert [run["status"] for run in await runs_of(app, "cdp")].count("succeeded") == 2


async def test_a_manifest_naming_a_missing_partition_fails_the_run_before_anything_is_sent(app) -> None:
    await app.set_config(cdm_config())
    files = cdm_export_folder(RUNS)
    del files["VIP/2026/11/25/0600/VIP_2.csv"]
    await put_folder(app, files)
    await drop(app, "model.json")
    await app.deliver()
    [run] = await runs_of(app, "cdp")
    assert run["status"] == "failed"
    assert run["error"] == (f"model.json: partition 2 of entity 'VIP' (VIP_2.csv) is not in "
                            f"{app.azurite.blob_url(app.segments, 'CustomerInsights_0a1b/VIPExport/')}: "
                            "no file below that folder matches its location")
    assert app.sim.simulator.stats.jobs_received == 0


async def test_a_plain_folder_run_waits_until_its_parts_stop_arriving(app) -> None:
    header = b"email,first_name,last_name,phone,city,tier\n"
    files = {n: header + d for n, d in cdm_export_folder(RUNS).items() if n != "model.json"}
    await app.set_config(cdm_config(settle_seconds=3600))
    await put_folder(app, files)
    await drop(app, "VIP/2026/11/25/0600/VIP_1.csv")
    await app.deliver()
    [run] = await runs_of(app, "cdp")
    assert run["status"] == "waiting" and app.sim.simulator.stats.jobs_received == 0
    await app.set_config(cdm_config(settle_seconds=0))
    await drop(app, "VIP/2026/11/25/0600/VIP_3.csv")
    await app.deliver()
    newest = [line.split(",")[0] for name, data in files.items() if "/2026/11/25/" in name
              for line in data.decode().splitlines()[1:]]
    assert sorted(app.sim.simulator.account.member_emails(LIST_ID)) == sorted(newest)


async def test_the_cli_reads_a_cdm_folder_from_its_blob_url(azurite, upload, tmp_path) -> None:
    import asyncio

    from tests.test_export_end_to_end import run_cli

    url = ""
    for name, data in cdm_export_folder(RUNS).items():
        url = await upload(f"CustomerInsights_0a1b/VIPExport/{name}", data)
    folder = url.rpartition("/model.json")[0] + "/"
    env = {"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string}
    for source in (folder, folder + "model.json"):
        result = await asyncio.to_thread(run_cli, "export", "--source", source, "--list-id", "L1", "--email-column",
                                         "email", "--dry-run", "--rejects", str(tmp_path / "r.csv"), env=env)
        assert result.returncode == 0, result.stderr
        report = orjson.loads(result.stdout)
        assert report["counts"]["sent"] == 120
        assert report["source"] == folder + "VIP/2026/11/25/0600/ (3 part files)"


async def test_a_part_replaced_between_legs_fails_the_run(azurite, simulator, monkeypatch) -> None:
    from tests.app_harness import App, post
    from tests.test_app_hardening import handle, receive

    app = App(azurite, simulator, budget=0, monkeypatch=monkeypatch)  # every leg hands over after one new job
    await app.set_config(cdm_config())
    files = cdm_export_folder([("2026/11/25/0600", 0, 25_000)])
    await put_folder(app, files)
    answer = orjson.loads((await call(function_app.start_run, post("cdp"))).get_body())
    await handle(app, await receive(app))  # the first leg: one job, then a hand-over
    assert (await status_of("cdp", answer["run_id"]))["status"] == "continuing"
    last = "VIP/2026/11/25/0600/VIP_3.csv"
    await put_folder(app, {last: files[last].replace(b"Ada", b"Eve")})  # the platform rewrites a part mid-run
    await app.deliver()
    state = await status_of("cdp", answer["run_id"])
    assert state["status"] == "failed" and "was replaced or changed after the run started" in state["report"]["error"]
    assert simulator.simulator.stats.jobs_received < 3
    await app.runtime.aclose()


@pytest.mark.parametrize("entity_path", ["../Secrets.cdm.json/VIP", "https://evil.example/x.cdm.json/VIP", "VIP"])
async def test_a_manifest_cdm_json_schema_outside_its_folder_is_refused(tmp_path, entity_path) -> None:
    files = cdm_export_folder(RUNS)
    del files["model.json"]
    files["manifest.cdm.json"] = orjson.dumps({"entities": [{"entityName": "VIP", "entityPath": entity_path,
                                                              "dataPartitions": []}]})
    write_folder(tmp_path / "Secrets.cdm.json", {"x": b""})
    with pytest.raises(SourceError, match="entityPath"):
        await resolve_folder(LocalFolder(write_folder(tmp_path / "export", files)))


async def test_one_cdm_folder_feeds_an_export_per_entity(app) -> None:
    """Three entities, three exports of the one folder: one manifest event (delivered twice)
    starts each export once, each into its list with exactly its entity's members."""
    runs = {"VIP": cdm_export_folder([("2026/11/25/0600", 0, 5)], entity="VIP"),
            "Lapsed": cdm_export_folder([("2026/11/25/0600", 100, 4)], entity="Lapsed"),
            "Trial": cdm_export_folder([("2026/11/25/0600", 200, 3)], entity="Trial")}
    manifest = {"name": "Export", "version": "1.0", "entities": []}
    files: dict[str, bytes] = {}
    for entity_files in runs.values():
        manifest["entities"] += orjson.loads(entity_files.pop("model.json"))["entities"]
        files.update(entity_files)
    files["model.json"] = orjson.dumps(manifest)
    lists = {"VIP": LIST_ID, "Lapsed": SECOND_LIST, "Trial": "Lst005"}
    app.sim.simulator.account.add_list("Lst005")
    document = config()
    document["exports"] = [{"name": f"cdp-{entity.lower()}", "connection": "local",
                            "source": "CustomerInsights_0a1b/VIPExport/", "entity": entity, "list_id": list_id,
                            "mapping": {"email": "email"}} for entity, list_id in lists.items()]
    await app.set_config(document)
    await put_folder(app, files)
    await drop(app, "model.json")
    await drop(app, "model.json")  # delivered twice
    await app.deliver()
    for entity, list_id in lists.items():
        statuses = sorted(r["status"] for r in await runs_of(app, f"cdp-{entity.lower()}"))
        # The second delivery waits its turn (then finds that run already exported and skips).
        assert statuses.count("succeeded") == 1 and set(statuses) <= {"succeeded", "waiting", "skipped"}
        expected = [line.split(",")[0] for name, data in runs[entity].items()
                    for line in data.decode().splitlines()]
        assert sorted(app.sim.simulator.account.member_emails(list_id)) == sorted(expected)


def test_two_exports_of_one_entity_or_one_plain_folder_are_still_refused() -> None:
    from exporter.config import ConfigProblems, parse_config

    def exports(*entities: str | None) -> dict:
        return {"connections": [{"name": "c", "env": "KLAVIYO_API_KEY"}],
                "exports": [{"name": f"e{i}", "connection": "c", "source": "cdp/", "list_id": f"L{i}",
                             "mapping": {"email": "email"}, **({"entity": e} if e else {})}
                            for i, e in enumerate(entities)]}

    assert len(parse_config(orjson.dumps(exports("VIP", "Lapsed")), "x").exports) == 2
    for entities in (("VIP", "VIP"), (None, None), ("VIP", None)):
        with pytest.raises(ConfigProblems, match="are both bound to"):
            parse_config(orjson.dumps(exports(*entities)), "x")
