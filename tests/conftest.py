"""Shared fixtures: a real Azurite per test session, an in-process Klaviyo simulator per test."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from azure.storage.blob.aio import BlobServiceClient

from devtools.azurite import Azurite, start_azurite
from exporter.klaviyo.auth import StaticApiKey
from exporter.klaviyo.client import KlaviyoClient
from exporter.klaviyo.retry import RetryPolicy
from exporter.simulator import RunningSimulator, SimulatorConfig

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
