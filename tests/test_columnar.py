"""The columnar path against the row path: byte-identical jobs, identical rejects, warnings,
duplicates and counts, over a corpus of nasty rows spread across many small blocks (so
blocks go every way: all clean, some rows handed back to the row path, or the whole block
on the row path), plus delta refresh through the real pipeline and the CLI end to end."""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Iterator

import pytest

from exporter.batching import JobBatcher
from exporter.mapping import FieldMapping, ProfileMapper
from exporter.mapping.columnar import PYTHON_SPACE
from exporter.mapping.engine import RowEngine, engine_for
from exporter.pipeline import ExportPlan, run_export
from exporter.rejects import Reject, RejectsFile
from exporter.sources import open_segment
from exporter.sources.csv_format import CsvParser
from exporter.sources.lines import LineSplitter
from exporter.sources.rows import RowBlock
from exporter.sources.text import text_decoder
from exporter.sync.delta import Delta
from exporter.sync.plan import SyncPlan
from exporter.sync.snapshot import LocalSnapshotStore
from tests.conftest import LIST_ID, client_for

HEADER = "email,first_name,last_name,phone,city,country,tier,note"
PAIRS = ["first_name=first_name", "last_name=last_name", "phone=phone_number", "city=location.city",
         "country=location.country", "tier=properties.tier", "note=properties.note"]

# Rows each path must map alike: every reject reason, every accepted phone form, trimming,
# escaping, empty groups, and rows no columnar block can take.
NASTY = [
    "  Mixed.Case@Example.COM ,Ann,Lee,+44 20 7946 0958,London,GB,gold,",
    ",No,Email,,,,,",
    "   ,Blank,Email,,,,,",
    "not-an-email,Bad,Email,,,,,",
    "a..b@example.com,Dots,,,,,,",
    ".lead@example.com,Dot,,,,,,",
    "trail.@example.com,Dot,,,,,,",
    "x" * 65 + "@example.com,Long,Local,,,,,",
    "x" * 64 + "@example.com,Max,Local,,,,,",
    "a@" + "b" * 250 + ".com,Long,Domain,,,,,",
    "user@xn--bcher-kva.example,Puny,,,,,,",
    "kelvin\u212a@example.com,Kelvin,,,,,,",
    "josé@example.com,Accent,,,,,,",
    "ok1@example.com,José,Müller-Lüdenscheidt,0044 20 7946 0958,Zürich,CH,silver,",
    "ok2@example.com, \u3000Padded\xa0\x85 ,  ,+1 (415) 555-0100,  Paris\u2000  ,,  spaced  ,",
    "ok3@example.com,Back\\slash,C:\\path\\,+33.1.23.45.67.89,,,,",
    "ok4@example.com,Name,,020 7946 0958,,,,",
    "ok5@example.com,Name,,  ,,,,",
    "ok6@example.com,Name,,call me,,,,",
    "ok7@example.com,Name,,+0123456789,,,,",
    "ok8@example.com," + "n" * 1001 + ",,,,,,",
    "ok9@example.com," + "n" * 1000 + ",,,,,,",
    "ok10@example.com,Name,,,," + "c" * 1001 + ",,",
    "ok11@example.com,Name,,,,,," + "p" * 110_000,
    "ok12@example.com,,,,,,,",
    "ok13@example.com,Tab\there,,,,,,",
    "ok14@example.com,Short,Row",
    "ok15@example.com,Long,Row,,,,,,extra,fields",
    'ok16@example.com,"Quoted, Name",,,,,,',
    'ok17@example.com,"Multi\r\nline",,,,,,,',
    "ok18@example.com,Bad\udcffByte,,,,,,",
    "MIXED.CASE@example.com,Dup,,,,,,",
    "ok1@example.com,Dup,Again,,,,,",
    "ok19@example.com,\u2028Sep,,+442079460958,,,,",
    "ok20@example.com,Del\x7f,,,,,,",
    'ok21@example.com,Un"closed,,,,,,',
]


def corpus(rows: int, seed: int) -> str:
    """Clean rows with the nasty ones scattered among them, and a block of blank lines."""
    rng = random.Random(seed)
    lines = [f"person.{i}@example.com,First{i},Last,+4420{7000000 + i},City{i % 7},GB,t{i % 3},note {i}"
             for i in range(rows)]
    for line in NASTY:
        lines.insert(rng.randrange(len(lines)), line)
    lines.insert(rows // 2, "")
    return "\ufeff" + HEADER + "\r\n" + "\r\n".join(lines) + "\r\n"


def blocks(text: str, keep_text: bool, piece: int) -> Iterator[tuple[CsvParser, object]]:
    """The text through the source's own stages (decode, whole lines, CSV), in small pieces."""
    decoder = text_decoder("utf-8")
    splitter, parser = LineSplitter(), CsvParser(keep_text=keep_text)
    data = text.encode("utf-8", "surrogateescape")
    for start in range(0, len(data) + 1, piece):
        final = start + piece > len(data)
        lines, rejects = splitter.feed(decoder.decode(data[start:start + piece], final=final), final=final)
        block = parser.feed(lines, final=final)
        block.rejects[:0] = rejects
        yield parser, block


class Outputs:
    """Every output of mapping and batching: job payloads, rejects, warnings, duplicates, counts."""

    def __init__(self, engine: RowEngine, delta: Delta):
        self.engine, self.delta = engine, delta
        self.batcher = JobBatcher("L1", max_profiles=50)
        self.jobs: list[bytes] = []
        self.rejects: list[Reject] = []
        self.rows = 0

    def add(self, block: RowBlock) -> None:
        chunk, unchanged, fingerprints = self.engine.map(block)
        self.rows += chunk.rows + unchanged
        classified = self.delta.classify(chunk, fingerprints, set())
        self.rejects += chunk.rejects + chunk.warnings
        self.rejects += [Reject(chunk.lines[i], "dup", str(first)) for i, first in classified.duplicates]
        self.jobs += [job.payload for job in self.batcher.add(chunk, classified.keep)]

    def result(self) -> dict[str, object]:
        jobs = self.jobs + [job.payload for job in self.batcher.flush()]
        return {"jobs": jobs, "rejects": self.rejects, "rows": self.rows, "tally": self.engine.tally}


def export(text: str, engine_name: str, mapping: FieldMapping, piece: int) -> dict[str, object]:
    delta = Delta(None, True, None)
    outputs: Outputs | None = None
    for parser, block in blocks(text, engine_name == "columnar", piece):
        if outputs is None:
            assert parser.columns is not None
            mapper = ProfileMapper.for_columns(mapping, parser.columns)
            outputs = Outputs(engine_for(engine_name, mapper, delta, mapping), delta)
        outputs.add(block)  # type: ignore[arg-type]
    assert outputs is not None
    return outputs.result()


@pytest.mark.parametrize("invalid_fields, region", [("drop", None), ("reject", None), ("drop", "GB")])
@pytest.mark.parametrize("piece", [1_500, 9_000])
def test_columnar_and_row_paths_give_byte_identical_jobs_and_identical_rejects(invalid_fields: str,
                                                                                region: str | None,
                                                                                piece: int) -> None:
    mapping = FieldMapping.from_pairs("email", PAIRS, region, invalid_fields)
    text = corpus(3_000, seed=piece)
    row, columnar = export(text, "row", mapping, piece), export(text, "columnar", mapping, piece)
    assert columnar["jobs"] == row["jobs"]
    assert columnar["rejects"] == row["rejects"]
    assert columnar["rows"] == row["rows"] == 3_000 + len(NASTY)
    assert len(row["jobs"]) > 50  # type: ignore[arg-type]
    tally = columnar["tally"]
    assert tally.columnar > 10 and tally.row >= 3  # type: ignore[attr-defined]  # both paths were taken


async def parquet_export(path: Path, engine_name: str, mapping: FieldMapping) -> dict[str, object]:
    """``export`` for a Parquet file, read a record batch at a time by the real source."""
    segment = await open_segment(str(path), keep_text=engine_name == "columnar")
    delta = Delta(None, True, None)
    outputs = Outputs(engine_for(engine_name, ProfileMapper.for_columns(mapping, segment.columns), delta, mapping), delta)
    async for block in segment.blocks:
        outputs.add(block)
    return outputs.result()


async def test_parquet_batches_take_the_columnar_path_with_the_same_output(tmp_path: Path) -> None:
    """String columns without nulls go columnar; a batch with a null, and a file with a number
    column, take the row path (a null and a number are not text there), all with equal output."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [line.split(",") for line in corpus(20_000, seed=5).removeprefix("\ufeff").split("\r\n")[1:-1] if line]
    rows = [(row + [""] * 8)[:8] for row in rows if "\udcff" not in ",".join(row)]  # Parquet text is valid UTF-8
    columns = {name: [row[i] for row in rows] for i, name in enumerate(HEADER.split(","))}
    columns["city"][100] = None  # the first batch holds a null
    for at, value in ((9_000, "New\nline"), (9_001, "Nul\x00byte"), (17_000, 'Quote" and \\ back')):
        columns["first_name"][at] = value  # a Parquet value may hold what a CSV line cannot
    mapping = FieldMapping.from_pairs("email", PAIRS)
    for name, table in (("strings", pa.table(columns)),
                        ("numbers", pa.table({**columns, "tier": list(range(len(rows)))}))):
        path = tmp_path / f"{name}.parquet"
        pq.write_table(table, path, row_group_size=8_192)
        row, columnar = await parquet_export(path, "row", mapping), await parquet_export(path, "columnar", mapping)
        assert columnar["jobs"] == row["jobs"] and columnar["rejects"] == row["rejects"]
        assert len(row["jobs"]) > 300  # type: ignore[arg-type]
        tally = columnar["tally"]
        assert (tally.columnar, tally.row) == ((1, 2) if name == "strings" else (0, 3))  # type: ignore[attr-defined]


def test_every_reject_reason_of_the_corpus_is_met() -> None:
    """The corpus really holds what the differential test claims to cover."""
    mapping = FieldMapping.from_pairs("email", PAIRS, None, "reject")
    reasons = " | ".join(r.reason for r in export(corpus(200, seed=1), "row", mapping, 1_500)["rejects"])  # type: ignore[attr-defined]
    for reason in ("email is empty", "email is not a valid address", "first_name is 1001 characters",
                   "location.country must be text", "phone_number is not a valid international", "bytes; Klaviyo allows",
                   "row holds bytes that are not valid", "unclosed quote"):
        assert reason in reasons


def test_python_space_is_what_str_strip_removes() -> None:
    assert "".join(chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()) == PYTHON_SPACE


async def export_twice(start_simulator: object, tmp_path: Path, engine: str, first: Path,
                       second: Path) -> tuple[object, ...]:
    """A full run, then a mirror refresh, into a fresh simulator with the engine's own snapshot."""
    sim = await start_simulator()  # type: ignore[operator]
    mapping = FieldMapping.from_pairs("email", PAIRS)
    state = tmp_path / f"state-{engine}"
    reports = []
    for number, source in enumerate((first, second)):
        plan = ExportPlan("t", str(source), LIST_ID, mapping, engine=engine,
                          sync=SyncPlan(LocalSnapshotStore(state), "mirror", max_remove_fraction=0.9))
        async with client_for(sim) as klaviyo:
            report = await run_export(plan, klaviyo, RejectsFile(tmp_path / f"{engine}-{number}.csv", always=True))
        assert report.blocks.columnar if engine == "columnar" else not report.blocks.columnar
        reports.append((report.status, report.counts, {k: v for k, v in report.sync.items() if k != "snapshot"},
                        (tmp_path / f"{engine}-{number}.csv").read_text()))
    members = sorted(sim.simulator.account.member_emails(LIST_ID))
    arrays = (state / "snapshot.bin").read_bytes().split(b"\n", 3)[3]  # after the header (run id, time) and its checksum
    return reports, members, arrays, sim.simulator.stats.profiles_received


async def test_a_delta_refresh_through_the_pipeline_is_the_same_on_both_paths(start_simulator, tmp_path) -> None:
    """Skipping unchanged rows before mapping, classifying, removing leavers and writing the
    snapshot, with a real simulator: the same counts, rejects, list and snapshot arrays."""
    first = tmp_path / "first.csv"
    first.write_bytes(corpus(20_000, seed=3).encode("utf-8", "surrogateescape"))
    lines = first.read_bytes().split(b"\r\n")
    for i in range(5, len(lines) - 1, 97):
        lines[i] = lines[i].replace(b"First", b"Renamed", 1)
    second = tmp_path / "second.csv"
    second.write_bytes(b"\r\n".join(lines[:15_000] + lines[15_500:]))
    row = await export_twice(start_simulator, tmp_path, "row", first, second)
    columnar = await export_twice(start_simulator, tmp_path, "columnar", first, second)
    assert columnar == row
    (_, counts, sync, _) = row[0][1]
    # The corpus holds undecodable bytes and stray quotes: both paths hold the removals alike.
    assert counts.unchanged > 15_000 and sync["changed"] > 100 and sync["leavers"] > 400
    assert counts.removed == 0 and counts.remove_pending == sync["leavers"] and sync["damage"]
