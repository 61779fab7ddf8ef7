"""``klaviyo-export`` / ``python -m exporter``: run an export, or serve the Klaviyo simulator.

The command line is a contract (DESIGN.md). Exit codes: 0 a finished run (``partial``
included: the rejects are listed), 1 a failed run (or a simulator that cannot start), 2 a
usage error — anything wrong before a byte of the segment is read. Every failure ends in
one line that says what to do; ``--debug`` (or ``EXPORTER_DEBUG=1``) adds the traceback.
The report goes to stdout as JSON; progress and the summary go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import codecs
import contextlib
import gc
import logging
import os
import re
import signal
import sys
import tempfile
import traceback
from dataclasses import replace
from pathlib import Path
from typing import AsyncIterator, Callable, Sequence
from urllib.parse import urlsplit

from exporter.allocator import tune_allocator
from exporter.cli_app import add_app_parser, app_command
from exporter.cli_output import ProgressBar, plural, summary
from exporter.errors import ConfigError, ExportError, SourceError, TransientError
from exporter.klaviyo.auth import KEY_ENV, ApiKeySource, api_key_from_environment
from exporter.klaviyo.client import DEFAULT_BASE_URL, KlaviyoClient
from exporter.logsafe import install_everywhere
from exporter.mapping import FieldMapping
from exporter.mapping.consent import ConsentMapping
from exporter.mapping.engine import ENGINES
from exporter.mapping.fields import INVALID_FIELD_POLICIES
from exporter.pipeline import ExportPlan, run_export
from exporter.rejects import RejectsFile
from exporter.report import RunReport, new_run_id
from exporter.resume import (
    LEDGER_NAME,
    BlobLedgerFile,
    LedgerFile,
    LocalLedgerFile,
    resume_or_start,
    run_fingerprint,
    settle_ledger,
)
from exporter.sources import FORMATS, BlobLocation, is_blob_url
from exporter.sources.files import blob_folder_address, pinned_blob
from exporter.sources.folders import BlobFolder
from exporter.sources.parts import SegmentRun, folder_of, resolve_folder
from exporter.sync.plan import MODES, SyncPlan
from exporter.sync.snapshot import FILE_NAME as SNAPSHOT_FILE
from exporter.sync.snapshot import BlobSnapshotStore, LocalSnapshotStore, SnapshotStore
from exporter.verdict import DEFAULT_MAX_REJECTED_FRACTION, FAILED, OK, USAGE, VERDICTS, exit_codes_text

EXIT_OK, EXIT_FAILED, EXIT_USAGE = OK.exit_code, FAILED.exit_code, USAGE.exit_code
STATE_FOLDER = ".exporter-state"  # snapshots, one folder per list, under the current directory
DEBUG_ENV = "EXPORTER_DEBUG"
EXPORT_EPILOG = f"""\
exit codes (the report's "verdict" says the same):
{exit_codes_text()}
Column names are matched exactly (case and spaces included).
The report is printed to stdout as JSON; progress and a one-line summary go to stderr."""
SIMULATE_EPILOG = """\
The simulator keeps its state (lists, profiles, jobs) until it stops. Besides Klaviyo's own
routes it serves, for people and tests:
  GET  /_sim/lists/ID   the list's member emails and count
  GET  /_sim/lists/ID?full=1   the members' whole profiles (phone, names, location, properties)
  POST /_sim/lists      {"id": "ID", "name": "NAME"} creates a list
  GET  /_sim/stats      requests, throttled, faults, jobs and profiles received"""


class UsageError(ConfigError):
    """Something is wrong with the command line or its files: exit 2, nothing was read."""


def tune_garbage_collector() -> None:
    """Collect the youngest generation every 20,000 allocations instead of 700.

    A run allocates a few small dicts per row and frees them a job later; at CPython's
    default threshold, collections that find nothing to free took ~40% of mapping time.
    The older generations stay frequent (every 10): the HTTP stack leaves reference cycles
    that can hold a 2 MB payload until a full collection.
    """
    gc.set_threshold(20_000, 10, 10)


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or more, got {text}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0-65535, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="klaviyo-export", description="Sync segment files into Klaviyo lists.")
    parser.add_argument("--debug", action="store_true", help=f"print tracebacks on errors (also: {DEBUG_ENV}=1)")
    commands = parser.add_subparsers(dest="command", required=True)

    export = commands.add_parser(
        "export", help="export one segment into one Klaviyo list", formatter_class=formatter, epilog=EXPORT_EPILOG,
        description="Read a segment (a CSV, CSV.gz, JSON Lines or Parquet file, or a CDM export folder), map\n"
                    "each row to a Klaviyo profile and import the profiles into one Klaviyo list. A snapshot of\n"
                    "what the export put in the list makes the next run send only what changed (and, in\n"
                    "mirror mode, remove members who left the segment).")
    export.add_argument("--source", help="local path or blob URL of the segment: a file (CSV, JSON Lines, either "
                        "gzipped, or Parquet), or a folder (a CDM export folder holding model.json, or a folder of "
                        "runs: its newest run is read)")
    export.add_argument("--entity", metavar="NAME", help="the entity to read from a CDM folder holding several")
    export.add_argument("--list-id", help="the Klaviyo list to add the profiles to")
    export.add_argument("--email-column",
                        help="the column holding the email address (required unless --identity leaves email out)")
    export.add_argument("--map", action="append", default=[], metavar="COL=FIELD",
                        help="map a column to a profile field: phone_number, first_name, last_name, external_id, "
                             "location.city, properties.NAME, ... (repeatable)")
    export.add_argument("--identity", metavar="KIND,...",
                        help="what identifies a profile: email (the default), phone_number or external_id, or the "
                             "first a row has of a list of them, e.g. email,phone_number (map those fields)")
    export.add_argument("--consent", action="append", default=[], metavar="CHANNEL=COL,AT_COL",
                        help="subscribe rows that consent: CHANNEL is email or sms, COL holds yes/true/1/subscribed "
                             "for consent, AT_COL when it was given (ISO 8601, in the past); never lifts a newer "
                             "opt-out (repeatable)")
    export.add_argument("--phone-region", metavar="CC",
                        help="region for phones written in a local format, e.g. GB or US (default: none, "
                             "only international numbers)")
    export.add_argument("--invalid-fields", choices=INVALID_FIELD_POLICIES, default=None,
                        help="what an invalid optional field (a phone, a name) does: drop it and send the row "
                             "(listed in the rejects file), or reject the row (default: drop)")
    export.add_argument("--encoding", default=None,
                        help="the file's text encoding, any Python codec, e.g. cp1252 for Excel (default: utf-8)")
    export.add_argument("--format", choices=FORMATS, default=None,
                        help="force the format (default: from the name, else from the content)")
    export.add_argument("--columns", metavar="A,B,C",
                        help="column names of a CSV without a header row (its first line is then data)")
    export.add_argument("--mode", choices=MODES, default=None,
                        help="add: add and update members (the default); mirror: also remove members who left "
                             "the segment")
    export.add_argument("--state", metavar="PATH_OR_URL",
                        help="where the export's snapshot (what it has put in the list) lives: a local folder or a "
                             "blob folder URL (default: .exporter-state/LIST_ID/ in the current directory)")
    export.add_argument("--clear-emptied", action="store_true",
                        help="clear in Klaviyo a mapped value this export set at its last run that is empty now "
                             "(null for a standard field, unset for a custom property); nothing else is cleared")
    export.add_argument("--full", action="store_true", help="resend every member, changed or not")
    export.add_argument("--allow-mass-removal", action="store_true",
                        help="let a mirror run remove more than --max-remove-fraction of the list (or empty it)")
    export.add_argument("--max-remove-fraction", type=_fraction, default=None, metavar="F",
                        help="mirror mode removes nothing if it would remove more than this share of the list "
                             "(default: 0.5)")
    export.add_argument("--max-rejected-fraction", type=_fraction, default=None, metavar="F",
                        help="a run that rejects more than this share of the rows it read exits 4: the segment did "
                             f"not get through (default: {DEFAULT_MAX_REJECTED_FRACTION:g})")
    export.add_argument("--config", type=Path, help="exports JSON document (with --export)")
    export.add_argument("--export", dest="export_name", help="name of the export in --config")
    export.add_argument("--force", action="store_true", help="run an export marked \"enabled\": false")
    export.add_argument("--klaviyo-url", default=DEFAULT_BASE_URL,
                        help=f"Klaviyo API base URL; the simulator's, locally (default: {DEFAULT_BASE_URL})")
    export.add_argument("--dry-run", action="store_true",
                        help="read, validate and batch, but send nothing and keep the snapshot as it is; report "
                             "what would be added, updated, left unchanged and removed, with a sample of each in "
                             "a preview file beside the rejects (the key and list are checked when a key is "
                             "available)")
    export.add_argument("--report", type=Path, help="also write the JSON run report to this file")
    export.add_argument("--rejects", type=Path,
                        help="write rejected rows here, always (header only when none); default: beside --report, "
                             "else in the temp folder (its path is printed)")
    export.add_argument("--key-vault-url", help="read the API key from this Key Vault ...")
    export.add_argument("--secret-name", help=f"... secret (instead of ${KEY_ENV})")
    export.add_argument("--engine", choices=ENGINES, default="columnar",
                        help="how rows are mapped: columnar (Arrow kernels for each block of plain CSV lines, the "
                             "row path for any other block) or row (row by row, the reference; same output) "
                             "(default: columnar)")
    export.add_argument("--no-rate-limit", action="store_true", help=argparse.SUPPRESS)  # simulator benchmarks only

    check = commands.add_parser(
        "check-config", help="check an exports document before it is uploaded", formatter_class=formatter,
        description="Check an exports JSON document with the rules the app applies (every problem at once),\n"
                    "and with --online each connection's key and each export's list by read-only Klaviyo calls.\n"
                    "Exit 0 when it is sound, 2 on any problem (each on its own line).")
    check.add_argument("file", type=Path, help="the exports JSON document")
    check.add_argument("--online", action="store_true",
                       help="also try each connection's key (its env variable, or its Key Vault secret) and look up "
                            "each export's list")
    check.add_argument("--klaviyo-url", default=DEFAULT_BASE_URL, help=f"Klaviyo API base URL (default: {DEFAULT_BASE_URL})")
    check.add_argument("--key-vault-url", default=None,
                       help="the vault of connections with a key_vault_secret (default: KEY_VAULT_URL)")

    simulate = commands.add_parser(
        "simulate-klaviyo", help="serve the Klaviyo simulator on loopback", formatter_class=formatter,
        epilog=SIMULATE_EPILOG,
        description="Serve a strict Klaviyo stand-in (bulk profile import, lists, job status, import\n"
                    "errors) with Klaviyo's rate limits and injectable faults.")
    simulate.add_argument("--port", type=_port, default=8765,
                          help="port to listen on; 0 picks a free one (the URL is printed) (default: 8765)")
    simulate.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    simulate.add_argument("--rate-limits", choices=("klaviyo", "off"), default="klaviyo",
                          help="enforce Klaviyo's 10/s and 150/min limits with 429s, or not (default: klaviyo)")
    simulate.add_argument("--fault-rate", type=_fraction, default=0.0,
                          help="share of API requests that fail with a 5xx, a 429 or a dropped connection, "
                               "0-1 (default: 0)")
    simulate.add_argument("--job-delay", type=_seconds, default=0.2,
                          help="seconds a bulk import job takes to complete (default: 0.2)")
    simulate.add_argument("--list", action="append", default=[], metavar="ID",
                          help="a list that exists (repeatable; more with POST /_sim/lists) (default: none)")
    simulate.add_argument("--api-key", action="append", default=[],
                          help="an accepted key (repeatable) (default: any key starting pk_)")
    simulate.add_argument("--forget-profiles", action="store_true", help=argparse.SUPPRESS)  # benchmarks at 50M rows
    add_app_parser(commands, formatter)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # argparse exits 2 on its own usage errors
    debug = args.debug or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    tune_garbage_collector()
    tune_allocator()
    install_everywhere()
    logging.basicConfig(level=logging.WARNING, handlers=[logging.StreamHandler()],
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "simulate-klaviyo":
            return _simulate(args)
        if args.command == "check-config":
            return _check_config(args)
        if args.command == "app":
            return app_command(args)
        return _export_command(args)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except ConfigError as exc:
        return _fail(exc, EXIT_USAGE, debug)
    except (ExportError, TransientError) as exc:
        return _fail(exc, EXIT_FAILED, debug)
    except Exception as exc:  # a bug of ours: still one line, the traceback on request
        return _fail(exc, EXIT_FAILED, debug, f"unexpected {exc.__class__.__name__}: {exc} "
                                               f"(run with --debug for the traceback)")


def _fail(exc: BaseException, code: int, debug: bool, message: str | None = None) -> int:
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    print(f"error: {message or exc}", file=sys.stderr)
    return code


def _export_command(args: argparse.Namespace) -> int:
    plan = _plan(args)
    report, notes = asyncio.run(_export(args, plan))
    sys.stdout.buffer.write(report.to_json() + b"\n")
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    print(summary(report), file=sys.stderr)
    return next(v.exit_code for v in VERDICTS if v.name == report.verdict)


async def _export(args: argparse.Namespace, plan: ExportPlan) -> tuple[RunReport, list[str]]:
    with contextlib.suppress(NotImplementedError, RuntimeError):  # SIGTERM interrupts like Ctrl-C (not on Windows)
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    try:  # a folder, a manifest, an entity: all found before a byte of the segment is read
        if isinstance(plan.source, str) and not is_blob_url(plan.source) and not Path(plan.source).exists():
            if not args.config:
                raise UsageError(f"--source {plan.source}: no such file or folder")
            plan = replace(plan, source=await _config_source(plan.source, plan.entity))
        elif isinstance(plan.source, str) and (folder := folder_of(plan.source)) is not None:
            plan = replace(plan, source=await resolve_folder(folder, plan.entity))
        elif isinstance(plan.source, str) and is_blob_url(plan.source):
            plan = replace(plan, source=await pinned_blob(plan.source))
    except SourceError as exc:
        raise UsageError(str(exc)) from None
    progress = ProgressBar() if sys.stderr.isatty() else None
    notes: list[str] = []
    async with _klaviyo(args, progress) as klaviyo:
        resumption, ledger_file = None, None
        run_id = new_run_id()
        if not args.dry_run and plan.sync is not None:
            ledger_file = _ledger_file(plan.sync.store)
            resumption = await resume_or_start(ledger_file, run_fingerprint(plan))
            run_id = resumption.run_id
            if resumption.note:
                notes.append(resumption.note)
        rejects = RejectsFile(_rejects_path(args, run_id), always=args.rejects is not None)
        if args.dry_run and plan.sync is not None:
            plan = replace(plan, sync=replace(plan.sync, preview=_beside_report(args, f"preview-{run_id}.csv")))
        if args.dry_run:
            if klaviyo is None:
                notes.append(f"dry run without an API key: the key and list {plan.list_id!r} were not checked")
            else:
                await klaviyo.check_list(plan.list_id)  # read-only: a wrong key or list fails the dry run now
        report = await run_export(plan, None if args.dry_run else klaviyo, rejects, run_id=run_id, progress=progress,
                                  ledger=resumption.checkpoint if resumption else None, interruptible=True)
        if ledger_file is not None:
            await settle_ledger(ledger_file, report)
    if progress:
        progress.close()
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_bytes(report.to_json())
    return report, notes


def _ledger_file(store: SnapshotStore) -> LedgerFile:
    """The resume ledger beside the export's snapshot."""
    if isinstance(store, LocalSnapshotStore):
        return LocalLedgerFile(store.folder)
    assert isinstance(store, BlobSnapshotStore)
    location = store.location
    return BlobLedgerFile(replace(location, name=location.name.rpartition("/")[0] + "/" + LEDGER_NAME
                                  if "/" in location.name else LEDGER_NAME))


def _rejects_path(args: argparse.Namespace, run_id: str) -> Path:
    return Path(args.rejects) if args.rejects else _beside_report(args, f"rejects-{run_id}.csv")


def _beside_report(args: argparse.Namespace, name: str) -> Path:
    folder = args.report.parent if args.report else Path(tempfile.gettempdir()) / "klaviyo-export"
    return folder / name


def _plan(args: argparse.Namespace) -> ExportPlan:
    """The run described by the command line, checked before anything is read (usage errors)."""
    _check_url(args.klaviyo_url)
    if args.encoding:
        try:
            codecs.lookup(args.encoding)
        except LookupError:
            raise UsageError(f"--encoding {args.encoding!r} is not a text encoding Python knows "
                             "(e.g. utf-8, cp1252, latin-1)") from None
    if args.config or args.export_name:
        return _plan_from_config(args)
    identity = _identity(args.identity)
    needed = [("--source", args.source), ("--list-id", args.list_id)]
    needed += [("--email-column", args.email_column)] if "email" in identity else []
    missing = [flag for flag, value in needed if not (value and value.strip())]
    if missing:
        raise UsageError(f"missing {', '.join(missing)} (or use --config with --export)")
    mapping = FieldMapping.from_pairs(args.email_column or "", args.map, args.phone_region, args.invalid_fields or "drop",
                                      identity)
    if args.consent:
        mapping = replace(mapping, consent=ConsentMapping.from_flags(args.consent))
    list_id = args.list_id.strip()
    rejected = args.max_rejected_fraction if args.max_rejected_fraction is not None else DEFAULT_MAX_REJECTED_FRACTION
    return ExportPlan("cli", args.source, list_id, mapping, args.encoding or "utf-8", args.format,
                      _columns(args.columns), args.entity, _sync_plan(args, list_id), args.engine, rejected)


def _plan_from_config(args: argparse.Namespace) -> ExportPlan:
    if not (args.config and args.export_name):
        raise UsageError("--config and --export go together")
    from exporter.config import load_config_file

    document = load_config_file(args.config)
    export = document.export(args.export_name)
    sharing = [other.name for other in document.exports.values() if other.list_id == export.list_id
               and other.name != export.name]
    if args.mode == "mirror" and sharing:
        raise UsageError(f"--mode mirror: list {export.list_id!r} of export {export.name!r} is also used by "
                         f"{', '.join(map(repr, sharing))}; a mirrored list must have one export only")
    if not export.enabled and not args.force:
        raise UsageError(f"export {export.name!r} is marked \"enabled\": false in {args.config}; "
                         "pass --force to run it anyway")
    mapping = export.mapping
    if args.identity:
        mapping = replace(mapping, identity=_identity(args.identity))
    if args.consent:
        mapping = replace(mapping, consent=ConsentMapping.from_flags(args.consent))
    if args.phone_region or args.invalid_fields:
        mapping = replace(mapping, phone_region=args.phone_region or mapping.phone_region,
                          invalid_fields=args.invalid_fields or mapping.invalid_fields)
    return ExportPlan(export.name, args.source or export.source, export.list_id, mapping,
                      args.encoding or export.encoding, args.format or export.format,
                      _columns(args.columns) or export.columns, args.entity or export.entity,
                      _sync_plan(args, export.list_id, export.mode, export.full_every, export.max_remove_fraction,
                                 export.clear_emptied),
                      args.engine, args.max_rejected_fraction if args.max_rejected_fraction is not None
                      else export.max_rejected_fraction)


def _sync_plan(args: argparse.Namespace, list_id: str, mode: str = "add", full_every: int = 0,
               max_remove_fraction: float = 0.5, clear_emptied: bool = False) -> SyncPlan:
    """Command-line flags over the export's settings; the snapshot in ``--state``."""
    state = args.state or str(Path(STATE_FOLDER) / re.sub(r"[^A-Za-z0-9_-]", "_", list_id))
    if not is_blob_url(state):
        _check_state_folder(Path(state))
    if is_blob_url(state):
        account_url, container, prefix = blob_folder_address(state if state.endswith("/") else state + "/")
        sas = urlsplit(state).query or None
        store: SnapshotStore = BlobSnapshotStore(BlobLocation(account_url, container, prefix + SNAPSHOT_FILE, sas))
    else:
        store = LocalSnapshotStore(Path(state))
    fraction = args.max_remove_fraction if args.max_remove_fraction is not None else max_remove_fraction
    return SyncPlan(store, args.mode or mode, args.full, full_every, args.allow_mass_removal, fraction,
                    clear_emptied=args.clear_emptied or clear_emptied)


def _check_state_folder(folder: Path) -> None:
    """--state names a folder (made when first needed): not a file, nor a path through one."""
    for place in (folder, *folder.parents):
        if place.exists():
            if not place.is_dir():
                which = "is a file" if place == folder else f"goes through {place}, which is a file"
                raise UsageError(f"--state {folder} {which}; --state names a folder, where the snapshot is kept "
                                 "as snapshot.bin")
            return


def _identity(text: str | None) -> tuple[str, ...]:
    return tuple(kind.strip() for kind in text.split(",")) if text else ("email",)


def _columns(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [name.strip() for name in text.split(",")]
    if not all(names) or len(set(names)) != len(names):
        raise UsageError(f"--columns expects distinct names separated by commas, got {text!r}")
    return names


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 (raises on a port that is not a number)
    except ValueError:
        raise UsageError(f"--klaviyo-url {url!r} has an invalid port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--klaviyo-url must be an http(s) URL such as {DEFAULT_BASE_URL}, got {url!r}")
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise UsageError(f"--klaviyo-url must be the API's base (scheme, host and port only, such as "
                         f"{DEFAULT_BASE_URL} or http://127.0.0.1:8765), not {url!r}: the exporter adds /api/... itself")


async def _config_source(source: str, entity: str | None) -> BlobLocation | SegmentRun:
    """A config export's source is a path in the segments container (as the app reads it),
    unless it is a URL or a local file: find it in the storage account the environment
    names (AZURE_STORAGE_CONNECTION_STRING, or the app's AzureWebJobsStorage settings)."""
    from exporter.azure_storage import storage_from_environment  # only this path needs the SDKs

    environ = dict(os.environ)
    if environ.get("AZURE_STORAGE_CONNECTION_STRING"):
        environ["AzureWebJobsStorage"] = environ["AZURE_STORAGE_CONNECTION_STRING"]
    try:
        storage = storage_from_environment(environ)
    except ConfigError:
        raise UsageError(f"source {source!r} is neither a file nor a URL; set AZURE_STORAGE_CONNECTION_STRING "
                         "to read it from the segments container, or pass --source") from None
    container = environ.get("SEGMENTS_CONTAINER") or "segments"
    try:
        if source.endswith("/"):  # credentials: the environment's, when read
            return await resolve_folder(BlobFolder(storage.blobs.url, container, source), entity)
        return BlobLocation(storage.blobs.url, container, source)
    finally:
        await storage.close()


@contextlib.asynccontextmanager
async def _klaviyo(args: argparse.Namespace, progress: ProgressBar | None) -> AsyncIterator[KlaviyoClient | None]:
    """A client when a key is at hand (a dry run uses it for read-only checks only)."""
    async with contextlib.AsyncExitStack() as stack:
        key: ApiKeySource | None
        if args.key_vault_url or args.secret_name:
            if not (args.key_vault_url and args.secret_name):
                raise UsageError("--key-vault-url and --secret-name go together")
            from exporter.secrets import KeyVaultApiKey, key_vault_client  # the Key Vault SDK only when used

            secrets = await stack.enter_async_context(key_vault_client(args.key_vault_url))
            key = KeyVaultApiKey(secrets, args.secret_name)
        else:
            key = api_key_from_environment()
            if key is None and not args.dry_run:
                raise UsageError(f"no Klaviyo API key: set {KEY_ENV} or pass --key-vault-url and --secret-name")
        if key is None:
            yield None
            return
        on_retry: Callable[[str], None] | None = progress.retrying if progress else None
        if args.no_rate_limit:
            yield await stack.enter_async_context(KlaviyoClient(key, args.klaviyo_url, rate_limits=None,
                                                                on_retry=on_retry))
            return
        from exporter.cli_limits import cli_limiters

        shared, scope = await cli_limiters(key, args.klaviyo_url, args.state, Path(STATE_FOLDER), stack)
        client = await stack.enter_async_context(KlaviyoClient(key, args.klaviyo_url, limiter=shared["import"],
                                                               tier_limiters=dict(shared), on_retry=on_retry))
        client.limits_note = scope.note
        yield client


def _check_config(args: argparse.Namespace) -> int:
    from exporter.check_config import check_offline, check_online

    config, findings = check_offline(args.file)
    if config is not None and args.online:
        _check_url(args.klaviyo_url)
        asyncio.run(check_online(config, findings, args.klaviyo_url,
                                 args.key_vault_url or os.environ.get("KEY_VAULT_URL") or None))
    for line in findings.checked:
        print(f"ok: {line}", file=sys.stderr)
    for problem in findings.problems:
        print(f"problem: {problem}", file=sys.stderr)
    if findings.problems:
        print(f"{args.file}: {plural(len(findings.problems), 'problem')}; fix them before uploading", file=sys.stderr)
        return EXIT_USAGE
    assert config is not None
    print(f"{args.file}: sound ({plural(len(config.connections), 'connection')}, "
          f"{plural(len(config.exports), 'export')}{', checked online' if args.online else ''})", file=sys.stderr)
    return EXIT_OK


def _simulate(args: argparse.Namespace) -> int:
    from exporter.simulator import RunningSimulator, SimulatorConfig

    config = SimulatorConfig(api_keys=set(args.api_key) or None, rate_limits=args.rate_limits == "klaviyo",
                             fault_rate=args.fault_rate, job_delay=args.job_delay,
                             keep_profiles=not args.forget_profiles)

    async def serve() -> None:
        tune_garbage_collector()  # each job's 10,000 parsed profiles are young objects until applied
        try:
            running = await RunningSimulator(config, args.host, args.port).__aenter__()
        except OSError as exc:
            raise ExportError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}; "
                              "pick another --port (0 picks a free one)") from None
        try:
            for list_id in args.list:
                running.simulator.account.add_list(list_id)
            print(f"Klaviyo simulator on {running.url} (rate limits {args.rate_limits})", file=sys.stderr, flush=True)
            await asyncio.Event().wait()
        finally:
            await running.__aexit__(None, None, None)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    return EXIT_OK
