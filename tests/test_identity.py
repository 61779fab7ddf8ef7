"""Profiles without an email: an export identifies them by phone number or external id (or
the first of a list of them a row has); de-duplication, the snapshot, delta and mirror mode
key on the identity each row used, through the CLI and the simulator."""

from __future__ import annotations

import csv
from pathlib import Path

import orjson
import pytest

from tests.conftest import API_KEY, LIST_ID
from tests.test_cli import acli, cli


async def export(sim, source: Path, *extra: str) -> dict:
    result = await acli("export", "--source", str(source), "--list-id", LIST_ID, "--klaviyo-url", sim.url,
                        "--state", str(source.parent / "state"), *extra, env={"KLAVIYO_API_KEY": API_KEY})
    assert result.returncode in (0, 4, 5), result.stderr
    return orjson.loads(result.stdout)


def members(sim) -> list[dict]:
    account = sim.simulator.account
    return [account.attributes(p) for p in account.member_ids(LIST_ID)]


async def test_a_phone_only_segment_exports_and_its_delta_rerun_sends_nothing(start_simulator, tmp_path) -> None:
    sim = await start_simulator(rate_limits=False)
    source = tmp_path / "phones.csv"
    source.write_text("phone,first_name\n020 7946 0011,Ann\n+44 20 7946 0012,Bob\n020 7946 0011,Ann again\n"
                      "not a phone,Cy\n,Di\n")
    args = ("--identity", "phone_number", "--map", "phone=phone_number", "--map", "first_name=first_name",
            "--phone-region", "GB", "--max-rejected-fraction", "0.5")
    first = await export(sim, source, *args)
    c = first["counts"]
    assert (c["rows_read"], c["sent"], c["duplicates"], c["rejected"]) == (5, 2, 1, 2)
    assert sorted(m["phone_number"] for m in members(sim)) == ["+442079460011", "+442079460012"]
    assert all("email" not in m for m in members(sim))
    rejects = list(csv.reader(Path(first["rejects"]).read_text().splitlines()))[1:]
    reasons = {line: reason for line, _, reason in rejects}
    assert reasons["4"].startswith("duplicate of line 2")
    assert reasons["6"] == "no identity: phone_number is empty or invalid"
    again = await export(sim, source, *args)
    assert (again["counts"]["sent"], again["counts"]["unchanged"]) == (0, 2)


async def test_mirror_mode_removes_leavers_by_the_identity_they_had(start_simulator, tmp_path) -> None:
    sim = await start_simulator(rate_limits=False)
    source = tmp_path / "mixed.csv"
    rows = ["email,phone,crm_id", "a@x.com,,", ",020 7946 0021,", ",,CRM-3", "d@x.com,020 7946 0024,CRM-4",
            ",020 7946 0025,", ",,CRM-6"]
    source.write_text("\n".join(rows) + "\n")
    args = ("--email-column", "email", "--identity", "email,phone_number,external_id", "--map", "phone=phone_number",
            "--map", "crm_id=external_id", "--phone-region", "GB", "--mode", "mirror", "--max-remove-fraction", "0.9")
    first = await export(sim, source, *args)
    assert first["counts"]["sent"] == 6 and len(members(sim)) == 6
    source.write_text("\n".join(rows[:1] + [rows[1], rows[4]]) + "\n")  # a phone-only, a CRM-only, ... left
    second = await export(sim, source, *args)
    assert second["counts"]["removed"] == 4 and second["counts"]["remove_pending"] == 0
    assert sorted(m.get("email", m.get("phone_number", "")) for m in members(sim)) == ["a@x.com", "d@x.com"]


def test_an_identity_needs_its_field_mapped(tmp_path: Path) -> None:
    source = tmp_path / "s.csv"
    source.write_text("phone\n+442079460011\n")
    result = cli("export", "--source", str(source), "--list-id", LIST_ID, "--identity", "phone_number", "--dry-run")
    assert result.returncode == 2 and "identity phone_number needs a column mapped to phone_number" in result.stderr
    wrong = cli("export", "--source", str(source), "--list-id", LIST_ID, "--identity", "fax", "--dry-run")
    assert wrong.returncode == 2 and "identity is one or more of email, phone_number, external_id" in wrong.stderr


@pytest.mark.parametrize("identity, problem", [("fax", "identity is one or more of"),
                                               (["phone_number"], "needs a column mapped to phone_number")])
def test_a_config_identity_is_checked(identity: object, problem: str) -> None:
    from tests.test_config import assert_one_export_refused

    assert_one_export_refused(problem, identity=identity)
