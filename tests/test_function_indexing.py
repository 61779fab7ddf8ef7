"""function_app.py as the Python worker indexes it: every trigger and binding checked."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
INDEXER = Path(__file__).with_name("index_function_app.py")


def index(app_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(INDEXER), str(app_dir)], capture_output=True, text=True, env=env,
                          timeout=120, cwd=app_dir)


@pytest.fixture(scope="module")
def functions() -> dict[str, list[dict[str, Any]]]:
    result = index(ROOT)
    assert result.returncode == 0, result.stderr
    return {f["name"]: f["bindings"] for f in json.loads(result.stdout)}


def trigger(bindings: list[dict[str, Any]]) -> dict[str, Any]:
    [found] = [b for b in bindings if b["type"].endswith("Trigger")]
    return found


def test_the_app_has_exactly_these_functions(functions) -> None:
    assert set(functions) == {"scheduled_exports", "start_run", "start_run_with_overrides", "run_status",
                              "list_exports", "segment_dropped", "run_worker", "run_poisoned", *PEOPLE_ROUTES}


PEOPLE_ROUTES = {
    "manage_me": ("manage/me", ["GET"]),
    "manage_connections": ("manage/connections", ["GET"]),
    "manage_connection": ("manage/connections/{name}", ["GET", "PUT", "DELETE"]),
    "manage_exports": ("manage/exports", ["GET"]),
    "manage_export": ("manage/exports/{name}", ["GET", "PUT", "DELETE"]),
    "manage_runs": ("manage/exports/{name}/runs", ["GET", "POST"]),
    "manage_run_status": ("manage/exports/{name}/runs/{run_id}", ["GET"]),
    "manage_run_file": ("manage/exports/{name}/runs/{run_id}/{file}", ["GET"]),
    "ui_page": ("ui", ["GET"]),
    "ui_asset": ("ui/{asset}", ["GET"]),
}


@pytest.mark.parametrize("name", sorted(PEOPLE_ROUTES))
def test_routes_for_people_are_open_to_the_host_and_checked_by_the_app(functions, name) -> None:
    """The host checks keys only; these routes check the signed-in principal themselves
    (tests/test_manage_*.py show each refuses a request without one)."""
    http = trigger(functions[name])
    assert (http["route"], http["methods"], http["authLevel"]) == (*PEOPLE_ROUTES[name], "ANONYMOUS")


def test_timer_reads_its_schedule_from_the_app_setting(functions) -> None:
    timer = trigger(functions["scheduled_exports"])
    assert (timer["type"], timer["schedule"], timer["runOnStartup"]) == ("timerTrigger", "%EXPORT_SCHEDULE%", False)


@pytest.mark.parametrize("name, route, method", [
    ("start_run", "exports/{name}/runs", "POST"),
    ("run_status", "exports/{name}/runs/{run_id}", "GET"),
    ("list_exports", "exports", "GET"),
])
def test_http_routes_methods_and_function_key_auth(functions, name, route, method) -> None:
    http = trigger(functions[name])
    assert (http["route"], http["methods"], http["authLevel"]) == (route, [method], "FUNCTION")
    assert any(b["type"] == "http" and b["direction"] == "OUT" for b in functions[name])


def test_overrides_that_widen_removals_take_the_admin_key(functions) -> None:
    http = trigger(functions["start_run_with_overrides"])
    assert (http["route"], http["methods"], http["authLevel"]) == ("exports/{name}/admin-runs", ["POST"], "ADMIN")


def test_blob_trigger_uses_event_grid_on_the_segments_container(functions) -> None:
    blob = trigger(functions["segment_dropped"])
    assert (blob["type"], blob["path"], blob["source"], blob["connection"]) == (
        "blobTrigger", "%SEGMENTS_CONTAINER%/{name}", "EventGrid", "AzureWebJobsStorage")
    assert blob["properties"] == {"SupportsDeferredBinding": True}  # a client for the blob, not its bytes


def test_queue_triggers_carry_runs_and_their_poison(functions) -> None:
    worker, poisoned = trigger(functions["run_worker"]), trigger(functions["run_poisoned"])
    assert (worker["type"], worker["queueName"], worker["connection"]) == ("queueTrigger", "%RUNS_QUEUE%",
                                                                            "AzureWebJobsStorage")
    assert poisoned["queueName"] == "%RUNS_QUEUE%-poison"


@pytest.mark.parametrize("old, new", [
    ('arg_name="timer"', 'arg_name="tick"'),  # the parameter is still called timer
    ("segment: blob_binding.BlobClient", "segment: int"),  # a blob trigger cannot bind to int
    ("async def list_exports(", "async def run_status("),  # two functions with one name
])
def test_a_broken_binding_fails_indexing(tmp_path: Path, old: str, new: str) -> None:
    source = (ROOT / "function_app.py").read_text()
    assert old in source
    (tmp_path / "function_app.py").write_text(source.replace(old, new, 1))
    shutil.copy(ROOT / "host.json", tmp_path / "host.json")
    result = index(tmp_path)
    assert result.returncode != 0
