"""Clearing what was emptied: with clear_emptied, a value this export set at its last run and
that is empty now is cleared in Klaviyo (a standard field with null, a custom property by
meta.patch_properties.unset), and nothing else is ever cleared; without it nothing is."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.conftest import API_KEY, LIST_ID
from tests.test_cli import acli

FIRST = ("email,phone,city,tier,note\n"
         "a@x.com,+442079460011,London,gold,hi\n"
         "b@x.com,+442079460012,Paris,silver,\n"
         "c@x.com,+442079460013,Rome,bronze,yo\n")
EMPTIED = ("email,phone,city,tier,note\n"
           "a@x.com,,London,,hi\n"            # phone and tier emptied: cleared
           "b@x.com,+442079460012,,silver,\n"  # city emptied; note was never set: not touched
           "c@x.com,+442079460013,Rome,bronze,yo\n")  # unchanged
MAP = ["--map", "phone=phone_number", "--map", "city=location.city", "--map", "tier=properties.tier",
       "--map", "note=properties.note"]


def attributes(sim, email: str) -> dict:
    account = sim.simulator.account
    [profile_id] = account.profile_ids_by_email([email])
    return account.attributes(profile_id)


@pytest.mark.parametrize("clear", [True, False])
async def test_a_second_run_clears_what_was_emptied_and_nothing_else(start_simulator, tmp_path: Path,
                                                                     clear: bool) -> None:
    sim = await start_simulator(rate_limits=False)
    source = tmp_path / "s.csv"
    args = ["export", "--source", str(source), "--list-id", LIST_ID, "--email-column", "email", *MAP,
            "--klaviyo-url", sim.url, "--state", str(tmp_path / "state"), *(["--clear-emptied"] if clear else [])]
    source.write_text(FIRST)
    first = await acli(*args, env={"KLAVIYO_API_KEY": API_KEY})
    assert first.returncode == 0, first.stderr
    # Someone sets a property in Klaviyo that this export never mapped: it must survive.
    attributes(sim, "b@x.com").setdefault("properties", {})["from_a_form"] = "kept"
    source.write_text(EMPTIED)
    second = await acli(*args, env={"KLAVIYO_API_KEY": API_KEY})
    assert second.returncode == 0, second.stderr
    report = orjson.loads(second.stdout)
    a, b, c = (attributes(sim, f"{x}@x.com") for x in "abc")
    if clear:
        assert report["sync"]["cleared_fields"] == 3
        assert a.get("phone_number") is None and "tier" not in a["properties"] and a["properties"]["note"] == "hi"
        assert a["location"] == {"city": "London"}
        assert b["location"].get("city") is None and b["phone_number"] == "+442079460012"
        assert b["properties"] == {"tier": "silver", "from_a_form": "kept"}
    else:
        assert "cleared_fields" not in report["sync"]
        assert a["phone_number"] == "+442079460011" and a["properties"]["tier"] == "gold"
        assert b["location"]["city"] == "Paris"
    assert c == {"email": "c@x.com", "phone_number": "+442079460013", "location": {"city": "Rome"},
                 "properties": {"tier": "bronze", "note": "yo"}}
    third = await acli(*args, env={"KLAVIYO_API_KEY": API_KEY})  # nothing changed: nothing sent, nothing cleared
    assert orjson.loads(third.stdout)["counts"]["sent"] == 0
    assert orjson.loads(third.stdout)["sync"].get("cleared_fields", 0) == 0


def test_a_clearing_profile_matches_klaviyos_schema() -> None:
    from exporter.sync.clearing import clearing_profile
    from tests.openapi import validator_for

    profile = clearing_profile("phone_number:+442079460011", 0b1011,
                               ["location.city", "phone_number", "properties.note", "properties.tier"])
    assert profile["attributes"] == {"phone_number": None, "location": {"city": None}}
    assert profile["meta"] == {"patch_properties": {"unset": ["tier"]}}
    validator_for("ProfileUpsertQueryResourceObject").validate(
        {**profile, "attributes": {**profile["attributes"], "phone_number": "+442079460011"}})


async def test_the_app_pins_types_identity_and_clearing_with_each_run(app) -> None:
    """The function app runs an export's typed properties, identity and clear_emptied as the
    CLI does (they are pinned with the run, so every leg maps the same way)."""
    import function_app
    from tests.app_harness import call, config, post, status_of

    document = config()
    document["exports"][0].update({
        "mapping": {"email": "email", "phone_number": "phone", "properties.spend:number": "spend"},
        "identity": ["email", "phone_number"], "clear_emptied": True, "phone_region": "GB"})
    await app.set_config(document)

    async def run(data: bytes) -> dict:
        await app.put(app.segments, "vip/all.csv", data)
        answer = orjson.loads((await call(function_app.start_run, post("vip"))).get_body())
        await app.deliver()
        return (await status_of("vip", answer["run_id"]))["report"]

    first = await run(b"email,phone,spend\na@x.com,,12.50\n,020 7946 0011,3\n")
    assert first["counts"]["sent"] == 2
    assert attributes(app.sim, "a@x.com")["properties"] == {"spend": 12.5}
    second = await run(b"email,phone,spend\na@x.com,,\n,020 7946 0011,3\n")
    assert second["counts"]["unchanged"] == 1 and second["sync"]["cleared_fields"] == 1
    assert attributes(app.sim, "a@x.com").get("properties") == {}


async def test_a_damaged_read_clears_nothing_and_a_clean_one_then_does(start_simulator, tmp_path: Path) -> None:
    """A cut file makes its last row look emptied: nothing is cleared after a damaged read, and
    the snapshot keeps what it knew, so the next clean read clears what really was emptied."""
    sim = await start_simulator(rate_limits=False)
    source = tmp_path / "s.csv"
    args = ["export", "--source", str(source), "--list-id", LIST_ID, "--email-column", "email", *MAP,
            "--klaviyo-url", sim.url, "--state", str(tmp_path / "state"), "--clear-emptied"]
    source.write_text(FIRST)
    assert (await acli(*args, env={"KLAVIYO_API_KEY": API_KEY})).returncode == 0
    source.write_text(FIRST.replace("a@x.com,+442079460011,London,gold,hi", "a@x.com,,London,,hi")
                      .rstrip("\n").rsplit(",", 3)[0])  # a emptied; c cut after its phone: no line end
    held = orjson.loads((await acli(*args, env={"KLAVIYO_API_KEY": API_KEY})).stdout)
    assert held["sync"]["cleared_fields"] == 0 and any(h.startswith("clearing held") for h in held["hints"])
    assert attributes(sim, "a@x.com")["phone_number"] == "+442079460011"
    assert attributes(sim, "c@x.com")["location"] == {"city": "Rome"}
    source.write_text(FIRST.replace("a@x.com,+442079460011,London,gold,hi", "a@x.com,,London,,hi"))
    clean = orjson.loads((await acli(*args, env={"KLAVIYO_API_KEY": API_KEY})).stdout)
    assert clean["sync"]["cleared_fields"] == 2 and attributes(sim, "a@x.com").get("phone_number") is None


async def test_a_clearing_klaviyo_does_not_confirm_is_tried_again_by_the_next_run(start_simulator, tmp_path: Path,
                                                                                 monkeypatch) -> None:
    """The run waits for its clearing job; one Klaviyo has not finished in time leaves the run
    partial, counts nothing cleared, and keeps in the snapshot the fields it knew were set, so
    the next run resends those members and clears again."""
    from exporter.mapping import FieldMapping
    from exporter.pipeline import ExportPlan, PipelineOptions, run_export
    from exporter.rejects import RejectsFile
    from exporter.sync import clearing
    from exporter.sync.plan import SyncPlan
    from exporter.sync.snapshot import LocalSnapshotStore
    from tests.conftest import client_for

    sim = await start_simulator(rate_limits=False)
    source = tmp_path / "s.csv"
    mapping = FieldMapping("email", {"phone_number": "phone", "location.city": "city", "properties.tier": "tier",
                                     "properties.note": "note"})

    async def run(text: str) -> dict:
        source.write_text(text)
        plan = ExportPlan("t", str(source), LIST_ID, mapping,
                          sync=SyncPlan(LocalSnapshotStore(tmp_path / "state"), "add", clear_emptied=True))
        async with client_for(sim) as client:
            report = await run_export(plan, client, RejectsFile(tmp_path / "r.csv"),
                                      options=PipelineOptions(poll_interval=0.05))
        return report.to_dict()

    assert (await run(FIRST))["status"] == "succeeded"
    monkeypatch.setattr(clearing, "CONFIRM_SECONDS", 0.2)
    sim.simulator.account.job_delay = 1.0  # Klaviyo is slow today: the clearing job outlasts the wait
    slow = await run(EMPTIED)
    assert slow["status"] == "partial" and slow["sync"]["cleared_fields"] == 0
    assert slow["sync"]["clearing_confirmed"] is False
    assert any(hint.startswith("clearing not confirmed") for hint in slow["hints"])
    monkeypatch.setattr(clearing, "CONFIRM_SECONDS", 60.0)
    sim.simulator.account.job_delay = 0.05
    again = await run(EMPTIED)
    assert again["status"] == "succeeded" and again["counts"]["sent"] == 2  # a and b resent
    assert again["sync"]["cleared_fields"] == 3 and again["sync"]["clearing_confirmed"] is True
    a, b = attributes(sim, "a@x.com"), attributes(sim, "b@x.com")
    assert a.get("phone_number") is None and "tier" not in a["properties"] and b["location"].get("city") is None
