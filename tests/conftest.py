"""Shared fixtures: a real Azurite per test session, an in-process Klaviyo simulator per test."""

from __future__ import annotations

import base64
import time
import uuid
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable, Iterator

import orjson
import pytest
import trustme
from azure.core.credentials import AccessToken
from azure.storage.blob.aio import BlobServiceClient

from devtools.azurite import Azurite, start_azurite
from exporter.klaviyo.auth import StaticApiKey
from exporter.klaviyo.client import KlaviyoClient
from exporter.klaviyo.retry import RetryPolicy
from exporter.simulator import RunningSimulator, SimulatorConfig

pytest_plugins = ["tests.app_harness", "tests.manage_harness", "tests.browser"]  # the function app and people calling it

API_KEY = "pk_test_0123456789abcdef"
LIST_ID = "Lst001"
FAST_RETRY = RetryPolicy(max_attempts=6, base_delay=0.02, max_delay=0.2, budget_seconds=30)


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    emulator = start_azurite()
    yield emulator
    emulator.stop()


Upload = Callable[[str, bytes], Awaitable[str]]


@pytest.fixture
async def upload(azurite: Azurite) -> AsyncIterator[Upload]:
    """Uploads bytes to a fresh container in Azurite; returns the blob URL."""
    container = f"t{uuid.uuid4().hex[:12]}"
    async with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        await service.create_container(container)

        async def put(name: str, data: bytes) -> str:
            await service.get_blob_client(container, name).upload_blob(data, overwrite=True)
            return azurite.blob_url(container, name)

        yield put


SimulatorFactory = Callable[..., Awaitable[RunningSimulator]]


@pytest.fixture
async def start_simulator() -> AsyncIterator[SimulatorFactory]:
    """Starts simulators on free ports (list ``LIST_ID`` exists, key ``API_KEY`` accepted)."""
    running: list[RunningSimulator] = []

    async def start(**config: object) -> RunningSimulator:
        settings = {"api_keys": {API_KEY}, "job_delay": 0.05, "seed": 1, **config}
        sim = await RunningSimulator(SimulatorConfig(**settings)).__aenter__()  # type: ignore[arg-type]
        sim.simulator.account.add_list(LIST_ID, "Test list")
        running.append(sim)
        return sim

    yield start
    for sim in running:
        await sim.__aexit__(None, None, None)


@pytest.fixture
async def simulator(start_simulator: SimulatorFactory) -> RunningSimulator:
    return await start_simulator()


def client_for(sim: RunningSimulator, key: str = API_KEY, **kwargs: object) -> KlaviyoClient:
    options = {"retry": FAST_RETRY, **kwargs}
    return KlaviyoClient(StaticApiKey(key), sim.url, **options)  # type: ignore[arg-type]


def write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


class StorageTokenCredential:
    """What a managed identity gives the storage SDK: a bearer token for storage. Azurite
    (``--oauth basic``) checks its claims (issuer, audience, lifetime), not a signature."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    async def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        self.scopes.append(scopes)
        now = int(time.time())
        claims = {"aud": "https://storage.azure.com", "iss": "https://sts.windows.net/00000000-0000-0000-0000-000000000001/",
                  "iat": now - 60, "nbf": now - 60, "exp": now + 3600, "oid": str(uuid.uuid4())}
        token = ".".join(_b64(part) for part in ({"alg": "RS256", "typ": "JWT"}, claims)) + ".c2lnbmF0dXJl"
        return AccessToken(token, now + 3600)

    async def close(self) -> None:
        pass


def _b64(document: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(document)).rstrip(b"=").decode()


@pytest.fixture(scope="session")
def secure_azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Azurite, StorageTokenCredential, str]]:
    """Azurite over HTTPS (a throwaway CA from ``trustme``) taking bearer tokens."""
    workdir = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    cert, key, ca_path = workdir / "cert.pem", workdir / "key.pem", workdir / "ca.pem"
    server.cert_chain_pems[0].write_to_path(str(cert))
    server.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_path))
    emulator = start_azurite(cert=str(cert), key=str(key))
    yield emulator, StorageTokenCredential(), str(ca_path)
    emulator.stop()
