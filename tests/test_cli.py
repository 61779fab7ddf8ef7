"""The command line as a person meets it: one-line errors, honest exit codes, what a dry run
checks, where the rejects go, the progress line, the simulator's options, and a README that
says exactly what ``--help`` says. Each runs the real command in a subprocess."""

from __future__ import annotations

import asyncio
import os
import pty
import re
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson
import pytest

from exporter.rejects import Reject, RejectsFile
from tests.conftest import API_KEY, LIST_ID

ROOT = Path(__file__).resolve().parent.parent
HELP_ENV = {"COLUMNS": "100"}  # argparse wraps help to the terminal's width


def fresh_directory() -> str:
    """Each CLI run in its own working directory: its default snapshot folder
    (``.exporter-state/``) must not carry one test's list into another's."""
    return tempfile.mkdtemp(prefix="cli-run-")


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess:
    environment = {**os.environ, "KLAVIYO_API_KEY": "", **(env or {})}
    return subprocess.run([sys.executable, "-m", "exporter", *args], capture_output=True, text=True,
                          cwd=cwd or fresh_directory(), env=environment, timeout=timeout)


async def acli(*args: str, **kwargs: object) -> subprocess.CompletedProcess:
    return await asyncio.to_thread(cli, *args, **kwargs)  # type: ignore[arg-type]


def one_line_error(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.fixture
def segment(tmp_path: Path) -> Path:
    path = tmp_path / "s.csv"
    path.write_text("email,phone\na@x.com,+447700900001\nb@x.com,(020) 7946 0958\nA@x.com,\n")
    return path


def export_args(segment: Path, *extra: str) -> list[str]:
    return ["export", "--source", str(segment), "--list-id", LIST_ID, "--email-column", "email", *extra]


# ---- errors and exit codes ---------------------------------------------------------------

@pytest.mark.parametrize("args, fragment", [
    (["--klaviyo-url", "not-a-url"], "--klaviyo-url must be an http(s) URL"),
    (["--klaviyo-url", "http://127.0.0.1:port"], "invalid port"),
    (["--map", "Phonephone_number"], "--map expects COL=FIELD"),
    (["--map", "phone=telephone"], "unknown Klaviyo profile field 'telephone'"),
    (["--encoding", "klingon"], "not a text encoding Python knows"),
    (["--phone-region", "UK"], "phone region 'UK' is not a two-letter region"),
])
def test_usage_errors_exit_2_with_one_line(segment: Path, args: list[str], fragment: str) -> None:
    result = cli(*export_args(segment, *args), env={"KLAVIYO_API_KEY": API_KEY})
    assert result.returncode == 2 and fragment in one_line_error(result)


@pytest.mark.parametrize("args, fragment", [
    (["export", "--source", "x.csv", "--list-id", "L"], "missing --email-column"),
    (["export", "--source", "x.csv", "--list-id", "", "--email-column", "email"], "missing --list-id"),
    (["export", "--source", "no/such/file.csv", "--list-id", "L", "--email-column", "email"], "no such file"),
])
def test_leaving_things_out_is_a_usage_error(args: list[str], fragment: str) -> None:
    result = cli(*args, env={"KLAVIYO_API_KEY": API_KEY})
    assert result.returncode == 2 and fragment in one_line_error(result)


def test_argparse_own_errors_exit_2() -> None:
    result = cli("export", "--format", "xml")
    assert result.returncode == 2 and "invalid choice: 'xml'" in result.stderr


async def test_an_unreachable_klaviyo_says_where_and_what_happened(segment: Path) -> None:
    with socket.socket() as holder:  # a port with nothing listening: the connection is refused
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
    result = await acli(*export_args(segment, "--klaviyo-url", f"http://127.0.0.1:{port}"), env={"KLAVIYO_API_KEY": API_KEY})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert orjson.loads(result.stdout)["status"] == "failed"
    [summary] = result.stderr.strip().splitlines()
    assert summary.endswith(f"error: cannot reach Klaviyo at http://127.0.0.1:{port}: connection refused by 127.0.0.1:{port}")


async def test_a_busy_simulator_port_is_one_line_not_an_oserror() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        result = await acli("simulate-klaviyo", "--port", str(holder.getsockname()[1]), timeout=30)
    assert result.returncode == 1 and "pick another --port (0 picks a free one)" in one_line_error(result)


def test_debug_shows_the_traceback(segment: Path) -> None:
    result = cli("--debug", *export_args(segment, "--klaviyo-url", "not-a-url"))
    assert result.returncode == 2 and "Traceback" in result.stderr and result.stderr.strip().endswith(
        "got 'not-a-url'")


# ---- dry runs ------------------------------------------------------------------------------

async def test_a_dry_run_checks_the_key_and_the_list_when_it_has_a_key(segment: Path, simulator) -> None:
    missing = await acli(*export_args(segment, "--dry-run", "--klaviyo-url", simulator.url, "--list-id", "NoSuchList"),
                         env={"KLAVIYO_API_KEY": API_KEY})
    assert missing.returncode == 1 and "Klaviyo list 'NoSuchList' does not exist" in one_line_error(missing)
    wrong_key = await acli(*export_args(segment, "--dry-run", "--klaviyo-url", simulator.url),
                           env={"KLAVIYO_API_KEY": "pk_not_the_key"})
    assert wrong_key.returncode == 1 and "refused the API key (401)" in one_line_error(wrong_key)
    fine = await acli(*export_args(segment, "--dry-run", "--klaviyo-url", simulator.url), env={"KLAVIYO_API_KEY": API_KEY})
    assert fine.returncode == 0 and "not checked" not in fine.stderr
    assert simulator.simulator.stats.jobs_received == 0


def test_a_dry_run_without_a_key_says_it_did_not_check(segment: Path) -> None:
    result = cli(*export_args(segment, "--dry-run", "--list-id", "Whatever"))
    assert result.returncode == 0
    assert "note: dry run without an API key: the key and list 'Whatever' were not checked" in result.stderr


# ---- every row traceable -----------------------------------------------------------------

def test_the_rejects_file_lands_beside_the_report_or_in_the_temp_folder(segment: Path, tmp_path: Path) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    beside = cli(*export_args(segment, "--dry-run", "--report", str(tmp_path / "out" / "report.json")), cwd=cwd)
    report = orjson.loads(beside.stdout)
    assert Path(report["rejects"]).parent == tmp_path / "out"
    alone = cli(*export_args(segment, "--dry-run"), cwd=cwd)
    rejects = Path(orjson.loads(alone.stdout)["rejects"])
    assert rejects.parent.name == "klaviyo-export" and rejects.exists() and not any(cwd.iterdir())
    assert f"rejects in {rejects}" in alone.stderr


def test_named_rejects_file_is_always_created_and_duplicates_are_listed(tmp_path: Path) -> None:
    clean = tmp_path / "clean.csv"
    clean.write_text("email\na@x.com\n")
    result = cli(*export_args(clean, "--dry-run", "--rejects", str(tmp_path / "none.csv")))
    assert result.returncode == 0 and (tmp_path / "none.csv").read_text() == "line,column,reason\n"
    dupes = tmp_path / "dupes.csv"
    dupes.write_text("email\na@x.com\nA@X.com\n")
    result = cli(*export_args(dupes, "--dry-run", "--rejects", str(tmp_path / "r.csv")))
    assert (tmp_path / "r.csv").read_text().splitlines()[1:] == ["3,email,duplicate of line 2"]
    assert ", 1 duplicate, " in result.stderr  # singular


def test_rejects_are_written_in_line_order_even_past_a_spill(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("exporter.rejects.RUN_SIZE", 3)
    rejects = RejectsFile(tmp_path / "r.csv")
    rejects.add([Reject(9, "", "c"), Reject(2, "", "a"), Reject(7, "", "b"), Reject(5, "", "x")])
    rejects.add([Reject(1, "", "late"), Reject(8, "", "d")])
    rejects.close()
    assert [line.split(",")[0] for line in (tmp_path / "r.csv").read_text().splitlines()[1:]] == \
        ["1", "2", "5", "7", "8", "9"]


# ---- real-world data ---------------------------------------------------------------------

async def test_local_phones_with_a_region_and_an_invalid_one_dropped(segment: Path, simulator, tmp_path: Path) -> None:
    result = await acli(*export_args(segment, "--map", "phone=phone_number", "--phone-region", "GB",
                                     "--klaviyo-url", simulator.url, "--rejects", str(tmp_path / "r.csv")),
                        env={"KLAVIYO_API_KEY": API_KEY})
    assert result.returncode == 0, result.stderr
    account = simulator.simulator.account
    phones = sorted(account.attributes(p).get("phone_number", "") for p in account.profile_ids())
    assert phones == ["+442079460958", "+447700900001"]


def test_a_windows_1252_file_hints_at_its_encoding_and_reads_with_it(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes("email,name\nzoe@x.com,Zoë\nrene@x.com,René\nann@x.com,Ann\n".encode("cp1252"))
    guessed = cli(*export_args(path, "--dry-run", "--map", "name=first_name"))
    assert guessed.returncode == 4 and orjson.loads(guessed.stdout)["verdict"] == "too_many_rejects"
    assert "2 rows held bytes that are not valid UTF-8: the file is probably not UTF-8" in guessed.stderr
    assert "--encoding" in guessed.stderr
    told = cli(*export_args(path, "--dry-run", "--map", "name=first_name", "--encoding", "cp1252"))
    assert orjson.loads(told.stdout)["counts"]["sent"] == 3 and "probably not" not in told.stderr
    assert told.returncode == 0


def test_gzipped_json_lines_without_the_name_are_read_as_json_lines(tmp_path: Path) -> None:
    import gzip

    path = tmp_path / "export.gz"
    path.write_bytes(gzip.compress(b'{"email": "a@x.com"}\n{"email": "b@x.com"}\n{broken\n'))
    result = cli(*export_args(path, "--dry-run", "--max-rejected-fraction", "0.5"))
    assert result.returncode == 0 and orjson.loads(result.stdout)["counts"]["sent"] == 2
    rejects = Path(orjson.loads(result.stdout)["rejects"]).read_text().splitlines()[1:]
    assert rejects == ["3,,line 3 is not a JSON object (invalid JSON)"]


# ---- discoverability -----------------------------------------------------------------------

def test_the_console_script_runs_from_anywhere(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "klaviyo-export"
    result = subprocess.run([str(script), "export", "--help"], capture_output=True, text=True, cwd=tmp_path,
                            env={**os.environ, **HELP_ENV}, timeout=60)
    assert result.returncode == 0 and "exit codes (the report's \"verdict\" says the same):" in result.stdout


@pytest.mark.parametrize("args, fragment", [
    (["--fault-rate", "2"], "must be between 0 and 1, got 2"),
    (["--job-delay", "-1"], "must be zero or more, got -1"),
    (["--port", "70000"], "must be 0-65535"),
])
def test_impossible_simulator_values_are_refused(args: list[str], fragment: str) -> None:
    result = cli("simulate-klaviyo", *args)
    assert result.returncode == 2 and fragment in result.stderr


def test_port_0_prints_the_real_url() -> None:
    process = subprocess.Popen([sys.executable, "-m", "exporter", "simulate-klaviyo", "--port", "0"], cwd=ROOT,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
    finally:
        process.terminate()
        process.wait(10)
    match = re.fullmatch(r"Klaviyo simulator on http://127\.0\.0\.1:(\d+) \(rate limits klaviyo\)\n", line)
    assert match and int(match.group(1)) > 0


def test_a_disabled_export_needs_force(tmp_path: Path, segment: Path) -> None:
    config = {"connections": [{"name": "c", "env": "KLAVIYO_API_KEY"}],
              "exports": [{"name": "paused", "connection": "c", "source": "vip/", "list_id": "L1",
                           "mapping": {"email": "email"}, "enabled": False}]}
    (tmp_path / "exports.json").write_bytes(orjson.dumps(config))
    args = ["export", "--config", str(tmp_path / "exports.json"), "--export", "paused", "--source", str(segment),
            "--dry-run"]
    refused = cli(*args)
    assert refused.returncode == 2 and "pass --force to run it anyway" in one_line_error(refused)
    assert cli(*args, "--force").returncode == 0


def test_the_readme_shows_exactly_what_help_says() -> None:
    readme = (ROOT / "README.md").read_text()
    for command in (["--help"], ["export", "--help"], ["simulate-klaviyo", "--help"], ["app", "--help"]):
        shown = cli(*command, env=HELP_ENV).stdout
        assert shown.strip() in readme, f"README lacks the current output of: klaviyo-export {' '.join(command)}"


async def on_a_terminal(*args: str) -> tuple[int, str]:
    """Run the CLI with stderr on a pseudo-terminal (where the progress line is drawn)."""
    controller, terminal = pty.openpty()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exporter", *args, cwd=fresh_directory(), stdout=asyncio.subprocess.DEVNULL, stderr=terminal,
        env={**os.environ, "KLAVIYO_API_KEY": API_KEY})
    os.close(terminal)
    await process.wait()
    screen = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:
            break
        if not chunk:
            break
        screen += chunk
    os.close(controller)
    assert process.returncode is not None
    return process.returncode, screen.decode()


async def test_the_progress_line_shows_accepted_and_imported_separately(segment: Path, simulator) -> None:
    code, screen = await on_a_terminal(*export_args(segment, "--klaviyo-url", simulator.url))
    assert code == 0
    assert re.search(r"3 rows read\s+2 accepted\s+2 imported", screen), screen


async def test_the_progress_line_shows_the_retrying(segment: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
    code, screen = await on_a_terminal(*export_args(segment, "--klaviyo-url", f"http://127.0.0.1:{port}"))
    assert code == 1
    assert f"[connection refused by 127.0.0.1:{port}; retrying in" in screen, screen


def test_a_local_dry_run_loads_no_azure_sdk_and_no_http_stack(segment: Path) -> None:
    """Start-up is paid per run: a local file needs neither the storage nor the Key Vault SDK,
    and a dry run without a key asks nothing of Klaviyo, so it needs no HTTP client either."""
    code = ("import sys; from exporter.cli import main; code = main(sys.argv[1:]); "
            "print(sorted({m.split('.')[1] for m in sys.modules if m.startswith('azure.')}), "
            "'aiohttp' in sys.modules, file=sys.stderr); sys.exit(code)")
    result = subprocess.run([sys.executable, "-c", code, *export_args(segment, "--dry-run")], capture_output=True,
                            text=True, cwd=ROOT, env={**os.environ, "KLAVIYO_API_KEY": ""}, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "[] False"
