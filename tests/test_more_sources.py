"""Segments that are not a CSV with a header: headerless CSV with named columns, and Parquet
(local and from Azurite), each giving the same list as the equivalent CSV; and pyarrow
kept out of the functions that must start fast."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from azure.storage.blob.aio import BlobServiceClient

from devtools.sample import MAPPING, segment_bytes, segment_lines
from exporter.mapping import FieldMapping
from exporter.pipeline import ExportPlan, PipelineOptions, run_export
from exporter.rejects import RejectsFile
from exporter.sources import open_segment
from tests.conftest import LIST_ID, client_for, write

ROOT = Path(__file__).resolve().parent.parent
FAST = PipelineOptions(poll_interval=0.02)


def as_parquet(data: bytes, path: Path, row_group_size: int = 700) -> Path:
    """The sample CSV as Parquet, with a decimal and a date column thrown in."""
    lines = data.decode().splitlines()
    header, rows = lines[0].split(","), [line.split(",") for line in lines[1:]]
    table = pa.table({name: [row[i] for row in rows] for i, name in enumerate(header)})
    table = table.append_column("score", pa.array([i * 1.5 for i in range(len(rows))]))
    table = table.append_column("joined", pa.array([None] * len(rows), pa.date32()))
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


async def export_list(sim, source: str, tmp_path: Path, name: str, **plan_args: object) -> tuple[list[str], object]:
    plan = ExportPlan("t", source, LIST_ID, FieldMapping.from_pairs("email", MAPPING), **plan_args)  # type: ignore[arg-type]
    async with client_for(sim) as client:
        report = await run_export(plan, client, RejectsFile(tmp_path / f"{name}.csv"), options=FAST)
    members = sim.simulator.account.member_emails(LIST_ID)
    return members, report


async def test_headerless_csv_with_named_columns_gives_the_same_list(start_simulator, tmp_path: Path) -> None:
    data = segment_bytes(3_000, bad_every=50)
    headerless = b"".join(line.encode() for line in list(segment_lines(3_000, bad_every=50))[1:])
    columns = data.decode().splitlines()[0].split(",")
    with_header, report_a = await export_list(await start_simulator(), write(tmp_path, "a.csv", data), tmp_path, "a")
    without, report_b = await export_list(await start_simulator(), write(tmp_path, "b.csv", headerless), tmp_path, "b",
                                          columns=columns)
    assert without == with_header and len(without) > 2_800
    a, b = report_a.counts, report_b.counts  # type: ignore[attr-defined]
    assert (b.rows_read, b.sent, b.rejected, b.duplicates) == (a.rows_read, a.sent, a.rejected, a.duplicates)
    assert b.rows_read == b.sent + b.rejected + b.duplicates + b.unchanged


async def test_headerless_rows_are_numbered_from_line_1(tmp_path: Path) -> None:
    segment = await open_segment(write(tmp_path, "h.csv", b"a@x.com;Ann\nb@x.com;Bob\n"), columns=["email", "name"])
    blocks = [block async for block in segment.blocks]
    assert segment.columns == ["email", "name"]
    assert [row for b in blocks for row in b.rows] == [["a@x.com", "Ann"], ["b@x.com", "Bob"]]
    assert [line for b in blocks for line in b.lines] == [1, 2]


async def test_parquet_gives_the_same_list_as_the_csv(start_simulator, tmp_path: Path) -> None:
    data = segment_bytes(3_000, bad_every=50)
    from_csv, csv_report = await export_list(await start_simulator(), write(tmp_path, "a.csv", data), tmp_path, "a")
    parquet = as_parquet(data, tmp_path / "seg.parquet")
    from_parquet, report = await export_list(await start_simulator(), str(parquet), tmp_path, "b")
    assert from_parquet == from_csv
    c = report.counts  # type: ignore[attr-defined]
    assert c.rows_read == 3_000 == c.sent + c.rejected + c.duplicates + c.unchanged
    assert (c.sent, c.rejected) == (csv_report.counts.sent, csv_report.counts.rejected)  # type: ignore[attr-defined]


async def test_parquet_from_azurite_by_content_and_its_odd_types_as_text(azurite, upload, tmp_path: Path) -> None:
    parquet = as_parquet(segment_bytes(2_000), tmp_path / "seg.parquet")
    url = await upload("exports/segment.bin", parquet.read_bytes())  # no .parquet name: known by its magic bytes
    segment = await open_segment(url, azurite.credential)
    rows = [row async for block in segment.blocks for row in block.rows]
    assert segment.columns[-2:] == ["score", "joined"] and len(rows) == 2_000
    assert rows[3][-2:] == (4.5, None) and rows[0][0].endswith("@example.com")


async def test_a_parquet_run_sizes_its_table_from_the_footer_once(tmp_path: Path, monkeypatch) -> None:
    """Parquet's footer states the row count. An estimate from the bytes read would say the
    whole file was read after the first batch (it is spooled whole), and the table would then
    double its way up, holding two tables at each growth (a 1M-row run peaked ~25 MB higher)."""
    from exporter.sources.parquet import BATCH_ROWS
    from exporter.sync.delta import Delta

    rows = 3 * BATCH_ROWS  # the first batch is not the whole file
    parquet = as_parquet(segment_bytes(rows), tmp_path / "seg.parquet", row_group_size=BATCH_ROWS)
    assert (await open_segment(str(parquet))).rows == rows
    reserved: list[int] = []
    monkeypatch.setattr(Delta, "expect", lambda self, rows: reserved.append(rows))
    plan = ExportPlan("t", str(parquet), LIST_ID, FieldMapping.from_pairs("email", MAPPING))
    report = await run_export(plan, None, RejectsFile(tmp_path / "rejects.csv"))
    assert report.counts.rows_read == rows and reserved == [rows]


async def test_a_parquet_footers_row_count_reserves_no_more_than_the_file_could_hold(tmp_path: Path,
                                                                                      monkeypatch) -> None:
    """A footer's row count is the file's word: 300,000 rows of one repeated email take a few KB
    (dictionary and run-length encoding), and a hostile footer can claim any count. The table
    is reserved for at most one email per byte of the file, not for the rows claimed."""
    from exporter.sync.delta import Delta

    rows = 300_000
    path = tmp_path / "same.parquet"
    pq.write_table(pa.table({"email": ["same@example.com"] * rows}), path)
    assert path.stat().st_size < 20_000
    reserved: list[int] = []
    monkeypatch.setattr(Delta, "expect", lambda self, count: reserved.append(count))
    plan = ExportPlan("t", str(path), LIST_ID, FieldMapping.from_pairs("email", []))
    report = await run_export(plan, None, RejectsFile(tmp_path / "rejects.csv"))
    assert report.counts.duplicates == rows - 1
    assert reserved == [path.stat().st_size]


async def test_a_damaged_parquet_file_is_a_clear_error(tmp_path: Path) -> None:
    from exporter.errors import SourceError

    with pytest.raises(SourceError, match="is not a readable Parquet file"):
        await open_segment(write(tmp_path, "bad.parquet", b"PAR1 not really"))


def test_pyarrow_stays_out_of_the_function_apps_import() -> None:
    code = "import sys, function_app; print('pyarrow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ}, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


CALL_EVERY_STARTING_FUNCTION = """
import asyncio, sys
import azure.functions as func
from azure.storage.blob import BlobClient
import function_app

def call(builder, *args):
    return builder.build().get_user_function()(*args)

async def main():
    request = func.HttpRequest("POST", "https://x/api/exports/lake/runs", route_params={"name": "lake"}, body=b"")
    assert (await call(function_app.start_run, request)).status_code == 202
    await call(function_app.scheduled_exports, None)
    blob = BlobClient.from_connection_string(sys.argv[1], sys.argv[2], "lake/part-0.parquet")
    await call(function_app.segment_dropped, blob)
    await function_app.RUNTIME.aclose()

asyncio.run(main())
print("pyarrow" in sys.modules)
"""


async def test_the_http_timer_and_blob_functions_never_load_pyarrow(azurite, tmp_path) -> None:
    """They only queue runs: a Parquet segment is read by the queue worker, so their cold
    starts never pay for pyarrow (their import alone is checked above; this runs them)."""
    container = f"seg{tmp_path.name[-8:].lower().replace('_', '')}"
    buffer = io.BytesIO()
    pq.write_table(pa.table({"email": ["a@example.com"]}), buffer)
    async with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        await service.create_container(container)
        await service.get_blob_client(container, "lake/part-0.parquet").upload_blob(buffer.getvalue())
    config = {"connections": [{"name": "c", "env": "KLAVIYO_API_KEY"}],
              "exports": [{"name": "lake", "connection": "c", "source": "lake/", "list_id": "L1", "format": "parquet",
                           "mapping": {"email": "email"}}]}
    (tmp_path / "exports.json").write_bytes(orjson.dumps(config))
    env = {**os.environ, "AzureWebJobsStorage": azurite.connection_string, "SEGMENTS_CONTAINER": container,
           "REPORTS_CONTAINER": container + "r", "RUNS_QUEUE": container + "q", "EXPORTS_CONFIG_URL": "",
           "EXPORTS_CONFIG_FILE": str(tmp_path / "exports.json"), "EXPORTER_LOCAL_MODE": "true"}
    result = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", CALL_EVERY_STARTING_FUNCTION,
                                                      azurite.connection_string, container],
                                     capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False"
