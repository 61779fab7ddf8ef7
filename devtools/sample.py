"""Synthetic customer segments for the demo, the tests and the benchmark.

Deterministic for a seed. ``bad_every`` sprinkles in the rows a real export meets (a
broken address, an empty email, a duplicate, an undeliverable domain) so the demo shows
the rejects path, not only the happy one.
"""

from __future__ import annotations

import random
from typing import Iterator

import orjson

HEADER = "email,first_name,last_name,phone,city,tier\n"
FIRST = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tim")
LAST = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Perlman", "Berners-Lee")
CITIES = ("London", "Paris", "Berlin", "Madrid", "Rome", "Oslo", "Dublin", "Lisbon")
TIERS = ("gold", "silver", "bronze")


def segment_lines(rows: int, seed: int = 7, bad_every: int = 0, start: int = 0) -> Iterator[str]:
    """The CSV text, header first, one line per row (rows ``start`` to ``start + rows - 1``)."""
    rng = random.Random(seed)
    yield HEADER
    for i in range(start, start + rows):
        first, last = FIRST[i % 10], LAST[(i // 10) % 10]
        email = f"{first.lower()}.{last.lower()}.{i}@example.com"
        if bad_every and i % bad_every == bad_every - 1:
            email = ("not-an-email", "", f"{FIRST[0].lower()}.{LAST[0].lower()}.0@example.com",
                     f"user{i}@example.invalid")[(i // bad_every) % 4]
        phone = f"+44 20 7{rng.randrange(1000000):07d}"
        yield f"{email},{first},{last},{phone},{CITIES[i % 8]},{TIERS[i % 3]}\n"


def refreshed_lines(rows: int, *, changed: range = range(0), removed: range = range(0), added: int = 0,
                    bad_every: int = 0) -> Iterator[str]:
    """The segment of ``rows`` rows as a later refresh sees it: rows in ``changed`` renamed
    (first name "Renamed"), rows in ``removed`` gone, ``added`` new rows at the end."""
    for i, line in enumerate(segment_lines(rows + added, bad_every=bad_every)):
        if i == 0:
            yield line
        elif i - 1 in removed:
            continue
        elif i - 1 in changed:
            email, _, rest = line.partition(",")
            yield f"{email},Renamed,{rest.split(',', 1)[1]}"
        else:
            yield line


MAPPING = ["first_name=first_name", "last_name=last_name", "phone=phone_number", "city=location.city",
           "tier=properties.tier"]


def segment_bytes(rows: int, seed: int = 7, bad_every: int = 0) -> bytes:
    return "".join(segment_lines(rows, seed, bad_every)).encode()


def _refresh_time(folder: str) -> str:
    """When the platform wrote a run, from its folder (``2026/11/25/0600``), as CDM states it."""
    digits = "".join(ch for ch in folder if ch.isdigit()).ljust(12, "0")[:12]
    return f"{digits[:4]}-{digits[4:6]}-{digits[6:8]}T{digits[8:10]}:{digits[10:12]}:00Z"


def cdm_export_folder(runs: list[tuple[str, int, int]], entity: str = "VIP", parts: int = 3, bad_every: int = 0,
                      listed: int = 1, origin: str = "https://contoso.dfs.core.windows.net/customerinsights/"
                      "CustomerInsights_0a1b/VIPExport") -> dict[str, bytes]:
    """A customer-data platform's CDM export folder, by name below it: for each run
    (``(folder, first row, rows)``, oldest first) headerless part files
    ``{entity}/{folder}/{entity}_{n}.csv``, and a ``model.json`` whose partitions (absolute
    URLs of where the platform wrote them, as it writes them) are the last ``listed`` runs'."""
    files: dict[str, bytes] = {}
    partitions = []
    for number, (folder, start, rows) in enumerate(runs):
        lines = list(segment_lines(rows, seed=7 + start, bad_every=bad_every, start=start))[1:]
        size = -(-len(lines) // parts)
        for part in range(parts):
            name = f"{entity}/{folder}/{entity}_{part + 1}.csv"
            files[name] = "".join(lines[part * size:(part + 1) * size]).encode()
            if number >= len(runs) - listed:
                partitions.append({"name": f"{entity}_{part + 1}", "refreshTime": _refresh_time(folder),
                                   "location": f"{origin}/{name}",
                                   "fileFormatSettings": {"$type": "CsvFormatSettings", "columnHeaders": False,
                                                          "delimiter": ",", "quoteStyle": "QuoteStyle.Csv",
                                                          "csvStyle": "CsvStyle.QuoteAlways", "encoding": "UTF-8"}})
    attributes = [{"name": name, "dataType": "string"} for name in HEADER.strip().split(",")]
    files["model.json"] = orjson.dumps({
        "name": "VIPExport", "version": "1.0", "modifiedTime": "2026-11-25T06:00:00Z",
        "entities": [{"$type": "LocalEntity", "name": entity, "attributes": attributes, "partitions": partitions}]},
        option=orjson.OPT_INDENT_2)
    return files
