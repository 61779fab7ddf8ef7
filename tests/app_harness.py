"""The function app wired to one test's Azurite containers, queue and simulator: real
azure.functions objects into the decorated functions. The test plays the Functions host's
part of delivering queue messages (``deliver``) and nothing else. Loaded as a pytest plugin
(``conftest.py``), so its ``app`` fixture serves every test module."""

from __future__ import annotations

import uuid
from typing import Any

import azure.functions as func
import orjson
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.functions.queue import QueueMessage
from azure.storage.blob import BlobClient as SyncBlobClient
from azure.storage.blob.aio import BlobServiceClient

import function_app
from exporter.runs.runtime import AppRuntime
from tests.conftest import API_KEY, LIST_ID

SECOND_LIST = "Lst002"


def config(**overrides: Any) -> dict[str, Any]:
    document = {
        "connections": [{"name": "local", "display_name": "Local Klaviyo", "env": "TEST_KLAVIYO_KEY"}],
        "exports": [
            {"name": "vip", "connection": "local", "source": "vip/", "list_id": LIST_ID,
             "mapping": {"email": "email", "first_name": "first_name", "properties.tier": "tier"}},
            {"name": "lapsed", "connection": "local", "source": "lapsed/customers.csv", "list_id": SECOND_LIST,
             "mapping": {"email": "email"}},
            {"name": "paused", "connection": "local", "source": "paused/", "list_id": "Lst003",
             "mapping": {"email": "email"}, "enabled": False},
        ],
    }
    document.update(overrides)
    return document


class App:
    """The function app wired to one test's Azurite containers, queue and simulator."""

    def __init__(self, azurite, sim, budget: float, monkeypatch):
        suffix = uuid.uuid4().hex[:10]
        self.azurite, self.sim = azurite, sim
        self.segments, self.reports, self.queue_name = f"seg{suffix}", f"rep{suffix}", f"runs{suffix}"
        self.config_url = azurite.blob_url(f"cfg{suffix}", "exports.json")
        self.env = {
            "AzureWebJobsStorage": azurite.connection_string, "EXPORTS_CONFIG_URL": self.config_url,
            "KLAVIYO_BASE_URL": sim.url, "KLAVIYO_POLL_SECONDS": "0.02", "SEGMENTS_CONTAINER": self.segments,
            "REPORTS_CONTAINER": self.reports, "RUNS_QUEUE": self.queue_name, "RUN_TIME_BUDGET_SECONDS": str(budget),
            "EXPORTER_LOCAL_MODE": "true",
        }
        monkeypatch.setenv("TEST_KLAVIYO_KEY", API_KEY)
        self.runtime = AppRuntime(self.env)
        monkeypatch.setattr(function_app, "RUNTIME", self.runtime)
        sim.simulator.account.add_list(SECOND_LIST)

    async def put(self, container: str, name: str, data: bytes) -> None:
        async with BlobServiceClient.from_connection_string(self.azurite.connection_string) as service:
            client = service.get_container_client(container)
            if not await client.exists():
                await client.create_container()
            await client.upload_blob(name, data, overwrite=True)

    def blob_client(self, path: str) -> SyncBlobClient:
        """What the SDK-type blob binding hands the function: a client for the dropped blob."""
        return SyncBlobClient.from_connection_string(self.azurite.connection_string, self.segments, path)

    async def set_config(self, document: Any) -> None:
        await self.put(self.config_url.rsplit("/", 2)[1], "exports.json", orjson.dumps(document))
        self.runtime._config = None  # the app rereads its config every few minutes; a test cannot wait

    async def deliver(self, max_messages: int = 50) -> int:
        """Hand every visible runs-queue message to run_worker, as the host would."""
        queue = self.runtime.service().queue
        worker = function_app.run_worker.build().get_user_function()
        handled = 0
        while handled < max_messages:
            try:
                batch = [m async for m in queue.receive_messages(max_messages=1, visibility_timeout=30)]
            except ResourceNotFoundError:
                return handled  # no run was ever accepted: the queue was never created

            if not batch:
                return handled
            message = batch[0]
            await worker(QueueMessage(id=message.id, body=message.content.encode(), dequeue_count=message.dequeue_count))
            await queue.delete_message(message)
            handled += 1
        raise AssertionError("the queue did not drain")


@pytest.fixture
async def app(azurite, simulator, monkeypatch):
    instance = App(azurite, simulator, 1500, monkeypatch)
    await instance.set_config(config())
    yield instance
    await instance.runtime.aclose()


def call(function_builder: Any, *args: Any) -> Any:
    return function_builder.build().get_user_function()(*args)


def post(name: str, params: dict[str, str] | None = None, body: bytes = b"") -> func.HttpRequest:
    return func.HttpRequest("POST", f"https://exporter.example/api/exports/{name}/runs", params=params or {},
                            route_params={"name": name}, body=body)


def get(route: str, **route_params: str) -> func.HttpRequest:
    return func.HttpRequest("GET", f"https://exporter.example/api/{route}", route_params=route_params, body=b"")


async def status_of(name: str, run_id: str) -> dict[str, Any]:
    response = await call(function_app.run_status, get(f"exports/{name}/runs/{run_id}", name=name, run_id=run_id))
    assert response.status_code == 200
    return orjson.loads(response.get_body())


def expected(data: bytes) -> list[str]:
    return [line.split(",")[0] for line in data.decode().splitlines()[1:]]
