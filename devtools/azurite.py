"""Starts Azurite (the Azure Storage emulator, npm ``azurite``) on free loopback ports.

Never assumes 10000-10002 are free; the caller gets a connection string with explicit
endpoints for the ports actually used. ``--skipApiVersionCheck`` lets current storage
SDKs talk to it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "devstoreaccount1"
# Azurite's documented, public development key (not a secret).
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def azurite_command() -> str:
    for candidate in (os.environ.get("AZURITE_BIN"), str(ROOT / ".tools/node_modules/.bin/azurite"), shutil.which("azurite")):
        if candidate and Path(candidate).exists():
            return candidate
    raise RuntimeError("Azurite not found: run scripts/bootstrap (npm install --prefix .tools azurite)")


@dataclass
class Azurite:
    blob_port: int
    queue_port: int
    table_port: int
    process: subprocess.Popen[bytes]
    workdir: str
    scheme: str = "http"  # https when started with a certificate (and then OAuth bearer tokens work)

    @property
    def blob_endpoint(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.blob_port}/{ACCOUNT}"

    @property
    def queue_endpoint(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.queue_port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol={self.scheme};AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={self.blob_endpoint};"
            f"QueueEndpoint={self.queue_endpoint};"
            f"TableEndpoint={self.scheme}://127.0.0.1:{self.table_port}/{ACCOUNT};"
        )

    @property
    def credential(self) -> dict[str, str]:
        return {"account_name": ACCOUNT, "account_key": ACCOUNT_KEY}

    def blob_url(self, container: str, name: str) -> str:
        return f"{self.blob_endpoint}/{container}/{name}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_azurite(timeout: float = 30.0, cert: str | None = None, key: str | None = None) -> Azurite:
    """With ``cert`` and ``key`` (PEM paths), Azurite serves HTTPS and accepts OAuth bearer
    tokens (``--oauth basic``: it checks a token's claims, not its signature), as storage
    does for a managed identity."""
    workdir = tempfile.mkdtemp(prefix="azurite-")
    ports = [free_port(), free_port(), free_port()]
    secure = ["--cert", cert, "--key", key, "--oauth", "basic"] if cert and key else []
    process = subprocess.Popen(
        [azurite_command(), "--silent", "--skipApiVersionCheck", "--disableTelemetry", "--loose",
         "--location", workdir, "--blobHost", "127.0.0.1", "--queueHost", "127.0.0.1", "--tableHost", "127.0.0.1",
         "--blobPort", str(ports[0]), "--queuePort", str(ports[1]), "--tablePort", str(ports[2]), *secure],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    azurite = Azurite(ports[0], ports[1], ports[2], process=process, workdir=workdir,
                      scheme="https" if secure else "http")
    deadline = time.monotonic() + timeout
    for port in ports:
        while not _listening(port):
            if process.poll() is not None or time.monotonic() > deadline:
                error = process.stderr.read().decode(errors="replace") if process.stderr else ""
                azurite.stop()
                raise RuntimeError(f"Azurite did not start on ports {ports}: {error.strip()[:500]}")
            time.sleep(0.05)
    return azurite


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


async def upload(azurite: Azurite, container: str, name: str, data: bytes | BinaryIO) -> str:
    """Put a segment into Azurite (creating the container); returns its blob URL."""
    from azure.storage.blob.aio import BlobServiceClient

    async with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        client = service.get_container_client(container)
        if not await client.exists():
            await client.create_container()
        await client.upload_blob(name, data, overwrite=True, max_concurrency=4)
    return azurite.blob_url(container, name)
