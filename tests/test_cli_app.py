"""``klaviyo-export app``, a real CLI process against the app served over real HTTP (the
local host stand-in, with Azurite and the simulator behind it)."""

from __future__ import annotations

import orjson
import pytest

from devtools.host import LocalHost
from tests.app_harness import App
from tests.manage_harness import ADMIN, ADMIN_ID, CONTRIBUTOR_ID, GROUP_ID, NEW_KEY, connection_body, send
from tests.test_cli import acli

FUNCTION_KEY, MASTER_KEY = "function-key-for-tests", "master-key-for-tests"
SEGMENT = b"email,first_name,tier\n" + b"".join(b"member%d@example.com,M%d,gold\n" % (n, n) for n in range(12))


@pytest.fixture
async def served(managed: App):
    host = await LocalHost(FUNCTION_KEY, MASTER_KEY, poll_seconds=0.05).start()
    yield managed, host
    await host.stop()


def with_key(key: str = FUNCTION_KEY) -> dict[str, str]:
    return {"EXPORTER_FUNCTION_KEY": key}


async def test_with_a_function_key_it_lists_exports_and_follows_a_run_to_its_report(served) -> None:
    app, host = served
    await app.put(app.segments, "vip/members.csv", SEGMENT)
    listed = await acli("app", "--url", host.url, "exports", env=with_key())
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines()[1:]] == ["vip", "lapsed", "paused"]
    run = await acli("app", "--url", host.url, "run", "vip", "--follow", "--poll-seconds", "0.1", env=with_key())
    assert run.returncode == 0, run.stderr
    state = orjson.loads(run.stdout)
    assert state["status"] == "succeeded" and state["report"]["counts"]["sent"] == 12
    assert len(app.sim.simulator.account.member_emails("Lst001")) == 12
    shown = await acli("app", "--url", host.url, "report", "vip", state["run_id"], env=with_key())
    assert orjson.loads(shown.stdout)["report"]["run_id"] == state["run_id"]


async def test_a_wrong_function_key_is_a_clear_refusal(served) -> None:
    _, host = served
    refused = await acli("app", "--url", host.url, "exports", env=with_key("wrong"))
    assert refused.returncode == 2 and "the app refused a function key (401)" in refused.stderr


async def test_a_function_key_cannot_put_an_export(served, tmp_path) -> None:
    _, host = served
    (tmp_path / "export.json").write_bytes(orjson.dumps({"connection": "local"}))
    refused = await acli("app", "--url", host.url, "put-export", "x", str(tmp_path / "export.json"),
                         env=with_key())
    assert refused.returncode == 2 and "needs the app registration's client id" in refused.stderr


async def test_a_contributor_puts_an_export_from_a_file_and_previews_it(served, tmp_path) -> None:
    app, host = served
    app.sim.simulator.account.add_list("EuList", "EU")
    assert (await send("manage_connection", "PUT", ADMIN, connection_body(), name="eu")).status == 201
    await app.put(app.segments, "eu/members.csv", SEGMENT)
    export = tmp_path / "eu-vip.json"
    export.write_bytes(orjson.dumps({"connection": "eu", "source": "eu/", "list_id": "EuList",
                                     "mapping": {"email": "email", "properties.level": "tier"}}))
    contributor = f"{CONTRIBUTOR_ID}:Exporter.Contributor"
    put = await acli("app", "--url", host.url, "--local-principal", contributor, "put-export", "eu-vip", str(export))
    # the contributor's groups are not in a --local-principal; the connection lists the group, so: refused
    assert put.returncode == 2 and "may not use connection 'eu'" in put.stderr
    allowed = await send("manage_connection", "GET", ADMIN, name="eu")
    changed = await send("manage_connection", "PUT", ADMIN, {"users": [GROUP_ID, CONTRIBUTOR_ID]},
                         headers={"If-Match": allowed.etag}, name="eu")
    assert changed.status == 200
    put = await acli("app", "--url", host.url, "--local-principal", contributor, "put-export", "eu-vip", str(export))
    assert put.returncode == 0, put.stderr
    assert "warning:" not in put.stderr and orjson.loads(put.stdout)["export"]["list_id"] == "EuList"
    export.write_bytes(orjson.dumps({**orjson.loads(export.read_bytes()), "enabled": False}))
    again = await acli("app", "--url", host.url, "--local-principal", contributor, "put-export", "eu-vip", str(export))
    assert again.returncode == 0 and orjson.loads(again.stdout)["export"]["enabled"] is False  # replaced, by its ETag
    export.write_bytes(orjson.dumps({**orjson.loads(export.read_bytes()), "enabled": True}))
    stale = await acli("app", "--url", host.url, "--local-principal", contributor, "put-export", "eu-vip", str(export),
                       "--if-match", put.stderr.rsplit("ETag: ", 1)[1].strip())
    assert stale.returncode == 2 and "(HTTP 412)" in stale.stderr
    put = again
    preview = await acli("app", "--url", host.url, "--local-principal", contributor, "run", "eu-vip", "--dry-run",
                         "--follow", "--poll-seconds", "0.1")
    state = orjson.loads(preview.stdout)
    assert preview.returncode == 0 and state["dry_run"] is True and state["report"]["counts"]["rows_read"] == 12
    assert app.sim.simulator.account.member_emails("EuList") == []


async def test_a_key_is_never_read_from_a_file(served, tmp_path) -> None:
    _, host = served
    connection = tmp_path / "connection.json"
    connection.write_bytes(orjson.dumps(connection_body()))
    refused = await acli("app", "--url", host.url, "--local-principal", f"{ADMIN_ID}:Exporter.Admin",
                         "put-connection", "eu", str(connection))
    assert refused.returncode == 2 and "keys never go in files" in refused.stderr and NEW_KEY not in refused.stderr
    del (body := connection_body())["api_key"]
    connection.write_bytes(orjson.dumps(body))
    created = await acli("app", "--url", host.url, "--local-principal", f"{ADMIN_ID}:Exporter.Admin",
                         "put-connection", "eu", str(connection), "--api-key-env", "NEW_CONNECTION_KEY",
                         env={"NEW_CONNECTION_KEY": NEW_KEY})
    assert created.returncode == 0, created.stderr
    assert orjson.loads(created.stdout)["key"] == "stored" and NEW_KEY not in created.stdout + created.stderr
