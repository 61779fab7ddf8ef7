"""Synthetic customer segments for the demo, the tests and the benchmark.

Deterministic for a seed. ``bad_every`` sprinkles in the rows a real export meets (a
broken address, an empty email, a duplicate, an undeliverable domain) so the demo shows
the rejects path, not only the happy one.
"""

from __future__ import annotations

import random
from typing import Iterator

HEADER = "email,first_name,last_name,phone,city,tier\n"
FIRST = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tim")
LAST = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Perlman", "Berners-Lee")
CITIES = ("London", "Paris", "Berlin", "Madrid", "Rome", "Oslo", "Dublin", "Lisbon")
TIERS = ("gold", "silver", "bronze")


def segment_lines(rows: int, seed: int = 7, bad_every: int = 0) -> Iterator[str]:
    """The CSV text, header first, one line per row."""
    rng = random.Random(seed)
    yield HEADER
    for i in range(rows):
        first, last = FIRST[i % 10], LAST[(i // 10) % 10]
        email = f"{first.lower()}.{last.lower()}.{i}@example.com"
        if bad_every and i % bad_every == bad_every - 1:
            email = ("not-an-email", "", f"{FIRST[0].lower()}.{LAST[0].lower()}.0@example.com",
                     f"user{i}@example.invalid")[(i // bad_every) % 4]
        phone = f"+44 20 7{rng.randrange(1000000):07d}"
        yield f"{email},{first},{last},{phone},{CITIES[i % 8]},{TIERS[i % 3]}\n"


MAPPING = ["first_name=first_name", "last_name=last_name", "phone=phone_number", "city=location.city",
           "tier=properties.tier"]


def segment_bytes(rows: int, seed: int = 7, bad_every: int = 0) -> bytes:
    return "".join(segment_lines(rows, seed, bad_every)).encode()
