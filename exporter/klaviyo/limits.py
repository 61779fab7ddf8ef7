"""Klaviyo's documented limits for the bulk profile import endpoints (revision 2026-07-15).

One place for the numbers, so the batcher, the client's rate limiter and the simulator
cannot drift apart.
"""

REVISION = "2026-07-15"
# Every revision Klaviyo has published (what its API accepts in the ``revision`` header, a
# ".pre" of one included); the simulator refuses any other. The client pins REVISION.
PUBLISHED_REVISIONS = frozenset({
    "2023-01-24", "2023-02-22", "2023-06-15", "2023-07-15", "2023-08-15", "2023-09-15", "2023-10-15",
    "2023-12-15", "2024-02-15", "2024-05-15", "2024-06-15", "2024-07-15", "2024-10-15", "2025-01-15",
    "2025-04-15", "2025-07-15", "2025-10-15", "2026-01-15", "2026-04-15", "2026-07-15", "2026-10-15",
})
JSONAPI = "application/vnd.api+json"

MAX_PROFILES_PER_JOB = 10_000
# Klaviyo documents 5 MB a request and 100 KB a profile, in decimal units: what it (and the
# simulator) enforce. What we build stays 2% and 1% under them, so a body Klaviyo measures a
# little differently (its envelope, a header) is never refused for its size.
KLAVIYO_JOB_BYTES = 5_000_000
KLAVIYO_PROFILE_BYTES = 100_000
MAX_JOB_BYTES = 4_900_000
MAX_PROFILE_BYTES = 99_000

# (requests, window seconds): the bulk import tier allows 10/s burst and 150/min steady.
BULK_IMPORT_RATE = ((10, 1.0), (150, 60.0))
PAGE_SIZE_MAX = 100

# List membership changes (POST/DELETE /api/lists/{id}/relationships/profiles): ids only.
LIST_MEMBERSHIP_RATE = ((10, 1.0), (150, 60.0))
MAX_MEMBERSHIP_IDS = 1_000
# Profile reads (GET /api/profiles with an email filter; GET /api/lists/{id}/profiles).
PROFILE_READ_RATE = ((75, 1.0), (750, 60.0))
MAX_FILTER_VALUES = 100  # no documented cap on any(); we send at most a page's worth
# Consent (POST /api/profile-subscription-bulk-create-jobs): 1,000 profiles a job, its own tier.
SUBSCRIPTION_RATE = ((75, 1.0), (750, 60.0))
MAX_SUBSCRIPTION_PROFILES = 1_000

# Encoded characters of the email values in one filter: URLs past ~8 KB are refused by many
# proxies and servers, and 100 long, percent-encoded emails can pass that.
MAX_FILTER_URL_CHARS = 6_000


# Each rate-limit tier the client counts requests against, with Klaviyo's limits for it.
TIER_LIMITS = {"import": BULK_IMPORT_RATE, "membership": LIST_MEMBERSHIP_RATE, "profiles": PROFILE_READ_RATE,
               "subscriptions": SUBSCRIPTION_RATE}
