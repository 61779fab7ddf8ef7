"""Numbers, booleans and dates reach Klaviyo as JSON numbers, booleans and ISO 8601 strings:
from a CSV column typed in the mapping, from JSON Lines and Parquet types, from a CDM
attribute's dataType; a value that is not of its type follows invalid_fields."""

from __future__ import annotations

import decimal
from datetime import UTC, date, datetime
from pathlib import Path

import orjson
import pytest

from devtools.sample import cdm_export_folder
from tests.conftest import API_KEY, LIST_ID
from tests.test_cli import acli


def properties_of(sim, email: str) -> dict:
    account = sim.simulator.account
    [profile_id] = account.profile_ids_by_email([email])
    return account.attributes(profile_id).get("properties", {})


async def export(sim, source: Path, *extra: str) -> dict:
    result = await acli("export", "--source", str(source), "--list-id", LIST_ID, "--email-column", "email",
                        "--klaviyo-url", sim.url, "--state", str(source.parent / f"state-{source.stem}"), *extra,
                        env={"KLAVIYO_API_KEY": API_KEY})
    assert result.returncode in (0, 4), result.stderr
    return orjson.loads(result.stdout)


@pytest.mark.parametrize("policy", ["drop", "reject"])
async def test_a_csv_typed_in_the_mapping(start_simulator, tmp_path: Path, policy: str) -> None:
    sim = await start_simulator(rate_limits=False)
    source = tmp_path / "typed.csv"
    source.write_text("email,spend,vip,joined,seen,note\n"
                      "a@x.com,12.50,yes,2026-01-02,2026-01-02T09:30:00+01:00,007\n"
                      "b@x.com,12,FALSE,2026-01-02T00:00:00Z,2026-01-02,x\n"
                      "c@x.com,\"12,50\",maybe,02/01/2026,soon,y\n")
    report = await export(sim, source, "--map", "spend=properties.spend:number", "--map", "vip=properties.vip:boolean",
                          "--map", "joined=properties.joined:date", "--map", "seen=properties.seen:datetime",
                          "--map", "note=properties.note", "--invalid-fields", policy)
    assert properties_of(sim, "a@x.com") == {"spend": 12.5, "vip": True, "joined": "2026-01-02",
                                             "seen": "2026-01-02T08:30:00+00:00", "note": "007"}
    assert properties_of(sim, "b@x.com") == {"spend": 12, "vip": False, "joined": "2026-01-02",
                                             "seen": "2026-01-02T00:00:00+00:00", "note": "x"}
    if policy == "drop":
        assert properties_of(sim, "c@x.com") == {"note": "y"} and report["counts"]["warnings"] == 4
    else:
        assert report["counts"]["rejected"] == 1 and sim.simulator.account.profile_ids_by_email(["c@x.com"]) == []


async def test_json_lines_and_parquet_keep_their_types(start_simulator, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sim = await start_simulator(rate_limits=False)
    jsonl = tmp_path / "s.jsonl"
    jsonl.write_text('{"email": "j@x.com", "spend": 12.5, "orders": 3, "vip": true}\n')
    await export(sim, jsonl, "--map", "spend=properties.spend", "--map", "orders=properties.orders",
                 "--map", "vip=properties.vip")
    assert properties_of(sim, "j@x.com") == {"spend": 12.5, "orders": 3, "vip": True}
    table = pa.table({"email": ["p@x.com"], "spend": pa.array([decimal.Decimal("12.50")], pa.decimal128(10, 2)),
                      "vip": [True], "orders": pa.array([3], pa.int64()),
                      "joined": pa.array([date(2026, 1, 2)], pa.date32()),
                      "seen": pa.array([datetime(2026, 1, 2, 9, 30, tzinfo=UTC)], pa.timestamp("ns", "UTC"))})
    parquet = tmp_path / "s.parquet"
    pq.write_table(table, parquet)
    await export(sim, parquet, *[arg for column in ("spend", "vip", "orders", "joined", "seen")
                                 for arg in ("--map", f"{column}=properties.{column}")])
    assert properties_of(sim, "p@x.com") == {"spend": 12.5, "vip": True, "orders": 3, "joined": "2026-01-02",
                                             "seen": "2026-01-02T09:30:00+00:00"}


async def test_a_cdm_attributes_data_type_types_its_column(start_simulator, tmp_path: Path) -> None:
    sim = await start_simulator(rate_limits=False)
    files = cdm_export_folder([("2026/11/25/0600", 0, 3)])
    document = orjson.loads(files["model.json"])
    for attribute in document["entities"][0]["attributes"]:
        if attribute["name"] == "tier":
            attribute["dataType"] = "int64"
    files["model.json"] = orjson.dumps(document)
    root = tmp_path / "cdm"
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        lines = data.decode().splitlines(keepends=True) if name != "model.json" else None
        (root / name).write_bytes(data if lines is None else "".join(
            line.rsplit(",", 1)[0] + f",{i + 1}\n" for i, line in enumerate(lines)).encode())
    report = await export(sim, root, "--map", "tier=properties.tier")
    assert report["counts"]["sent"] == 3
    emails = sim.simulator.account.member_emails(LIST_ID)
    assert all(isinstance(properties_of(sim, e)["tier"], int) for e in emails)


def test_an_unknown_type_in_a_mapping_is_refused() -> None:
    from exporter.errors import ConfigError
    from exporter.mapping import FieldMapping

    with pytest.raises(ConfigError, match="type 'money' of 'properties.spend' is not one of"):
        FieldMapping.from_pairs("email", ["spend=properties.spend:money"])


