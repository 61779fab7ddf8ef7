"""The second newcomer pass: what a person trips on from a fresh clone, tried through the
real command in a subprocess (and the app's functions where it applies)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from devtools.sample import cdm_export_folder
from tests.conftest import API_KEY, LIST_ID
from tests.hostile_klaviyo import HostileKlaviyo, job_resource
from tests.test_cli import acli, cli, one_line_error

SEGMENT = "email,first_name\nann@example.com,Ann\nbob@example.com,Bob\n"


@pytest.fixture
def segment(tmp_path: Path) -> Path:
    path = tmp_path / "s.csv"
    path.write_text(SEGMENT)
    return path


def export(segment: Path, *extra: str) -> list[str]:
    return ["export", "--source", str(segment), "--list-id", LIST_ID, "--email-column", "email", *extra]


# ---- errors that name the cause ----------------------------------------------------------

def test_a_klaviyo_url_with_a_path_is_refused_with_the_reason(segment: Path) -> None:
    result = cli(*export(segment, "--klaviyo-url", "http://127.0.0.1:8765/api"))
    assert result.returncode == 2
    assert "must be the API's base" in one_line_error(result) and "/api/... itself" in result.stderr


def test_a_state_that_names_a_file_is_refused_with_the_reason(segment: Path, tmp_path: Path) -> None:
    (tmp_path / "somefile").write_text("x")
    for state, words in ((tmp_path / "somefile", "is a file"), (tmp_path / "somefile" / "deeper", "goes through")):
        result = cli(*export(segment, "--state", str(state), "--dry-run"))
        assert result.returncode == 2 and words in one_line_error(result)


def test_problems_found_before_reading_exit_2(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    two = tmp_path / "two"
    files = cdm_export_folder([("2026/11/25/0600", 0, 5)])
    document = orjson.loads(files["model.json"])
    document["entities"].append(dict(document["entities"][0], name="Lapsed"))
    files["model.json"] = orjson.dumps(document)
    for name, data in files.items():
        (two / name).parent.mkdir(parents=True, exist_ok=True)
        (two / name).write_bytes(data)
    for folder in (empty, two):
        result = cli("export", "--source", str(folder), "--list-id", LIST_ID, "--email-column", "email", "--dry-run")
        assert result.returncode == 2, result.stderr
        one_line_error(result)


async def test_a_failed_runs_summary_says_what_klaviyo_had_accepted(segment: Path) -> None:
    server = await HostileKlaviyo().start()
    try:
        server.script("GET", f"/api/lists/{LIST_ID}", lambda r: (200, {"data": {"type": "list", "id": LIST_ID,
                                                                              "attributes": {"name": "VIP"}}}))
        server.script("POST", "/api/profile-bulk-import-jobs",
                      lambda r: (202, {"data": job_resource("job-1", "queued", 2, 0)}))
        server.script("GET", "/api/profile-bulk-import-jobs",
                      lambda r: (200, {"data": [job_resource("job-1", "cancelled", 2, 0)], "links": {}}))
        result = await acli(*export(segment, "--klaviyo-url", server.url), env={"KLAVIYO_API_KEY": API_KEY})
    finally:
        await server.stop()
    assert result.returncode == 1
    summary = result.stderr.strip().splitlines()[-1]
    assert summary.startswith("failed:") and "before it failed, Klaviyo had accepted 2 profiles in 1 job" in summary
    assert orjson.loads(result.stdout)["counts"]["accepted"] == 2




# ---- exit codes a scheduler can trust ----------------------------------------------------

def test_a_file_whose_every_row_is_rejected_exits_3(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("email,name\nzoe@x.com,Zoë\nrene@x.com,René\n".encode("latin-1"))
    result = cli(*export(path, "--dry-run"))
    assert result.returncode == 3 and orjson.loads(result.stdout)["verdict"] == "nothing_sent"


def test_too_many_rejects_exit_4_and_the_threshold_is_yours(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("email\n" + "".join(f"user{i}@x.com\n" for i in range(8)) + "bad\nworse\n")
    assert cli(*export(path, "--dry-run")).returncode == 4  # 20% rejected, default 10%
    allowed = cli(*export(path, "--dry-run", "--max-rejected-fraction", "0.25"))
    assert allowed.returncode == 0 and orjson.loads(allowed.stdout)["verdict"] == "ok"


async def test_held_removals_exit_5(simulator, tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("email\n" + "".join(f"user{i}@x.com\n" for i in range(10)))
    args = export(path, "--mode", "mirror", "--klaviyo-url", simulator.url, "--state", str(tmp_path / "state"))
    assert (await acli(*args, env={"KLAVIYO_API_KEY": API_KEY})).returncode == 0
    path.write_text("email\nuser0@x.com\n")  # 9 of 10 left: the guard holds
    held = await acli(*args, env={"KLAVIYO_API_KEY": API_KEY})
    assert held.returncode == 5 and orjson.loads(held.stdout)["verdict"] == "removals_held"


async def test_the_apps_report_carries_the_verdict(app) -> None:
    import function_app
    from tests.app_harness import call, post, status_of

    await app.put(app.segments, "vip/all.csv", b"email,first_name,tier\nnot-an-email,A,x\nalso-bad,B,y\n")
    answer = orjson.loads((await call(function_app.start_run, post("vip"))).get_body())
    await app.deliver()
    report = (await status_of("vip", answer["run_id"]))["report"]
    assert report["status"] == "partial" and report["verdict"] == "nothing_sent"


# ---- say what the file is ------------------------------------------------------------------

@pytest.mark.parametrize("content, what", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "is a PNG image"),
    (b"PK\x03\x04\x14\x00\x06\x00xl/workbook.xml", "is a ZIP archive (an Excel .xlsx workbook is one"),
    (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "is a PDF document"),
    (b"\x7fELF\x02\x01\x01\x00" + bytes(64), "is an executable (ELF)"),
    (bytes(range(256)) * 64, "holds NUL bytes, so it is binary"),
])
def test_a_file_that_is_not_text_is_named_for_what_it_is(tmp_path: Path, content: bytes, what: str) -> None:
    path = tmp_path / "segment.csv"
    path.write_bytes(content)
    result = cli(*export(path, "--dry-run"))
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 1 and what in last and "not found" not in result.stderr


def test_the_same_binary_inside_gzip_is_named_too(tmp_path: Path) -> None:
    import gzip

    path = tmp_path / "segment.csv.gz"
    path.write_bytes(gzip.compress(b"\x89PNG\r\n\x1a\n" + bytes(100)))
    assert "is a PNG image" in cli(*export(path, "--dry-run")).stderr


@pytest.mark.parametrize("codec, bom", [("utf-16-le", b"\xff\xfe"), ("utf-16-be", b"\xfe\xff"),
                                        ("utf-32-le", b"\xff\xfe\x00\x00")])
def test_excels_unicode_text_and_other_marked_encodings_read_without_options(tmp_path: Path, codec: str,
                                                                             bom: bytes) -> None:
    path = tmp_path / "unicode.txt"
    path.write_bytes(bom + "email\tname\nzoe@x.com\tZoë\nann@x.com\tAnn\n".encode(codec))
    result = cli("export", "--source", str(path), "--list-id", LIST_ID, "--email-column", "email",
                 "--map", "name=first_name", "--dry-run")
    report = orjson.loads(result.stdout)
    assert result.returncode == 0 and report["counts"]["sent"] == 2 and report["counts"]["rejected"] == 0


def test_excels_csv_utf8_reads_without_options(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffemail,name\r\nzoe@x.com,Zoë\r\n".encode("utf-8"))
    result = cli(*export(path, "--dry-run", "--map", "name=first_name"))
    assert result.returncode == 0 and orjson.loads(result.stdout)["counts"]["sent"] == 1


def test_a_headerless_file_is_told_about_columns(tmp_path: Path) -> None:
    path = tmp_path / "headerless.csv"
    path.write_text("ann@example.com,Ann\nbob@example.com,Bob\n")
    error = cli(*export(path, "--dry-run")).stderr.strip().splitlines()[-1]
    assert "looks like data" in error and "--columns A,B,C" in error


# ---- check-config ----------------------------------------------------------------------------

def document(**export: object) -> dict:
    return {"connections": [{"name": "c", "display_name": "Klaviyo", "env": "KLAVIYO_API_KEY"}],
            "exports": [{"name": "vip", "connection": "c", "source": "vip/", "list_id": LIST_ID,
                         "mapping": {"email": "email"}, **export}]}


def test_check_config_lists_every_problem_offline(tmp_path: Path) -> None:
    bad = document(mode="sideways", list_id="")
    bad["exports"].append({"name": "../x", "connection": "nope", "source": "../up.csv", "list_id": "L",
                           "mapping": {"email": "email"}})
    (tmp_path / "exports.json").write_bytes(orjson.dumps(bad))
    result = cli("check-config", str(tmp_path / "exports.json"))
    problems = [line for line in result.stderr.splitlines() if line.startswith("problem: ")]
    assert result.returncode == 2 and len(problems) >= 4
    assert any("'mode'" in p for p in problems) and any("unknown connection 'nope'" in p for p in problems)
    (tmp_path / "good.json").write_bytes(orjson.dumps(document()))
    good = cli("check-config", str(tmp_path / "good.json"))
    assert good.returncode == 0 and "sound (1 connection, 1 export)" in good.stderr


async def test_check_config_online_tries_each_key_and_list(simulator, tmp_path: Path) -> None:
    (tmp_path / "exports.json").write_bytes(orjson.dumps(document()))
    (tmp_path / "wrong.json").write_bytes(orjson.dumps(document(list_id="NoSuchList")))
    args = ("--online", "--klaviyo-url", simulator.url)
    good = await acli("check-config", str(tmp_path / "exports.json"), *args, env={"KLAVIYO_API_KEY": API_KEY})
    assert good.returncode == 0 and f"ok: export 'vip': list '{LIST_ID}'" in good.stderr
    wrong = await acli("check-config", str(tmp_path / "wrong.json"), *args, env={"KLAVIYO_API_KEY": API_KEY})
    assert wrong.returncode == 2 and "list 'NoSuchList' does not exist" in wrong.stderr
    refused = await acli("check-config", str(tmp_path / "exports.json"), *args, env={"KLAVIYO_API_KEY": "sk_nope"})
    assert refused.returncode == 2 and "Klaviyo refused the key" in refused.stderr
    keyless = await acli("check-config", str(tmp_path / "exports.json"), *args)
    assert keyless.returncode == 2 and "no key at hand in environment variable KLAVIYO_API_KEY" in keyless.stderr
    assert "sk_nope" not in refused.stderr + refused.stdout


async def test_the_simulator_shows_whole_profiles_on_request(simulator, segment: Path) -> None:
    import urllib.request

    path = segment.parent / "full.csv"
    path.write_text("email,phone,tier\nann@example.com,+44 20 7946 0000,gold\n")
    result = await acli(*export(path, "--map", "phone=phone_number", "--map", "tier=properties.tier",
                                "--klaviyo-url", simulator.url), env={"KLAVIYO_API_KEY": API_KEY})
    assert result.returncode == 0, result.stderr
    url = f"{simulator.url}/_sim/lists/{LIST_ID}?full=1"
    body = orjson.loads(await asyncio.to_thread(lambda: urllib.request.urlopen(url).read()))
    [profile] = body["profiles"]
    assert profile["email"] == "ann@example.com" and profile["phone_number"] == "+442079460000"
    assert profile["properties"] == {"tier": "gold"}


def test_readme_lists_every_setting_the_code_reads() -> None:
    from exporter.settings import LOCAL_ONLY, SETTINGS

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert [s.name for s in (*SETTINGS, *LOCAL_ONLY) if f"| `{s.name}` |" not in readme] == []


def test_the_local_settings_sample_runs_with_the_local_exports_document() -> None:
    root = Path(__file__).resolve().parent.parent
    values = orjson.loads((root / "local.settings.sample.json").read_bytes())["Values"]
    from exporter.config import load_config_file

    local = load_config_file(root / values["EXPORTS_CONFIG_FILE"])
    [export] = local.exports.values()
    assert export.enabled and export.connection.env == "KLAVIYO_API_KEY" and values["EXPORTER_LOCAL_MODE"] == "true"


# ---- an interrupted run resumes --------------------------------------------------------------

async def interrupted_then_resumed(sim, tmp_path: Path, rows: int, signum: int) -> tuple[dict, dict, int]:
    """Export ``rows`` rows, send ``signum`` once about a third of the jobs were accepted, then
    run the same command again. Returns both reports and how many jobs the first had sent."""
    import os
    import sys

    from devtools.sample import segment_bytes

    source = tmp_path / "big.csv"
    source.write_bytes(segment_bytes(rows))
    args = [*export(source, "--klaviyo-url", sim.url, "--state", str(tmp_path / "state"),
                    "--map", "first_name=first_name")]
    env = {**os.environ, "KLAVIYO_API_KEY": API_KEY}
    stats = sim.simulator.stats
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "exporter", *args, env=env, cwd=tmp_path,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    target = rows // 10_000 // 3
    for _ in range(600):
        if stats.jobs_received >= target:
            break
        await asyncio.sleep(0.05)
    process.send_signal(signum)
    out, err = await process.communicate()
    assert process.returncode == 130, err.decode()
    first = orjson.loads(out)
    sent_before = stats.jobs_received
    assert (tmp_path / "state" / "run-ledger.json").is_file()
    again = await acli(*args, env={"KLAVIYO_API_KEY": API_KEY}, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"resuming run {first['run_id']}" in again.stderr
    assert not (tmp_path / "state" / "run-ledger.json").exists()  # finished: nothing left to resume
    return first, orjson.loads(again.stdout), sent_before


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
async def test_an_interrupted_run_resumes_without_resending_what_klaviyo_accepted(start_simulator, tmp_path: Path,
                                                                                  signame: str) -> None:
    import signal

    rows = 300_000
    sim = await start_simulator()
    first, second, jobs_before = await interrupted_then_resumed(sim, tmp_path, rows, getattr(signal, signame))
    assert first["status"] == "interrupted" and first["verdict"] == "interrupted"
    c = first["counts"]
    assert c["accepted"] >= 10_000 and c["rows_read"] == c["sent"] + c["rejected"] + c["duplicates"] + c["unchanged"] \
        + c["unsent"]
    assert second["run_id"] == first["run_id"] and second["status"] == "succeeded"
    assert second["counts"]["sent"] == rows and second["counts"]["rows_read"] == rows
    stats = sim.simulator.stats
    in_flight = 6 + 2  # senders, and jobs queued for them, that may have been sent but not recorded
    assert stats.profiles_received <= rows + in_flight * 10_000
    assert stats.jobs_received - jobs_before <= rows // 10_000 - len(first["jobs"]) + in_flight
    members = sim.simulator.account.member_emails(LIST_ID)
    assert len(members) == rows == len(set(members))

    # The snapshot is exactly that of an uninterrupted run.
    plain = await start_simulator()
    other = tmp_path / "plain"
    other.mkdir()
    (other / "big.csv").write_bytes((tmp_path / "big.csv").read_bytes())
    whole = await acli(*export(other / "big.csv", "--klaviyo-url", plain.url, "--state", str(other / "state"),
                               "--map", "first_name=first_name"), env={"KLAVIYO_API_KEY": API_KEY}, cwd=other)
    assert whole.returncode == 0

    def sections(path: Path) -> bytes:
        return path.read_bytes().split(b"\n", 3)[3]

    assert sections(tmp_path / "state" / "snapshot.bin") == sections(other / "state" / "snapshot.bin")


async def test_a_changed_source_starts_over_and_says_so(simulator, tmp_path: Path) -> None:
    from exporter.resume import LEDGER_NAME

    source = tmp_path / "s.csv"
    source.write_text(SEGMENT)
    state = tmp_path / "state"
    state.mkdir()
    (state / LEDGER_NAME).write_bytes(orjson.dumps({"run_id": "20261201T000000Z-deadbeef", "fingerprint": "other",
                                                    "checkpoint": {"accepted": {}, "settled": {}}}))
    result = await acli(*export(source, "--klaviyo-url", simulator.url, "--state", str(state)),
                        env={"KLAVIYO_API_KEY": API_KEY})
    assert result.returncode == 0
    assert "run 20261201T000000Z-deadbeef of this export did not finish, but its source or settings changed" \
        in result.stderr
    assert orjson.loads(result.stdout)["run_id"] != "20261201T000000Z-deadbeef"


# ---- CDM as writers write it -----------------------------------------------------------------

def cdm_manifest_folder(root: Path, entity: dict, schema_attributes: list, definitions_extra: list | None = None,
                        files: dict[str, str] | None = None) -> None:
    """A manifest.cdm.json folder: the manifest, the entity's schema document, and data files."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "manifest.cdm.json").write_bytes(orjson.dumps({"manifestName": "export", "entities": [
        {"type": "LocalEntity", "entityName": "VIP", "entityPath": "VIP.cdm.json/VIP", **entity}]}))
    (root / "VIP.cdm.json").write_bytes(orjson.dumps({"definitions": [
        {"entityName": "VIP", "hasAttributes": schema_attributes}, *(definitions_extra or [])]}))
    for name, text in (files or {}).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


CSV_TRAIT = [{"traitReference": "is.partition.format.CSV", "arguments": [
    {"name": "columnHeaders", "value": "false"}, {"name": "delimiter", "value": ","}]}]
PARTS = {"VIP/2026/11/24/part-1.csv": "old@example.com,Old\n",
         "VIP/2026/11/25/part-1.csv": "ann@example.com,Ann\n", "VIP/2026/11/25/part-2.csv": "bob@example.com,Bob\n"}


def cdm_export(root: Path, *extra: str) -> dict:
    result = cli("export", "--source", str(root), "--list-id", LIST_ID, "--email-column", "email",
                 "--map", "first_name=first_name", "--dry-run", *extra)
    assert result.returncode == 0, result.stderr
    return orjson.loads(result.stdout)


def dated(root: Path) -> None:
    import os

    for name, stamp in (("VIP/2026/11/24/part-1.csv", 1_000_000), ("VIP/2026/11/25/part-1.csv", 2_000_000),
                        ("VIP/2026/11/25/part-2.csv", 2_000_000)):
        os.utime(root / name, (stamp, stamp))


@pytest.mark.parametrize("attributes, extra", [
    ([{"attributeGroupReference": {"attributeGroupName": "attributesAddedAtThisScope",
                                   "members": [{"name": "email"}, {"name": "first_name"}]}}], None),
    (["VIP/hasAttributes/attributesAddedAtThisScope"], [{"attributeGroupName": "attributesAddedAtThisScope",
                                                         "members": [{"name": "email"}, {"name": "first_name"}]}]),
])
def test_attribute_groups_inline_or_by_reference(tmp_path: Path, attributes: list, extra: list | None) -> None:
    if isinstance(attributes[0], str):
        attributes = [{"attributeGroupReference": attributes[0]}]
    partitions = [{"location": f"local:/{name}", "exhibitsTraits": CSV_TRAIT} for name in list(PARTS)[1:]]
    cdm_manifest_folder(tmp_path / "cdm", {"dataPartitions": partitions}, attributes, extra, PARTS)
    report = cdm_export(tmp_path / "cdm")
    assert report["counts"]["rows_read"] == 2 and report["counts"]["sent"] == 2


@pytest.mark.parametrize("pattern", [{"regularExpression": "/(\\d{4})/(\\d{2})/(\\d{2})/part-\\d+\\.csv$"},
                                     {"globPattern": "/**/part-*.csv"}])
def test_data_partition_patterns_read_the_newest_run_they_match(tmp_path: Path, pattern: dict) -> None:
    patterns = [{"name": "VIP", "rootLocation": "VIP/", "exhibitsTraits": CSV_TRAIT, **pattern}]
    root = tmp_path / "cdm"
    cdm_manifest_folder(root, {"dataPartitionPatterns": patterns}, [{"name": "email"}, {"name": "first_name"}],
                        files={**PARTS, "elsewhere/part-9.csv": "eve@example.com,Eve\n"})
    dated(root)
    report = cdm_export(root)
    assert report["counts"]["rows_read"] == 2 and "2026/11/25" in report["source"]


def test_a_pattern_root_outside_the_folder_is_refused(tmp_path: Path) -> None:
    patterns = [{"rootLocation": "../other/", "globPattern": "/*.csv", "exhibitsTraits": CSV_TRAIT}]
    cdm_manifest_folder(tmp_path / "cdm", {"dataPartitionPatterns": patterns}, [{"name": "email"}], files=PARTS)
    result = cli("export", "--source", str(tmp_path / "cdm"), "--list-id", LIST_ID, "--email-column", "email",
                 "--dry-run")
    assert result.returncode == 2 and "not a plain path" in one_line_error(result)


def test_a_catastrophic_regular_expression_cannot_hang_the_run(tmp_path: Path) -> None:
    patterns = [{"rootLocation": "VIP/", "regularExpression": "^/(a+)+$", "exhibitsTraits": CSV_TRAIT}]
    cdm_manifest_folder(tmp_path / "cdm", {"dataPartitionPatterns": patterns}, [{"name": "email"}],
                        files={"VIP/" + "a" * 60 + "!": "x\n", **PARTS})
    result = cli("export", "--source", str(tmp_path / "cdm"), "--list-id", LIST_ID, "--email-column", "email",
                 "--dry-run", timeout=30)
    assert result.returncode == 2 and "lists no partitions" in one_line_error(result)


def test_quote_style_none_reads_quotes_as_characters(tmp_path: Path) -> None:
    trait = [{"traitReference": "is.partition.format.CSV", "arguments": [
        {"name": "columnHeaders", "value": "false"}, {"name": "delimiter", "value": ","},
        {"name": "quoteStyle", "value": "QuoteStyle.None"}, {"name": "csvStyle", "value": "CsvStyle.QuoteAlways"}]}]
    files = {"VIP/run/part-1.csv": 'ann@example.com,"Ann\nbob@example.com,Bob"\n'}
    cdm_manifest_folder(tmp_path / "cdm", {"dataPartitions": [{"location": "VIP/run/part-1.csv",
                                                               "exhibitsTraits": trait}]},
                        [{"name": "email"}, {"name": "first_name"}], files=files)
    report = cdm_export(tmp_path / "cdm")
    assert report["counts"]["sent"] == 2 and report["counts"]["rejected"] == 0  # no quote swallowed a line
    bad = [{"traitReference": "is.partition.format.CSV", "arguments": [{"name": "quoteStyle", "value": "Fancy"}]}]
    cdm_manifest_folder(tmp_path / "bad", {"dataPartitions": [{"location": "VIP/run/part-1.csv",
                                                               "exhibitsTraits": bad}]},
                        [{"name": "email"}, {"name": "first_name"}], files=files)
    result = cli("export", "--source", str(tmp_path / "bad"), "--list-id", LIST_ID, "--email-column", "email",
                 "--dry-run")
    assert result.returncode == 2 and "quoteStyle 'Fancy' is not one this reads" in one_line_error(result)


# ---- the newcomer path, copied out of README -------------------------------------------------

def readme_commands() -> list[str]:
    """The command-line section's shell block, one command a line (continuations joined)."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = readme.split("## The command line", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    commands, current = [], ""
    for line in block.splitlines():
        current += line.rstrip("\\").rstrip() + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            if current.strip() and not current.lstrip().startswith("#"):
                commands.append(current.strip())
            current = ""
    return commands


async def test_the_readme_command_line_path_works_as_written(start_simulator, tmp_path: Path) -> None:
    """clone -> a first export of a file -> a delta rerun -> a CDM folder -> a config export,
    each command exactly as README writes it (only the simulator's address replaced), from a
    copy of the repository's sample files."""
    import os
    import shutil
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    shutil.copytree(root / "devtools" / "samples", tmp_path / "devtools" / "samples")
    shutil.copy(root / "exports.json", tmp_path / "exports.json")
    sim = await start_simulator(rate_limits=False)
    commands = readme_commands()
    assert commands[0].startswith("export KLAVIYO_API_KEY=") and "simulate-klaviyo" in commands[1]
    for list_id in ("AbC123", "CdmVip", "REPLACE_WITH_LIST_ID"):
        assert f"--list {list_id}" in commands[1]
        sim.simulator.account.add_list(list_id)
    exports = [c for c in commands if c.startswith("klaviyo-export export")]
    assert len(exports) == 4
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "KLAVIYO_API_KEY": API_KEY, "PATH": f"{bin_dir}:/usr/bin:/bin"}
    reports = []
    for command in exports:
        command = command.replace("http://127.0.0.1:8765", sim.url)
        result = await asyncio.to_thread(subprocess.run, command, shell=True, capture_output=True, text=True,
                                         cwd=tmp_path, env=env, timeout=120)
        assert result.returncode == 0, f"{command}\n{result.stderr}"
        reports.append(orjson.loads(result.stdout))
    first, delta, cdm, configured = reports
    assert first["counts"]["sent"] > 0 and delta["counts"]["sent"] == 0
    assert delta["counts"]["unchanged"] == first["counts"]["sent"]
    assert cdm["counts"]["sent"] > 0 and len(sim.simulator.account.member_emails("CdmVip")) == cdm["counts"]["sent"]
    assert configured["list_id"] == "REPLACE_WITH_LIST_ID" and configured["counts"]["sent"] > 0
    assert (tmp_path / "out" / "report.json").is_file()


async def test_a_damaged_run_ledger_starts_over_and_says_so(simulator, tmp_path: Path) -> None:
    from exporter.resume import LEDGER_NAME

    source = tmp_path / "s.csv"
    source.write_text(SEGMENT)
    state = tmp_path / "state"
    state.mkdir()
    for garbage in (b"\x00not json", b'{"run_id": 5}', b'{"run_id": "x", "fingerprint": "f", "checkpoint": []}'):
        (state / LEDGER_NAME).write_bytes(garbage)
        result = await acli(*export(source, "--klaviyo-url", simulator.url, "--state", str(state)),
                            env={"KLAVIYO_API_KEY": API_KEY})
        assert result.returncode == 0 and "is damaged; starting over" in result.stderr, result.stderr
        assert not (state / LEDGER_NAME).exists()  # the run finished: nothing left to resume


@pytest.mark.parametrize("options", [{"identity": "email"}, {"identity": ["fax"]}, {"types": ["number"]},
                                     {"consent": {"push": {"column": "a", "consented_at": "b"}}}])
def test_a_runs_pinned_mapping_that_was_tampered_with_fails_the_run_clearly(options: dict) -> None:
    from exporter.errors import ExportError
    from exporter.runs.pinning import mapping_from as _mapping_from

    with pytest.raises(ExportError):
        _mapping_from({"email": "email"}, options)


async def test_a_damaged_checkpoint_fails_the_apps_run_with_the_reason(app) -> None:
    import function_app
    from tests.app_harness import call, post, status_of

    await app.put(app.segments, "vip/all.csv", b"email\na@x.com\n")
    answer = orjson.loads((await call(function_app.start_run, post("vip"))).get_body())
    await app.put(app.reports, f"vip/{answer['run_id']}/checkpoint.json", b'{"accepted": []}')
    await app.deliver()
    state = await status_of("vip", answer["run_id"])
    assert state["status"] == "failed" and "checkpoint" in state["report"]["error"]
    assert "damaged" in state["report"]["error"]
