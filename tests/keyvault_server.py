"""A local HTTPS server speaking the part of the Key Vault secrets REST API we use.

``GET /secrets/{name}/[{version}]`` and ``PUT /secrets/{name}`` (a new version) with the bearer challenge:
a request without a token gets
``401`` and ``WWW-Authenticate: Bearer authorization=..., resource=...``, as Key Vault
answers, and the real ``azure-keyvault-secrets`` client must then fetch a token from its
credential and retry. TLS comes from a throwaway CA made by ``trustme``.
"""

from __future__ import annotations

import ssl
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import trustme
from aiohttp import web
from azure.core.credentials import AccessToken

TOKEN = "test-bearer-token"


@dataclass
class FakeVault:
    secrets: dict[str, str]
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Authorization)
    faults: list[int] = field(default_factory=list)  # statuses to answer authorized reads with, one each, first
    down: bool = False  # answer every authorized read with 503
    versions: dict[tuple[str, str], str] = field(default_factory=dict)  # (name, version) -> value, as set
    refuse_writes: bool = False  # the identity lacks a role that sets secrets: 403

    async def set_secret(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization")
        self.requests.append((f"PUT {request.path}", auth))
        if auth != f"Bearer {TOKEN}":
            return self._challenge()
        if self.refuse_writes:
            return web.json_response({"error": {"code": "Forbidden", "message": "Caller is not authorized to perform "
                                                "action on resource. Action: setSecret"}}, status=403)
        name, value = request.match_info["name"], (await request.json())["value"]
        version = uuid.uuid4().hex
        self.secrets[name] = value
        self.versions[(name, version)] = value
        return self._secret(request, name, version, value)

    def _challenge(self) -> web.Response:
        return web.json_response(
            {"error": {"code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer token."}},
            status=401,
            headers={"WWW-Authenticate": 'Bearer authorization="https://login.microsoftonline.com/tenant-id", '
                                         'resource="https://vault.azure.net"'})

    @staticmethod
    def _secret(request: web.Request, name: str, version: str, value: str) -> web.Response:
        now = int(time.time())
        return web.json_response({
            "value": value, "id": f"{request.scheme}://{request.host}/secrets/{name}/{version}",
            "attributes": {"enabled": True, "created": now, "updated": now, "recoveryLevel": "Recoverable+Purgeable"},
        })

    async def get_secret(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization")
        self.requests.append((request.path, auth))
        if auth == f"Bearer {TOKEN}" and (self.down or self.faults):
            status = self.faults.pop(0) if self.faults else 503
            return web.json_response({"error": {"code": "ServiceUnavailable", "message": "try later"}}, status=status)
        if "api-version" not in request.query:
            return web.json_response({"error": {"code": "BadParameter", "message": "api-version missing"}}, status=400)
        if auth != f"Bearer {TOKEN}":
            return self._challenge()
        name, version = request.match_info["name"], request.match_info.get("version", "")
        value = self.versions.get((name, version)) if version else self.secrets.get(name)
        if value is None:
            message = f"A secret with (name/id) {name} was not found in this key vault."
            return web.json_response({"error": {"code": "SecretNotFound", "message": message}}, status=404)
        return self._secret(request, name, version or uuid.uuid4().hex, value)

class StaticTokenCredential:
    """The injected credential (in Azure: the managed identity); records the scopes asked for."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    async def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(TOKEN, int(time.time()) + 3600)

    async def close(self) -> None:
        pass

    async def __aenter__(self) -> StaticTokenCredential:
        return self

    async def __aexit__(self, *args: object) -> None:
        pass


async def serve_vault(vault: FakeVault, workdir: Path) -> tuple[web.AppRunner, str, str]:
    """Start the vault on an HTTPS loopback port; returns (runner, vault URL, CA bundle path)."""
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(context)
    ca_path = workdir / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    app = web.Application()
    app.router.add_get("/secrets/{name}/", vault.get_secret)
    app.router.add_get("/secrets/{name}", vault.get_secret)
    app.router.add_get("/secrets/{name}/{version}", vault.get_secret)
    app.router.add_put("/secrets/{name}", vault.set_secret)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"https://127.0.0.1:{port}", str(ca_path)
