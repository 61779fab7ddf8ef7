"""``python -m exporter``: run an export, or serve the Klaviyo simulator.

The command line is a contract (DESIGN.md): exit 0 when the run succeeded (``partial``
included: the rejects are listed), 1 with a one-line reason when it failed, 2 on usage
errors. The report goes to stdout as JSON; progress and the summary go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import AsyncIterator, Sequence

from exporter.azure_storage import segment_path, storage_from_environment
from exporter.errors import ConfigError, ExportError, TransientError
from exporter.klaviyo.auth import ApiKeySource
from exporter.klaviyo.client import DEFAULT_BASE_URL, KlaviyoClient
from exporter.klaviyo.limits import BULK_IMPORT_RATE
from exporter.logsafe import install_everywhere
from exporter.mapping import FieldMapping
from exporter.pipeline import ExportPlan, run_export
from exporter.rejects import RejectsFile
from exporter.report import Counts, RunReport, new_run_id
from exporter.secrets import KEY_ENV, KeyVaultApiKey, api_key_from_environment, key_vault_client
from exporter.sources import BlobLocation, is_blob_url


def tune_garbage_collector() -> None:
    """Collect the youngest generation every 20,000 allocations instead of 700.

    A run allocates a few small dicts per row and frees them a job later; at CPython's
    default threshold, collections that find nothing to free took ~40% of mapping time.
    The older generations stay frequent (every 10): the HTTP stack leaves reference cycles
    that can hold a 2 MB payload until a full collection.
    """
    gc.set_threshold(20_000, 10, 10)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m exporter", description="Sync segment files into Klaviyo lists.")
    commands = parser.add_subparsers(dest="command", required=True)

    export = commands.add_parser("export", help="export one segment into one Klaviyo list")
    export.add_argument("--source", help="local path or blob URL (CSV, CSV.gz, JSONL, JSONL.gz)")
    export.add_argument("--list-id", help="Klaviyo list id")
    export.add_argument("--email-column", help="the column holding the email address")
    export.add_argument("--map", action="append", default=[], metavar="COL=FIELD",
                        help="map a column to a profile field (phone_number, first_name, properties.NAME, ...)")
    export.add_argument("--config", type=Path, help="exports JSON document (with --export)")
    export.add_argument("--export", dest="export_name", help="name of the export in --config")
    export.add_argument("--klaviyo-url", default=DEFAULT_BASE_URL, help="Klaviyo API base URL (the simulator's, locally)")
    export.add_argument("--dry-run", action="store_true", help="read, validate and batch, but send nothing")
    export.add_argument("--report", type=Path, help="write the JSON run report here")
    export.add_argument("--rejects", type=Path, help="write rejected rows here (default: beside the report)")
    export.add_argument("--key-vault-url", help="read the API key from this Key Vault ...")
    export.add_argument("--secret-name", help=f"... secret (instead of ${KEY_ENV})")
    export.add_argument("--no-rate-limit", action="store_true", help=argparse.SUPPRESS)  # simulator benchmarks only

    simulate = commands.add_parser("simulate-klaviyo", help="serve the Klaviyo simulator on loopback")
    simulate.add_argument("--port", type=int, default=8765)
    simulate.add_argument("--host", default="127.0.0.1")
    simulate.add_argument("--rate-limits", choices=("klaviyo", "off"), default="klaviyo")
    simulate.add_argument("--fault-rate", type=float, default=0.0, help="share of API requests that fail (0-1)")
    simulate.add_argument("--job-delay", type=float, default=0.2, help="seconds a bulk import job takes")
    simulate.add_argument("--list", action="append", default=[], metavar="ID", help="a list that exists (repeatable)")
    simulate.add_argument("--api-key", action="append", default=[], help="accepted key (default: any pk_...)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tune_garbage_collector()
    install_everywhere()
    handler = logging.StreamHandler()
    logging.basicConfig(level=logging.WARNING, handlers=[handler], format="%(levelname)s %(name)s: %(message)s")
    if args.command == "simulate-klaviyo":
        return _simulate(args)
    try:
        report = asyncio.run(_export(args))
    except (ExportError, TransientError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    sys.stdout.buffer.write(report.to_json() + b"\n")
    print(_summary(report), file=sys.stderr)
    return 1 if report.status == "failed" else 0


async def _export(args: argparse.Namespace) -> RunReport:
    plan = _plan(args)
    if args.config and not args.source and isinstance(plan.source, str):
        plan = replace(plan, source=await _config_source(plan.source))
    run_id = new_run_id()
    report_dir = args.report.parent if args.report else Path(".")
    rejects = RejectsFile(args.rejects or report_dir / f"rejects-{run_id}.csv")
    progress = _ProgressBar() if sys.stderr.isatty() else None
    async with _klaviyo(args) as klaviyo:
        report = await run_export(plan, klaviyo, rejects, run_id=run_id, progress=progress)
    if progress:
        progress.close()
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_bytes(report.to_json())
    return report


def _plan(args: argparse.Namespace) -> ExportPlan:
    if args.config or args.export_name:
        if not (args.config and args.export_name):
            raise ConfigError("--config and --export go together")
        from exporter.config import load_config_file

        export = load_config_file(args.config).export(args.export_name)
        return ExportPlan(export.name, args.source or export.source, export.list_id, export.mapping)
    missing = [flag for flag, value in (("--source", args.source), ("--list-id", args.list_id),
                                        ("--email-column", args.email_column)) if not value]
    if missing:
        raise ConfigError(f"missing {', '.join(missing)} (or use --config with --export)")
    return ExportPlan("cli", args.source, args.list_id, FieldMapping.from_pairs(args.email_column, args.map))


async def _config_source(source: str) -> str | BlobLocation:
    """A config export's source is a path in the segments container (as the app reads it),
    unless it is a URL or a local file: find it in the storage account the environment
    names (AZURE_STORAGE_CONNECTION_STRING, or the app's AzureWebJobsStorage settings)."""
    if is_blob_url(source) or Path(source).exists():
        return source
    environ = dict(os.environ)
    if environ.get("AZURE_STORAGE_CONNECTION_STRING"):
        environ["AzureWebJobsStorage"] = environ["AZURE_STORAGE_CONNECTION_STRING"]
    try:
        storage = storage_from_environment(environ)
    except ConfigError:
        raise ConfigError(f"source {source!r} is neither a file nor a URL; set AZURE_STORAGE_CONNECTION_STRING "
                          "to read it from the segments container, or pass --source") from None
    container = environ.get("SEGMENTS_CONTAINER") or "segments"
    try:
        name = await segment_path(storage.blobs, container, source)
        return BlobLocation(storage.blobs.url, container, name)  # credential: the environment's, when read
    finally:
        await storage.close()


@contextlib.asynccontextmanager
async def _klaviyo(args: argparse.Namespace) -> AsyncIterator[KlaviyoClient | None]:
    if args.dry_run:
        yield None
        return
    async with contextlib.AsyncExitStack() as stack:
        key: ApiKeySource | None
        if args.key_vault_url or args.secret_name:
            if not (args.key_vault_url and args.secret_name):
                raise ConfigError("--key-vault-url and --secret-name go together")
            secrets = await stack.enter_async_context(key_vault_client(args.key_vault_url))
            key = KeyVaultApiKey(secrets, args.secret_name)
        else:
            key = api_key_from_environment()
            if key is None:
                raise ConfigError(f"no Klaviyo API key: set {KEY_ENV} or pass --key-vault-url and --secret-name")
        limits = None if args.no_rate_limit else BULK_IMPORT_RATE
        yield await stack.enter_async_context(KlaviyoClient(key, args.klaviyo_url, rate_limits=limits))


class _ProgressBar:
    """One self-overwriting stderr line, redrawn at most ten times a second."""

    def __init__(self) -> None:
        self._last = 0.0
        self._started = time.monotonic()

    def __call__(self, counts: Counts) -> None:
        now = time.monotonic()
        if now - self._last < 0.1:
            return
        self._last = now
        rate = counts.rows_read / max(now - self._started, 1e-6)
        sys.stderr.write(f"\r{counts.rows_read:>12,} rows read  {counts.sent:>12,} sent  "
                         f"{counts.rejected:>8,} rejected  {rate:>10,.0f} rows/s")
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\n")


def _summary(report: RunReport) -> str:
    c = report.counts
    verb = "would send" if report.dry_run else "sent"
    text = (f"{report.status}: {c.rows_read:,} rows read, {c.sent:,} {verb}, {c.rejected:,} rejected, "
            f"{c.duplicates:,} duplicates, {len(report.jobs)} Klaviyo job(s)")
    if report.rejects:
        text += f"; rejects in {report.rejects}"
    if report.error:
        text += f"; error: {report.error}"
    return text


def _simulate(args: argparse.Namespace) -> int:
    from exporter.simulator import RunningSimulator, SimulatorConfig

    config = SimulatorConfig(api_keys=set(args.api_key) or None, rate_limits=args.rate_limits == "klaviyo",
                             fault_rate=args.fault_rate, job_delay=args.job_delay)

    async def serve() -> None:
        async with RunningSimulator(config, args.host, args.port) as running:
            for list_id in args.list:
                running.simulator.account.add_list(list_id)
            print(f"Klaviyo simulator on {running.url} (rate limits {args.rate_limits})", file=sys.stderr, flush=True)
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    return 0
