"""What an operator sees: quiet SDK loggers, one structured record per run event whose
fields the alert and workbook KQL really read, progress in the status API, and no side
effects from a refused request. Azurite for storage, the simulator for Klaviyo."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from azure.storage.blob.aio import BlobServiceClient
from azure.storage.queue.aio import QueueServiceClient
from pycep import BicepParser

import function_app
from devtools.sample import segment_bytes
from exporter.klaviyo.limits import BULK_IMPORT_RATE
from exporter.klaviyo.ratelimit import rate_floor_seconds
from exporter.runs.events import NOISY_LOGGERS, PREFIX
from tests.app_harness import App, call, config, get, post, status_of

MONITORING = Path(__file__).resolve().parent.parent / "infra" / "modules" / "monitoring.bicep"


def run_records(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [orjson.loads(r.getMessage()[len(PREFIX):]) for r in caplog.records if r.getMessage().startswith(PREFIX)]


async def test_no_sdk_info_records_reach_the_host_during_a_run(app, caplog) -> None:
    caplog.set_level(logging.INFO)  # the worker forwards whatever the root logger lets through
    await app.put(app.segments, "vip/a.csv", segment_bytes(50))
    await call(function_app.start_run, post("vip"))
    assert await app.deliver() == 1
    noisy = [r for r in caplog.records if r.levelno < logging.WARNING
             and any(r.name == n or r.name.startswith(n + ".") for n in NOISY_LOGGERS)]
    assert noisy == [], f"{len(noisy)} SDK records, first from {noisy[0].name}"
    assert run_records(caplog)  # while the app's own run events still arrive


async def test_each_run_event_is_one_structured_record_without_row_values(azurite, simulator, monkeypatch, caplog) -> None:
    caplog.set_level(logging.INFO)
    app = App(azurite, simulator, budget=0, monkeypatch=monkeypatch)  # two legs: a hand-over
    await app.set_config(config())
    await app.put(app.segments, "vip/big.csv", segment_bytes(12_000, bad_every=100))
    answer = orjson.loads((await call(function_app.start_run, post("vip"))).get_body())
    await app.deliver()
    await app.runtime.aclose()
    records = [r for r in run_records(caplog) if r["run_id"] == answer["run_id"]]
    events = [r["event"] for r in records]
    assert events[0] == "started" and events[-1] == "finished" and set(events[1:-1]) == {"handover"}
    final = records[-1]
    assert final["status"] == "partial" and final["export"] == "vip" and final["trigger"] == "http"
    assert final["rows_read"] == 12_000 == final["sent"] + final["rejected"] + final["duplicates"] + final["unchanged"]
    assert final["klaviyo_jobs"] == 2 and final["leg"] == len(events) - 2 and final["duration_s"] > 0
    assert {"profiles_per_s", "throttled_429s", "error", "dry_run"} <= set(final)
    assert "@" not in caplog.text  # no email (nor any row value) in any record


async def test_the_alert_and_workbook_read_fields_a_failed_run_really_carries(app, monkeypatch, caplog) -> None:
    caplog.set_level(logging.INFO)
    await app.put(app.segments, "vip/a.csv", segment_bytes(10))
    answer = orjson.loads((await call(function_app.start_run, post("vip"))).get_body())
    monkeypatch.delenv("TEST_KLAVIYO_KEY")
    await app.deliver()
    [failed] = [r for r in run_records(caplog) if r["run_id"] == answer["run_id"] and r["event"] == "failed"]
    finished = {**failed, "event": "finished"}  # a finished record has the same fields
    tree = BicepParser().parse(file_path=MONITORING)
    prelude = tree["variables"]["runEvents"]["value"]
    assert f'message startswith "{PREFIX}"' in prelude and f"substring(message, {len(PREFIX)})" in prelude
    alert = orjson.dumps(tree["resources"]["failedRunsAlert"]).decode()
    assert 'tostring(run.status) == \\"failed\\"' in alert and failed["status"] == "failed"
    workbook = orjson.dumps(tree["variables"]["workbookQueries"]).decode()
    named = set(re.findall(r"run\.([a-z_0-9]+)", alert + workbook))
    assert named and named <= set(failed) | set(finished), f"KQL names fields no record has: {named - set(failed)}"


async def test_a_running_runs_status_shows_its_progress(azurite, simulator, monkeypatch) -> None:
    app = App(azurite, simulator, budget=0, monkeypatch=monkeypatch)
    await app.set_config(config())
    await app.put(app.segments, "vip/big.csv", segment_bytes(25_000))
    answer = orjson.loads((await call(function_app.start_run, post("vip"))).get_body())
    queue = app.runtime.service().queue
    [message] = [m async for m in queue.receive_messages(max_messages=1)]
    worker = function_app.run_worker.build().get_user_function()
    from azure.functions.queue import QueueMessage

    await worker(QueueMessage(id=message.id, body=message.content.encode(), dequeue_count=1))  # one leg: hands over
    state = await status_of("vip", answer["run_id"])
    await app.runtime.aclose()
    progress = state["progress"]
    assert state["status"] == "continuing" and progress["leg"] == 0
    assert progress["rows_read"] > 0 and progress["profiles_accepted"] == 10_000 and progress["jobs_accepted"] == 1
    assert progress["source_size"] == len(segment_bytes(25_000)) and 0 < progress["bytes_read"] <= progress["source_size"]
    assert abs(progress["expected_rows"] - 25_000) < 2_500 and "earliest_finish" in progress
    assert progress["profiles_imported"] <= progress["profiles_accepted"]


def test_the_rate_limit_floor_is_klaviyos_windows() -> None:
    assert [rate_floor_seconds(n, BULK_IMPORT_RATE) for n in (0, 1, 10, 11, 100, 151)] == [0.0, 0.0, 0.0, 1.0, 9.0, 60.0]


@pytest.mark.parametrize("request_", [post("nope"), post("vip", body=b'{"source": "../x.csv"}'),
                                      post("vip", body=b'{"source": "vip/absent.csv"}')])
async def test_a_refused_request_changes_nothing(azurite, simulator, monkeypatch, request_) -> None:
    app = App(azurite, simulator, 1500, monkeypatch)
    await app.set_config(config())
    response = await call(function_app.start_run, request_)
    missing = await call(function_app.run_status, get("exports/nope/runs/x", name="nope", run_id="x"))
    await app.runtime.aclose()
    assert response.status_code in (400, 404) and missing.status_code == 404
    async with BlobServiceClient.from_connection_string(azurite.connection_string) as blobs:
        containers = [c.name async for c in blobs.list_containers()]
    async with QueueServiceClient.from_connection_string(azurite.connection_string) as queues:
        names = [q.name async for q in queues.list_queues()]
    assert app.reports not in containers and app.queue_name not in names
