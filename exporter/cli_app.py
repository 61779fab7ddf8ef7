"""``klaviyo-export app …``: the deployed app from a terminal, for the people who run it.

List exports and their last runs, start a run or a preview and follow it to its report,
read a run, and put an export or a connection from a file, all through the app's HTTP API
as the person signed in (``azure-identity``: ``az login``, a managed identity, or
environment credentials; their app roles apply), or with a function key where automation
may act (exports, runs, reports).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from pathlib import Path
from typing import Any

import orjson

from exporter.errors import ConfigError
from exporter.verdict import FAILED, VERDICTS

URL_ENV, KEY_ENV, CLIENT_ID_ENV = "EXPORTER_APP_URL", "EXPORTER_FUNCTION_KEY", "AUTH_CLIENT_ID"
FINISHED = ("succeeded", "partial", "failed", "skipped")


def add_app_parser(commands: Any, formatter: Any) -> None:
    app = commands.add_parser(
        "app", help="the deployed app: exports, runs, reports, and putting exports and connections",
        formatter_class=formatter,
        description="Talk to the deployed app's HTTP API. Signs in with azure-identity (az login) for the\n"
                    "app registration's API, so your app role applies; with a function key in\n"
                    f"${KEY_ENV}, only exports, run and report work (what automation may do).")
    app.add_argument("--url", default=os.environ.get(URL_ENV),
                     help=f"the app's address, e.g. https://func-x.azurewebsites.net (default: ${URL_ENV})")
    app.add_argument("--client-id", default=os.environ.get(CLIENT_ID_ENV),
                     help=f"the app registration's client id, for signing in (default: ${CLIENT_ID_ENV}, which "
                          "azd sets)")
    app.add_argument("--local-principal", metavar="OBJECT_ID:ROLE[,ROLE]",
                     help="act as this principal against an app in local mode (what the platform's sign-in "
                          "would send); never works against Azure")
    actions = app.add_subparsers(dest="action", required=True)
    actions.add_parser("exports", help="every export you may use, with its last run")
    run = actions.add_parser("run", help="start a run (or --dry-run, a preview) of an export")
    run.add_argument("name")
    run.add_argument("--dry-run", action="store_true", help="a preview: read and plan, send nothing")
    run.add_argument("--full", action="store_true", help="resend every member, not only changes")
    run.add_argument("--follow", action="store_true", help="follow it to its report; exit with its verdict's code")
    run.add_argument("--poll-seconds", type=float, default=2.0, help=argparse.SUPPRESS)
    report = actions.add_parser("report", help="a run's state, and its report once finished")
    report.add_argument("name")
    report.add_argument("run_id")
    put_export = actions.add_parser("put-export", help="create or replace an export from a JSON file")
    put_export.add_argument("name")
    put_export.add_argument("file", type=Path, help="the export's settings, as in exports.json")
    put_export.add_argument("--if-match", help="the ETag you read it with (default: replace what is stored)")
    put_connection = actions.add_parser("put-connection", help="create or change a connection (admins)")
    put_connection.add_argument("name")
    put_connection.add_argument("file", type=Path,
                                help='display_name, users and "privacy_acknowledged": true (never the key)')
    put_connection.add_argument("--api-key-env", metavar="VAR",
                                help="environment variable holding the Klaviyo key (default: asked for on a "
                                     "terminal, without echo; none: the stored key stays)")
    put_connection.add_argument("--if-match", help="the ETag you read it with (default: replace what is stored)")


def app_command(args: argparse.Namespace) -> int:
    return asyncio.run(_app(args))


async def _app(args: argparse.Namespace) -> int:
    import aiohttp

    from exporter.app_client import AppClient

    if not args.url:
        raise ConfigError(f"give the app's address with --url or ${URL_ENV} (azd: FUNCTION_APP_URL)")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        credential, auth = _auth(args)
        try:
            client = AppClient(args.url, auth, session)
            return await _act(client, args)
        finally:
            if credential is not None:
                await credential.close()


def _auth(args: argparse.Namespace) -> tuple[Any, Any]:
    from exporter.app_client import function_key_auth, local_principal_auth, token_auth

    if args.local_principal:
        from exporter.manage.principal import encode

        object_id, _, roles = args.local_principal.partition(":")
        return None, local_principal_auth(encode(object_id, tuple(r for r in roles.split(",") if r)))
    key = os.environ.get(KEY_ENV)
    if key and args.action in ("exports", "run", "report"):
        return None, function_key_auth(key)
    if not args.client_id:
        raise ConfigError(f"signing in needs the app registration's client id: --client-id or ${CLIENT_ID_ENV} "
                          f"(or set ${KEY_ENV} to use a function key for exports, run and report)")
    from azure.identity.aio import DefaultAzureCredential

    credential = DefaultAzureCredential()
    return credential, token_auth(credential, f"api://{args.client_id}/.default")


async def _act(client: Any, args: argparse.Namespace) -> int:
    if args.action == "exports":
        _print_exports(await client.exports())
        return 0
    if args.action == "report":
        _print_json(await client.status(args.name, args.run_id))
        return 0
    if args.action == "run":
        started = await client.start(args.name, args.dry_run, args.full)
        print(f"started run {started['run_id']} of {args.name}" + (" (a preview)" if args.dry_run else ""),
              file=sys.stderr)
        if not args.follow:
            _print_json(started)
            return 0
        state = await client.follow(args.name, started["run_id"], _progress, args.poll_seconds)
        print(file=sys.stderr)
        _print_json(state)
        return _exit_code(state)
    body = _read_json(args.file)
    if args.action == "put-connection":
        if "api_key" in body:
            raise ConfigError(f"{args.file} holds an 'api_key': keys never go in files; give it with --api-key-env "
                              "or at the prompt")
        key = _api_key(args.api_key_env)
        if key:
            body["api_key"] = key
    kind = "connections" if args.action == "put-connection" else "exports"
    stored, etag = await client.put(kind, args.name, body, args.if_match)
    for warning in stored.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    _print_json(stored)
    print(f"ETag: {etag}", file=sys.stderr)
    return 0


def _api_key(variable: str | None) -> str | None:
    if variable:
        value = os.environ.get(variable, "").strip()
        if not value:
            raise ConfigError(f"environment variable {variable} is not set or empty")
        return value
    if sys.stdin.isatty():
        return getpass.getpass("Klaviyo private API key (empty: keep the stored one): ").strip() or None
    return None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        body = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ConfigError(f"{path} must hold a JSON object")
    return body


def _progress(state: dict[str, Any]) -> None:
    progress = state.get("progress") or {}
    counts = state.get("counts") or {}
    parts = [f"{state.get('status')}", f"rows read {progress.get('rows_read', counts.get('rows_read', 0)):,}",
             f"jobs accepted {state.get('jobs', 0)}"]
    print("\r" + " · ".join(parts) + " " * 8, end="", file=sys.stderr, flush=True)


def _exit_code(state: dict[str, Any]) -> int:
    report = state.get("report") or {}
    by_name = {v.name: v.exit_code for v in VERDICTS}
    if report.get("verdict") in by_name:
        return by_name[report["verdict"]]
    return FAILED.exit_code if state.get("status") == "failed" else 0


def _print_exports(exports: list[dict[str, Any]]) -> None:
    print(f"{'EXPORT':<24} {'ENABLED':<8} {'LIST':<10} {'LAST RUN':<10} {'FINISHED':<26} SENT/REJECTED")
    for export in exports:
        last = export.get("last_run") or {}
        counts = last.get("counts") or {}
        print(f"{export['name']:<24} {'yes' if export.get('enabled') else 'no':<8} {export.get('list_id', ''):<10} "
              f"{last.get('status', '-'):<10} {last.get('finished_at') or '-':<26} "
              f"{counts.get('sent', '-')}/{counts.get('rejected', '-')}")


def _print_json(value: Any) -> None:
    print(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())
