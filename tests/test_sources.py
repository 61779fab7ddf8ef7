"""Sources: every format and delimiter, BOM, quoted newlines, gzip, chunk boundaries."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from exporter.errors import SourceError
from exporter.sources import open_segment
from exporter.sources.csv_format import CsvParser
from exporter.sources.lines import LineSplitter
from exporter.sources.rows import RowBlock
from tests.conftest import write


async def read_all(source: str, credential: object = None) -> tuple[list[str], list[int], list[list[object]], list]:
    segment = await open_segment(source, credential)
    lines, rows, rejects = [], [], []
    async for block in segment.blocks:
        lines += block.lines
        rows += [list(r) for r in block.rows]
        rejects += block.rejects
    return segment.columns, lines, rows, rejects


def parse_whole(text: str) -> RowBlock:
    """One CSV text through the line splitter and the parser, as ``open_segment`` does."""
    lines, rejects = LineSplitter().feed(text, final=True)
    block = CsvParser().feed(lines, final=True)
    block.rejects[:0] = rejects
    return block


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
async def test_csv_delimiters_are_detected(tmp_path: Path, delimiter: str) -> None:
    text = delimiter.join(["email", "name", "city"]) + "\n" + delimiter.join(["a@x.com", "Ann", "Oslo"]) + "\n"
    columns, lines, rows, _ = await read_all(write(tmp_path, "s.csv", text.encode()))
    assert columns == ["email", "name", "city"]
    assert rows == [["a@x.com", "Ann", "Oslo"]]
    assert lines == [2]


async def test_bom_is_stripped_from_the_first_column(tmp_path: Path) -> None:
    columns, _, rows, _ = await read_all(write(tmp_path, "s.csv", b"\xef\xbb\xbfemail,name\r\na@x.com,Ann\r\n"))
    assert columns == ["email", "name"]
    assert rows == [["a@x.com", "Ann"]]


async def test_quoted_fields_with_newlines_keep_their_starting_line(tmp_path: Path) -> None:
    data = b'email,note\na@x.com,"one\ntwo\nthree"\nb@x.com,"say ""hi"""\nc@x.com,plain\n'
    _, lines, rows, _ = await read_all(write(tmp_path, "s.csv", data))
    assert rows == [["a@x.com", "one\ntwo\nthree"], ["b@x.com", 'say "hi"'], ["c@x.com", "plain"]]
    assert lines == [2, 5, 6]


def test_chunk_boundaries_inside_quoted_fields_do_not_split_records() -> None:
    text = 'email,note\n' + "".join(f'u{i}@x.com,"line one\nline ""two"", {i}"\n' for i in range(50))
    whole = CsvParser()
    expected = whole.feed(text, final=True)
    for size in (1, 2, 3, 7, 64):
        parser, splitter = CsvParser(), LineSplitter()
        lines, rows = [], []
        for start in range(0, len(text), size):
            block = parser.feed(splitter.feed(text[start:start + size])[0])
            lines += block.lines
            rows += block.rows
        block = parser.feed(splitter.feed("", final=True)[0], final=True)
        lines += block.lines
        rows += block.rows
        assert rows == expected.rows and lines == expected.lines, size
    assert len(expected.rows) == 50 and expected.lines[1] == 4


async def test_gzip_csv_is_read_like_plain_csv(tmp_path: Path) -> None:
    data = b"email;name\na@x.com;Ann\nb@x.com;Bob\n"
    plain = await read_all(write(tmp_path, "s.csv", data))
    zipped = await read_all(write(tmp_path, "s.csv.gz", gzip.compress(data)))
    assert zipped == plain and len(plain[2]) == 2


async def test_concatenated_gzip_members_are_all_read(tmp_path: Path) -> None:
    data = gzip.compress(b"email\na@x.com\n") + gzip.compress(b"b@x.com\n")
    _, _, rows, _ = await read_all(write(tmp_path, "s.csv.gz", data))
    assert rows == [["a@x.com"], ["b@x.com"]]


async def test_truncated_gzip_is_a_clear_error(tmp_path: Path) -> None:
    data = gzip.compress(b"email\n" + b"a@x.com\n" * 1000)
    with pytest.raises(SourceError, match="truncated"):
        await read_all(write(tmp_path, "s.csv.gz", data[: len(data) // 2]))


@pytest.mark.parametrize("name", ["s.jsonl", "s.jsonl.gz"])
async def test_json_lines(tmp_path: Path, name: str) -> None:
    records = [{"email": "a@x.com", "score": 3}, {"email": "b@x.com", "score": 4.5, "extra": True}]
    text = "\n".join(json.dumps(r) for r in records) + "\n\n[1,2]\n{broken\n"
    data = gzip.compress(text.encode()) if name.endswith(".gz") else text.encode()
    columns, lines, rows, rejects = await read_all(write(tmp_path, name, data))
    assert columns == ["email", "score"]
    assert rows == [["a@x.com", 3], ["b@x.com", 4.5]]
    assert lines == [1, 2]
    assert [(r.line, r.reason) for r in rejects] == [(4, "line 4 is not a JSON object (a JSON array)"),
                                                     (5, "line 5 is not a JSON object (invalid JSON)")]


async def test_undecodable_bytes_are_flagged_on_their_row(tmp_path: Path) -> None:
    data = b"email,name\na@x.com,Ann\nb@x.com,\xff\xfe\nc@x.com,Cy\n"
    segment = await open_segment(write(tmp_path, "s.csv", data))
    blocks = [b async for b in segment.blocks]
    assert any(b.has_undecodable for b in blocks)


async def test_empty_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="empty"):
        await open_segment(write(tmp_path, "s.csv", b""))


async def test_missing_local_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="cannot read"):
        await read_all(str(tmp_path / "nope.csv"))


async def test_blob_source_streams_from_azurite(azurite, upload, tmp_path: Path) -> None:
    data = "email,name\n" + "".join(f"u{i}@x.com,N{i}\n" for i in range(30_000))
    url = await upload("dir/seg.csv.gz", gzip.compress(data.encode()))
    columns, lines, rows, _ = await read_all(url, azurite.credential)
    assert columns == ["email", "name"]
    assert len(rows) == 30_000 and rows[-1] == ["u29999@x.com", "N29999"] and lines[-1] == 30_001


async def test_missing_blob_is_a_clear_error(azurite, upload) -> None:
    url = await upload("present.csv", b"email\n")
    with pytest.raises(SourceError, match="blob not found"):
        await read_all(url.replace("present", "absent"), azurite.credential)


@pytest.mark.parametrize("text", [
    "email,name\r\na@x.com,Ann\r\n\r\nb@x.com, Bob \r\n",
    "email;name\na@x.com;Ann\n\nb@x.com;\nc@x.com\n",
    "email|name|x\na@x.com||\n",
])
def test_the_quote_free_fast_path_matches_the_csv_module(text: str) -> None:
    fast = parse_whole(text)
    with_quote = parse_whole(text + 'z@x.com,"q"\n')  # a quote forces the csv module
    assert fast.rows == with_quote.rows[:-1] and fast.lines == with_quote.lines[:-1]
    assert fast.rows  # the text did hold rows


@pytest.mark.parametrize("name", ["export.gz", "export.csv.gz", "export"])
async def test_json_lines_are_recognised_by_content_whatever_the_name(tmp_path: Path, name: str) -> None:
    text = b'\n  {"email": "a@x.com", "tier": "gold"}\n{"email": "b@x.com"}\n'
    data = gzip.compress(text) if name.endswith(".gz") else text
    columns, lines, rows, _ = await read_all(write(tmp_path, name, data))
    assert columns == ["email", "tier"] and rows == [["a@x.com", "gold"], ["b@x.com", None]] and lines == [2, 3]


async def test_the_format_can_be_forced(tmp_path: Path) -> None:
    segment = await open_segment(write(tmp_path, "odd.jsonl", b"email\na@x.com\n"), format="csv")
    assert segment.columns == ["email"]


async def test_a_windows_1252_file_reads_with_its_encoding(tmp_path: Path) -> None:
    data = "email,name\nzoe@x.com,Zoë\nrene@x.com,René\n".encode("cp1252")
    as_utf8 = await read_all(write(tmp_path, "s.csv", data))
    assert [r.reason for r in as_utf8[3]] == []  # the accents survive as undecodable bytes in the rows...
    assert as_utf8[2][0][1] != "Zoë"
    segment = await open_segment(write(tmp_path, "s.csv", data), encoding="cp1252")
    rows = [row async for block in segment.blocks for row in block.rows]
    assert rows == [["zoe@x.com", "Zoë"], ["rene@x.com", "René"]]


async def test_a_segment_knows_its_stored_size_from_a_file_and_from_a_blob(tmp_path: Path, azurite, upload) -> None:
    """The run sizes its de-duplication table once from the stored size (a table that grows
    holds two tables at once): a blob tells it when its download starts, gzip or not."""
    data = gzip.compress(b"email,name\n" + b"".join(b"u%d@example.com,N\n" % i for i in range(5_000)))
    local = await open_segment(write(tmp_path, "s.csv.gz", data))
    blob = await open_segment(await upload("sized/s.csv.gz", data), azurite.credential)
    for segment in (local, blob):
        assert segment.size == len(data)
        assert sum([len(block.rows) async for block in segment.blocks]) == 5_000


async def test_a_blob_of_several_downloads_arrives_whole_in_bounded_pieces(azurite, upload, monkeypatch) -> None:
    """Downloads are large (few requests) and read one ahead; what the parser sees is still
    pieces of at most ``CHUNK_BYTES``, every byte once, in order."""
    from exporter.sources import files

    data = b"email,name\n" + b"".join(b"u%d@example.com,Name %d\n" % (i, i) for i in range(200_000))
    assert len(data) > 2 * files.DOWNLOAD_BYTES
    url = await upload("big/seg.csv", data)
    pieces = [piece async for piece in files.blob_chunks(url, azurite.credential)]
    assert b"".join(pieces) == data and max(map(len, pieces)) <= files.CHUNK_BYTES
    columns, lines, rows, _ = await read_all(url, azurite.credential)
    assert len(rows) == 200_000 and rows[-1] == ["u199999@example.com", "Name 199999"] and lines[-1] == 200_001


async def test_a_blob_replaced_between_its_downloads_is_refused(azurite, upload) -> None:
    from exporter.sources import files

    data = b"email\n" + b"".join(b"u%d@example.com\n" % i for i in range(1_000_000))
    assert len(data) > 5 * files.DOWNLOAD_BYTES  # more downloads than are read ahead
    url = await upload("moving/seg.csv", data)
    pieces = files.blob_chunks(url, azurite.credential)
    await pieces.__anext__()  # the first download is in; the one read ahead may be too
    await upload("moving/seg.csv", data.replace(b"u1@", b"v1@"))
    with pytest.raises(SourceError, match="was replaced or changed after the run started"):
        async for _ in pieces:
            pass


async def test_read_ahead_keeps_order_hands_over_a_failure_in_turn_and_stops_with_its_reader() -> None:
    import asyncio

    from exporter.sources.files import read_ahead

    fetched: list[int] = []

    async def items(fail_at: int | None = None):
        for i in range(5):
            if i == fail_at:
                raise OSError("lost")
            fetched.append(i)
            yield i
            await asyncio.sleep(0)

    assert [i async for i in read_ahead(items())] == [0, 1, 2, 3, 4]
    got: list[int] = []
    with pytest.raises(OSError, match="lost"):
        async for i in read_ahead(items(fail_at=3)):
            got.append(i)
    assert got == [0, 1, 2]
    fetched.clear()
    reader = read_ahead(items())
    assert await reader.__anext__() == 0
    await reader.aclose()
    await asyncio.sleep(0.01)
    assert fetched[-1] <= 2  # one item ahead at most, then nothing more is fetched
