"""The function app end to end: real azure.functions objects into the decorated functions,
Azurite for blobs and queues, the Klaviyo simulator (harness: ``tests/app_harness.py``)."""

from __future__ import annotations

import orjson
import pytest
from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequest

import function_app
from devtools.sample import segment_bytes
from tests.app_harness import SECOND_LIST, App, call, config, expected, get, post, status_of
from tests.conftest import LIST_ID


async def test_post_answers_202_and_the_status_url_later_shows_the_report(app) -> None:
    data = segment_bytes(1_200)
    await app.put(app.segments, "vip/2026-11-25.csv", data)
    response = await call(function_app.start_run, post("vip"))
    assert response.status_code == 202
    answer = orjson.loads(response.get_body())
    assert response.headers["Location"] == answer["status_url"] == \
        f"https://exporter.example/api/exports/vip/runs/{answer['run_id']}"
    assert (await status_of("vip", answer["run_id"]))["status"] == "queued"
    assert await app.deliver() == 1
    state = await status_of("vip", answer["run_id"])
    assert state["status"] == "succeeded"
    report = state["report"]
    assert report["counts"]["rows_read"] == 1_200 and report["counts"]["sent"] == 1_200
    assert report["source"].endswith("/vip/2026-11-25.csv") and len(report["jobs"]) == 1
    assert app.sim.simulator.account.member_emails(LIST_ID) == expected(data)
    listing = orjson.loads((await call(function_app.list_exports, get("exports"))).get_body())
    assert {e["name"]: e["last_run"] and e["last_run"]["status"] for e in listing["exports"]} == {
        "vip": "succeeded", "lapsed": None, "paused": None}


async def test_a_second_post_during_a_run_gets_409_with_the_active_run(app) -> None:
    await app.put(app.segments, "vip/a.csv", segment_bytes(10))
    first = orjson.loads((await call(function_app.start_run, post("vip"))).get_body())
    second = await call(function_app.start_run, post("vip"))
    assert second.status_code == 409
    assert orjson.loads(second.get_body())["run_id"] == first["run_id"]
    await app.deliver()
    assert (await call(function_app.start_run, post("vip"))).status_code == 202  # free again once finished


async def test_dry_run_counts_but_sends_nothing(app) -> None:
    await app.put(app.segments, "vip/a.csv", segment_bytes(500, bad_every=50))
    answer = orjson.loads((await call(function_app.start_run, post("vip", {"dryRun": "true"}))).get_body())
    await app.deliver()
    report = (await status_of("vip", answer["run_id"]))["report"]
    assert report["dry_run"] is True and report["counts"]["rows_read"] == 500 and report["status"] == "partial"
    assert app.sim.simulator.stats.requests == 0


@pytest.mark.parametrize("request_, status, fragment", [
    (post("nope"), 404, "no export named 'nope'; known exports: lapsed, paused, vip"),
    (post("vip", {"dryRun": "maybe"}), 400, "dryRun must be true or false"),
    (post("vip", {"dry": "1"}), 400, "unknown query parameter(s): dry"),
    (post("vip", body=b"{not json"), 400, "the body is not valid JSON"),
    (post("vip", body=b'{"list_id": "x"}'), 400, 'the body may only hold "source"'),
    (post("vip", body=b'{"full": "yes"}'), 400, 'the body may only hold "source"'),
])
async def test_bad_requests_get_specific_errors(app, request_, status, fragment) -> None:
    response = await call(function_app.start_run, request_)
    assert response.status_code == status
    assert fragment in orjson.loads(response.get_body())["error"]


async def test_unknown_export_404_lists_the_known_ones_and_unknown_run_is_404(app) -> None:
    body = orjson.loads((await call(function_app.start_run, post("nope"))).get_body())
    assert body["known_exports"] == ["lapsed", "paused", "vip"]
    missing = await call(function_app.run_status, get("exports/vip/runs/x", name="vip", run_id="x"))
    assert missing.status_code == 404


async def test_bad_config_is_reported_whole_and_starts_nothing(app) -> None:
    broken = config()
    broken["exports"][1]["list_id"] = 42
    broken["exports"][2]["connection"] = "ghost"
    await app.set_config(broken)
    response = await call(function_app.start_run, post("vip"))
    assert response.status_code == 500
    assert orjson.loads(response.get_body())["problems"] == [
        "export 'lapsed': 'list_id' must be a non-empty string (got int)",
        "export 'paused': unknown connection 'ghost' (known: local)"]
    assert await app.deliver() == 0


async def test_a_dropped_blob_exports_that_file_and_unclaimed_files_are_ignored(app) -> None:
    data = segment_bytes(300)
    await app.put(app.segments, "lapsed/customers.csv", data)
    await call(function_app.segment_dropped, app.blob_client("lapsed/customers.csv"))
    await call(function_app.segment_dropped, app.blob_client("unclaimed/x.csv"))
    await call(function_app.segment_dropped, app.blob_client("paused/x.csv"))
    assert await app.deliver() == 1
    assert app.sim.simulator.account.member_emails(SECOND_LIST) == expected(data)
    assert app.sim.simulator.account.member_emails(LIST_ID) == []


async def test_a_drop_while_its_export_runs_waits_its_turn(app) -> None:
    await app.put(app.segments, "vip/first.csv", segment_bytes(20))
    first = orjson.loads((await call(function_app.start_run, post("vip"))).get_body())
    await app.put(app.segments, "vip/second.csv", segment_bytes(30))
    await call(function_app.segment_dropped, app.blob_client("vip/second.csv"))
    assert await app.deliver() == 1  # the first run; the drop's message stays invisible for a while
    assert (await status_of("vip", first["run_id"]))["status"] == "succeeded"
    latest = orjson.loads((await call(function_app.list_exports, get("exports"))).get_body())["exports"][0]["last_run"]
    assert latest["status"] == "waiting" and latest["source"] == "vip/second.csv"


async def test_the_timer_runs_every_enabled_export(app) -> None:
    vip, lapsed = segment_bytes(40), segment_bytes(60, seed=9)
    await app.put(app.segments, "vip/a.csv", vip)
    await app.put(app.segments, "lapsed/customers.csv", lapsed)
    await app.put(app.segments, "paused/a.csv", segment_bytes(5))
    await call(function_app.scheduled_exports, TimerRequest(past_due=False))
    assert await app.deliver() == 2
    assert app.sim.simulator.account.member_emails(LIST_ID) == expected(vip)
    assert app.sim.simulator.account.member_emails(SECOND_LIST) == expected(lapsed)


async def test_a_run_cut_at_its_time_budget_continues_through_the_queue(azurite, simulator, monkeypatch) -> None:
    app = App(azurite, simulator, budget=0, monkeypatch=monkeypatch)  # every leg hands over after one new job
    await app.set_config(config())
    data = segment_bytes(34_000, bad_every=1_000)
    await app.put(app.segments, "vip/big.csv", data)
    answer = orjson.loads((await call(function_app.start_run, post("vip"))).get_body())
    handled = await app.deliver()
    state = await status_of("vip", answer["run_id"])
    await app.runtime.aclose()
    assert handled >= 2 and state["legs"] == handled
    report = state["report"]
    assert state["status"] == report["status"] == "partial"
    assert len(report["jobs"]) == len(set(report["jobs"])) == simulator.simulator.stats.jobs_received == 4
    members = simulator.simulator.account.member_emails(LIST_ID)
    valid = [e for e in expected(data) if "@" in e and not e.endswith(".invalid")]
    assert sorted(members) == sorted(dict.fromkeys(valid))
    c = report["counts"]
    assert c["rows_read"] == 34_000 == c["sent"] + c["rejected"] + c["duplicates"] + c["unchanged"]


async def test_a_missing_key_fails_the_run_with_the_reason(app, monkeypatch) -> None:
    await app.put(app.segments, "vip/a.csv", segment_bytes(10))
    answer = orjson.loads((await call(function_app.start_run, post("vip"))).get_body())
    monkeypatch.delenv("TEST_KLAVIYO_KEY")
    await app.deliver()
    state = await status_of("vip", answer["run_id"])
    assert state["status"] == "failed"
    assert state["report"]["error"] == "environment variable TEST_KLAVIYO_KEY holds no Klaviyo API key"
    assert (await call(function_app.start_run, post("vip"))).status_code == 202  # the lock was released


async def test_a_poisoned_message_marks_its_run_failed(app) -> None:
    await app.put(app.segments, "vip/a.csv", segment_bytes(10))
    answer = orjson.loads((await call(function_app.start_run, post("vip"))).get_body())
    queue = app.runtime.service().queue
    [message] = [m async for m in queue.receive_messages(max_messages=1)]
    await call(function_app.run_poisoned, QueueMessage(id=message.id, body=message.content.encode(), dequeue_count=5))
    state = await status_of("vip", answer["run_id"])
    assert state["status"] == "failed" and "poisoned" in state["report"]["error"]


async def test_a_post_may_name_the_file_which_must_exist(app) -> None:
    data = segment_bytes(25)
    await app.put(app.segments, "vip/chosen.csv", data)
    await app.put(app.segments, "vip/newer.csv", segment_bytes(5, seed=3))
    missing = await call(function_app.start_run, post("vip", body=b'{"source": "vip/absent.csv"}'))
    assert missing.status_code == 400
    assert orjson.loads(missing.get_body())["error"] == f"no segment file at {app.segments}/vip/absent.csv"
    chosen = await call(function_app.start_run, post("vip", body=b'{"source": "vip/chosen.csv"}'))
    assert chosen.status_code == 202
    await app.deliver()
    assert app.sim.simulator.account.member_emails(LIST_ID) == expected(data)


async def test_a_malformed_queue_message_is_dropped_not_retried(app, caplog) -> None:
    worker = function_app.run_worker.build().get_user_function()
    await worker(QueueMessage(id="m1", body=b"not json at all", dequeue_count=1))
    assert "malformed runs-queue message dropped" in caplog.text


async def test_a_second_delivery_of_a_leg_in_progress_does_not_run_it_twice(app) -> None:
    await app.put(app.segments, "vip/a.csv", segment_bytes(10))
    answer = orjson.loads((await call(function_app.start_run, post("vip"))).get_body())
    service = app.runtime.service()
    state = await service.store.load_state("vip", answer["run_id"])
    assert state is not None
    state.status, state.legs = "running", 1  # as a worker that has just started the first leg leaves it
    await service.store.save_state(state)
    assert await app.deliver() == 1  # the duplicate: put back for later, not run
    assert app.sim.simulator.stats.requests == 0
    assert (await status_of("vip", answer["run_id"]))["status"] == "running"
