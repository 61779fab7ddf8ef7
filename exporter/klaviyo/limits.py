"""Klaviyo's documented limits for the bulk profile import endpoints (revision 2026-07-15).

One place for the numbers, so the batcher, the client's rate limiter and the simulator
cannot drift apart.
"""

REVISION = "2026-07-15"
JSONAPI = "application/vnd.api+json"

MAX_PROFILES_PER_JOB = 10_000
MAX_JOB_BYTES = 5 * 1024 * 1024
MAX_PROFILE_BYTES = 100 * 1024

# (requests, window seconds): the bulk import tier allows 10/s burst and 150/min steady.
BULK_IMPORT_RATE = ((10, 1.0), (150, 60.0))
PAGE_SIZE_MAX = 100
