"""The function app tried as an attacker and as a flaky cloud would try it: sources outside
an export's reach, odd blob names and run ids, a replaced file, an edited export, a run
that never ends, a redelivered message, a Key Vault outage, env connections in Azure.

Real pieces throughout: Azurite, the simulator, the decorated functions."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from azure.functions.queue import QueueMessage
from azure.storage.blob.aio import BlobServiceClient

import function_app
from devtools.sample import segment_bytes
from exporter.errors import TransientError
from exporter.pipeline import PipelineOptions
from tests.app_harness import SECOND_LIST, App, call, config, expected, get, post, status_of
from tests.conftest import LIST_ID

ROOT = Path(__file__).resolve().parent.parent
HOST_SECRETS = b'{"masterKey": {"name": "master", "value": "SuperSecretHostMasterKeyValue0123456789=="}}\n'


async def start(app: App, body: bytes = b"") -> dict[str, Any]:
    response = await call(function_app.start_run, post("vip", body=body))
    assert response.status_code == 202, response.get_body()
    return orjson.loads(response.get_body())


async def receive(app: App) -> Any:
    queue = app.runtime.service().queue
    [message] = [m async for m in queue.receive_messages(max_messages=1, visibility_timeout=300)]
    return message


async def handle(app: App, message: Any, dequeue_count: int = 1) -> None:
    worker = function_app.run_worker.build().get_user_function()
    await worker(QueueMessage(id=message.id, body=message.content.encode(), dequeue_count=dequeue_count))
    await app.runtime.service().queue.delete_message(message)


async def rewrite_state(app: App, run_id: str, **changes: Any) -> None:
    """Edit a run's stored state, as time passing (or another worker) would have."""
    store = app.runtime.service().store
    state = await store.load_state("vip", run_id)
    assert state is not None
    blob = store.container.get_blob_client(f"vip/{run_id}/state.json")
    document = {**state.__dict__, **changes}
    await blob.upload_blob(orjson.dumps(document), overwrite=True)


# ---- 1. a source stays inside its export's reach ---------------------------------------

@pytest.mark.parametrize("source, rule", [
    ("../azure-webjobs-secrets/app/host.json", "'..' path segments"),
    ("../other/leads.csv", "'..' path segments"),
    ("vip/../lapsed/customers.csv", "'..' path segments"),
    ("vip/./a.csv", "'.' or '..' path segments"),
    ("vip//a.csv", "empty, '.' or '..'"),
    ("vip\\..\\lapsed\\customers.csv", "backslashes"),
    ("vip/%2e%2e/%2E%2E/other/leads.csv", "percent-encoded"),
    ("vip%2f..%2fother/leads.csv", "percent-encoded"),
    ("vip/a\nb.csv", "control"),
    ("vip/a\u202eb.csv", "control"),
    ("https://evil.example/vip/a.csv", "not a URL"),
    ("/vip/a.csv", "not a URL or an absolute path"),
    ("lapsed/customers.csv", "export 'vip' may only read under 'vip/'"),
    ("vip/", "empty, '.' or '..'"),
    ("", "non-empty"),
])
async def test_a_source_outside_the_exports_reach_is_refused_with_the_rule(app, source: str, rule: str) -> None:
    await app.put("azure-webjobs-secrets", "app/host.json", HOST_SECRETS)
    await app.put(app.segments, "lapsed/customers.csv", segment_bytes(5))
    response = await call(function_app.start_run, post("vip", body=orjson.dumps({"source": source})))
    assert response.status_code == 400
    error = orjson.loads(response.get_body())["error"]
    assert rule in error
    assert "SuperSecret" not in error and "masterKey" not in error
    assert await app.deliver() == 0 and app.sim.simulator.stats.requests == 0


async def test_a_blob_event_outside_the_reach_is_logged_and_skipped(app, caplog) -> None:
    service = app.runtime.service()
    assert await service.segment_dropped(f"{app.segments}/vip/../lapsed/customers.csv") == []
    assert await service.segment_dropped(f"{app.segments}/vip/a\x00.csv") == []
    assert await service.store.latest("vip") is None and await service.store.latest("lapsed") is None
    assert "blob event ignored: the source may not contain empty, '.' or '..' path segments" in caplog.text


async def test_an_exports_document_cannot_bind_outside_the_container(app) -> None:
    broken = config()
    broken["exports"][0]["source"] = "../azure-webjobs-secrets/"
    await app.set_config(broken)
    response = await call(function_app.start_run, post("vip"))
    assert response.status_code == 500
    assert any("'..' path segments" in p for p in orjson.loads(response.get_body())["problems"])


async def test_a_forged_queue_message_for_another_container_reads_nothing(app, caplog) -> None:
    await app.put("azure-webjobs-secrets", "app/host.json", HOST_SECRETS)
    forged = {"run_id": "20261125T000000Z-deadbeef", "export": "vip", "source": "../azure-webjobs-secrets/app/host.json"}
    worker = function_app.run_worker.build().get_user_function()
    await worker(QueueMessage(id="m1", body=orjson.dumps(forged), dequeue_count=1))
    await worker(QueueMessage(id="m2", body=orjson.dumps({**forged, "run_id": "../../x"}), dequeue_count=1))
    assert "message for an unknown run dropped" in caplog.text and "malformed runs-queue message" in caplog.text
    assert "SuperSecret" not in caplog.text and app.sim.simulator.stats.requests == 0


# ---- 2. blob names reach exactly that blob -----------------------------------------------

@pytest.mark.parametrize("name", ["vip/export#2.csv", "vip/what?.csv", "vip/50%25 off.csv", "vip/Ünïcødé name.csv",
                                  "vip/a+b&c=d.csv"])
async def test_odd_blob_names_reach_exactly_that_blob(app, name: str) -> None:
    wanted, decoy = segment_bytes(40, seed=1), segment_bytes(30, seed=2)
    await app.put(app.segments, "vip/50% off.csv", decoy)  # what "%25" would decode to
    # The dropped file is written last: a blob event runs its folder's newest file (within the
    # same second, the greater name, which each of these is).
    await app.put(app.segments, name, wanted)
    await call(function_app.segment_dropped, app.blob_client(name))
    assert await app.deliver() == 1
    assert app.sim.simulator.account.member_emails(LIST_ID) == expected(wanted)


# ---- 3. no segment content in errors, state, reports or logs -------------------------------

async def test_a_segment_without_a_header_is_not_echoed_anywhere(app, caplog) -> None:
    await app.put(app.segments, "vip/headless.csv", b"ann.secret@example.com,Ann,gold\nbob@example.com,Bob,silver\n")
    answer = await start(app)
    await app.deliver()
    state = await status_of("vip", answer["run_id"])
    assert state["status"] == "failed"
    assert "first row of the segment looks like data" in state["report"]["error"]
    everything = orjson.dumps(state).decode() + caplog.text
    assert "ann.secret" not in everything and "gold" not in everything


# ---- 5. env connections are for local runs only -------------------------------------------

async def test_an_env_connection_is_refused_outside_local_mode(azurite, simulator, monkeypatch) -> None:
    app = App(azurite, simulator, 1500, monkeypatch)
    app.runtime._env.pop("EXPORTER_LOCAL_MODE")
    await app.set_config(config())
    await app.put(app.segments, "vip/a.csv", segment_bytes(5))
    answer = await start(app)
    await app.deliver()
    state = await status_of("vip", answer["run_id"])
    await app.runtime.aclose()
    assert state["status"] == "failed" and "only local runs allow (EXPORTER_LOCAL_MODE=true" in state["report"]["error"]
    assert simulator.simulator.stats.requests == 0


@pytest.mark.parametrize("variable", ["AzureWebJobsStorage", "AZURE_STORAGE_CONNECTION_STRING", "KEY_VAULT_URL",
                                      "PATH", "AzureWebJobsStorage_KLAVIYO"])
async def test_an_env_connection_cannot_name_the_apps_own_settings(app, variable: str) -> None:
    document = config()
    document["connections"][0]["env"] = variable
    await app.set_config(document)
    response = await call(function_app.start_run, post("vip"))
    assert response.status_code == 500
    assert any("'env' must name a variable meant for a Klaviyo key" in p for p in orjson.loads(response.get_body())["problems"])


# ---- 6. odd run ids are 404 -----------------------------------------------------------------

@pytest.mark.parametrize("run_id", [".", "..", "../lapsed/20261125T000000Z-deadbeef", "x" * 2000, "ünïcødé",
                                    "20261125T000000Z-deadbeef/../../lapsed/20261125T000000Z-deadbeef", "latest.json"])
async def test_odd_run_ids_answer_404_and_never_reach_another_exports_state(app, run_id: str) -> None:
    await app.put(app.segments, "lapsed/customers.csv", segment_bytes(5))
    lapsed = orjson.loads((await call(function_app.start_run, post("lapsed"))).get_body())
    response = await call(function_app.run_status, get(f"exports/vip/runs/{run_id}", name="vip", run_id=run_id))
    assert response.status_code == 404
    assert lapsed["run_id"] not in response.get_body().decode()


# ---- 7. one version of one file, one definition, from start to end -------------------------

async def two_leg_app(azurite, simulator, monkeypatch) -> App:
    app = App(azurite, simulator, budget=0, monkeypatch=monkeypatch)  # every leg hands over after one new job
    await app.set_config(config())
    return app


async def test_a_file_replaced_between_legs_fails_the_run_and_frees_the_export(azurite, simulator, monkeypatch) -> None:
    app = await two_leg_app(azurite, simulator, monkeypatch)
    await app.put(app.segments, "vip/big.csv", segment_bytes(25_000, seed=1))
    answer = await start(app)
    await handle(app, await receive(app))  # the first leg: one job, then a hand-over
    assert (await status_of("vip", answer["run_id"]))["status"] == "continuing"
    await app.put(app.segments, "vip/big.csv", segment_bytes(25_000, seed=2))  # replaced mid-run
    await app.deliver()
    state = await status_of("vip", answer["run_id"])
    assert state["status"] == "failed" and "was replaced or changed after the run started" in state["report"]["error"]
    assert simulator.simulator.stats.jobs_received == 1
    counts = state["report"]["counts"]  # what the first leg did stays in the failed run's report
    assert counts["accepted"] == 10_000 and len(state["report"]["jobs"]) == 1 and counts["rows_read"] > 0
    assert (await call(function_app.start_run, post("vip"))).status_code == 202  # the export is free again
    await app.runtime.aclose()


async def test_an_export_edited_between_legs_keeps_the_runs_list_and_mapping(azurite, simulator, monkeypatch) -> None:
    app = await two_leg_app(azurite, simulator, monkeypatch)
    data = segment_bytes(25_000)
    await app.put(app.segments, "vip/big.csv", data)
    answer = await start(app)
    await handle(app, await receive(app))
    edited = config()
    edited["exports"][0]["list_id"] = SECOND_LIST
    edited["exports"][0]["mapping"] = {"email": "first_name"}  # would reject every row
    await app.set_config(edited)
    app.runtime._config = None  # re-read at once instead of after the one-minute cache
    await app.deliver()
    state = await status_of("vip", answer["run_id"])
    await app.runtime.aclose()
    assert state["status"] == "succeeded" and state["report"]["list_id"] == LIST_ID
    assert len(simulator.simulator.account.member_emails(LIST_ID)) == 25_000
    assert simulator.simulator.account.member_emails(SECOND_LIST) == []


# ---- 8. a run that never ends fails and frees its export -----------------------------------

async def test_a_run_past_its_deadline_fails_and_releases_the_export(azurite, start_simulator, monkeypatch) -> None:
    simulator = await start_simulator(job_delay=3600)  # Klaviyo never finishes the job
    app = await two_leg_app(azurite, simulator, monkeypatch)
    await app.put(app.segments, "vip/a.csv", segment_bytes(50))
    answer = await start(app)
    await handle(app, await receive(app))
    assert (await status_of("vip", answer["run_id"]))["status"] == "continuing"
    seven_hours_ago = (datetime.now(UTC) - timedelta(hours=7)).isoformat()
    await rewrite_state(app, answer["run_id"], started_at=seven_hours_ago)
    await app.deliver()
    state = await status_of("vip", answer["run_id"])
    assert state["status"] == "failed" and "passed its deadline of 6 hour(s)" in state["report"]["error"]
    assert (await call(function_app.start_run, post("vip"))).status_code == 202
    await app.runtime.aclose()


# ---- 9. a leg never runs twice at once ----------------------------------------------------

async def test_a_redelivery_during_a_retried_leg_is_put_back_not_run(app, monkeypatch) -> None:
    data = segment_bytes(25_000)
    await app.put(app.segments, "vip/big.csv", data)
    await start(app)
    message = await receive(app)
    real_key_source = app.runtime.key_source
    calls = 0

    async def flaky_key_source(export: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise TransientError("Key Vault did not answer (test)")
        return await real_key_source(export)

    monkeypatch.setattr(app.runtime.service(), "_key_source", flaky_key_source)
    worker = function_app.run_worker.build().get_user_function()
    body = message.content.encode()
    with pytest.raises(TransientError):
        await worker(QueueMessage(id=message.id, body=body, dequeue_count=1))  # attempt 1 fails: the host retries
    first_job = asyncio.Event()
    app.sim.simulator.on_job_accepted = lambda count: first_job.set()
    retried = asyncio.create_task(worker(QueueMessage(id=message.id, body=body, dequeue_count=2)))
    await first_job.wait()
    await worker(QueueMessage(id=message.id, body=body, dequeue_count=3))  # the duplicate, mid-leg
    await retried
    assert app.sim.simulator.stats.jobs_received == 3  # 25,000 rows: three jobs, each sent once
    assert len(app.sim.simulator.account.member_emails(LIST_ID)) == 25_000


async def test_a_stale_message_of_an_earlier_leg_is_dropped(azurite, simulator, monkeypatch) -> None:
    app = await two_leg_app(azurite, simulator, monkeypatch)
    await app.put(app.segments, "vip/big.csv", segment_bytes(25_000))
    answer = await start(app)
    first = await receive(app)
    await handle(app, first)  # leg 0 done; leg 1 queued
    await handle(app, await receive(app))  # leg 1 done; leg 2 queued
    worker = function_app.run_worker.build().get_user_function()
    await worker(QueueMessage(id=first.id, body=first.content.encode(), dequeue_count=2))  # leg 0 again, late
    await app.deliver()
    state = await status_of("vip", answer["run_id"])
    await app.runtime.aclose()
    assert state["status"] == "succeeded" and simulator.simulator.stats.jobs_received == 3


# ---- 11. Storage over HTTPS with bearer tokens, as the managed identity reaches it ---------

async def test_reach_rules_hold_over_https_with_bearer_tokens(secure_azurite, simulator, monkeypatch) -> None:
    azurite, credential, ca = secure_azurite
    app = App(azurite, simulator, 1500, monkeypatch)
    env = {k: v for k, v in app.env.items() if k != "AzureWebJobsStorage"}
    env["AzureWebJobsStorage__blobServiceUri"] = azurite.blob_endpoint
    env["AzureWebJobsStorage__queueServiceUri"] = azurite.queue_endpoint
    from exporter.runs.runtime import AppRuntime

    app.runtime = AppRuntime(env, storage_credential=credential, storage_options={"connection_verify": ca})
    monkeypatch.setattr(function_app, "RUNTIME", app.runtime)
    async with BlobServiceClient(azurite.blob_endpoint, credential=credential, connection_verify=ca) as service:
        for container, name, data in [(app.config_url.rsplit("/", 2)[1], "exports.json", orjson.dumps(config())),
                                      ("azure-webjobs-secrets", "app/host.json", HOST_SECRETS),
                                      (app.segments, "vip/a.csv", segment_bytes(20))]:
            client = service.get_container_client(container)
            if not await client.exists():
                await client.create_container()
            await client.upload_blob(name, data, overwrite=True)
    refused = await call(function_app.start_run, post("vip", body=b'{"source": "../azure-webjobs-secrets/app/host.json"}'))
    assert refused.status_code == 400 and "'..' path segments" in orjson.loads(refused.get_body())["error"]
    answer = await start(app, b'{"source": "vip/a.csv"}')
    assert await app.deliver() == 1
    state = await status_of("vip", answer["run_id"])
    await app.runtime.aclose()
    assert state["status"] == "succeeded" and state["report"]["counts"]["sent"] == 20
    assert credential.scopes and all(scope == ("https://storage.azure.com/.default",) for scope in credential.scopes)


# ---- 10. a crash resends at most the jobs in flight ----------------------------------------

@pytest.mark.parametrize("kill_at", [random.Random(seed).randrange(6, 12) for seed in (1, 2, 3)])
async def test_a_worker_killed_mid_run_resends_at_most_the_jobs_in_flight(app, monkeypatch, kill_at: int) -> None:
    """SIGKILL the worker process the moment Klaviyo accepts job ``kill_at`` (the 202 never
    reaches it), then let the host's redelivery run the leg again in this process."""
    monkeypatch.setenv("TEST_KLAVIYO_KEY", "pk_test_0123456789abcdef")
    rows = 120_000  # 12 jobs of 10,000
    await app.put(app.segments, "vip/big.csv", segment_bytes(rows))
    answer = await start(app)
    message = await receive(app)
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.worker_process", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
        env={**os.environ, "TEST_KLAVIYO_KEY": "pk_test_0123456789abcdef"})
    assert worker.stdin is not None

    def kill(count: int) -> None:
        if count == kill_at and worker.returncode is None:
            worker.kill()  # SIGKILL: no clean-up, no last checkpoint

    app.sim.simulator.on_job_accepted = kill
    worker.stdin.write(orjson.dumps(app.env) + b"\n" + message.content.encode() + b"\n")
    await worker.stdin.drain()
    worker.stdin.close()
    await worker.wait()
    assert worker.returncode == -signal.SIGKILL, (await worker.stderr.read()).decode()[-2000:] if worker.stderr else ""
    app.sim.simulator.on_job_accepted = None
    stale = (datetime.now(UTC) - timedelta(minutes=10)).isoformat()
    await rewrite_state(app, answer["run_id"], updated_at=stale)  # the dead worker's heartbeat has gone quiet
    await handle(app, message, dequeue_count=2)  # the host delivers the message again
    state = await status_of("vip", answer["run_id"])
    jobs = app.sim.simulator.stats.jobs_received
    assert state["status"] == "succeeded", state
    assert len(app.sim.simulator.account.member_emails(LIST_ID)) == rows
    resent = jobs - 12
    print(f"resent {resent} after a kill at job {kill_at}")
    assert 1 <= resent <= PipelineOptions().senders, f"{resent} jobs resent after a kill at job {kill_at}"
