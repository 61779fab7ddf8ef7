"""Every app setting the function app reads, in one place.

The infrastructure test compares this list with the app settings ``infra/`` provisions,
so a setting added here and forgotten there fails CI instead of failing in Azure.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Setting:
    name: str
    default: str | None  # None: required in Azure
    purpose: str


SETTINGS = (
    Setting("EXPORT_SCHEDULE", "0 0 */6 * * *", "NCRONTAB schedule of the timer that runs every enabled export"),
    Setting("EXPORTS_CONFIG_URL", "", "blob URL of the exports JSON; empty: the bundled exports.json"),
    Setting("KEY_VAULT_URL", "", "Key Vault holding the Klaviyo API keys; empty: keys from environment variables"),
    Setting("KLAVIYO_SECRET_NAME", "klaviyo-api-key", "secret name for connections that do not name one"),
    Setting("KLAVIYO_BASE_URL", "https://a.klaviyo.com", "Klaviyo API base URL (the simulator's, locally)"),
    Setting("SEGMENTS_CONTAINER", "segments", "container the segment files are dropped into"),
    Setting("REPORTS_CONTAINER", "reports", "container for run state, reports, rejects and locks"),
    Setting("RUNS_QUEUE", "export-runs", "queue that carries runs to workers and continuations"),
    Setting("RUN_TIME_BUDGET_SECONDS", "1500", "seconds a worker runs before handing the rest to a continuation"),
    Setting("RUN_DEADLINE_SECONDS", "21600", "seconds after its first leg that an unfinished run fails, freeing its export"),
    Setting("AZURE_CLIENT_ID", "", "client id of the user-assigned identity, for DefaultAzureCredential"),
)
BY_NAME = {s.name: s for s in SETTINGS}


# Settings for a developer's machine only: ``local.settings.sample.json`` sets them, and the
# infrastructure test checks that ``infra/`` never does.
LOCAL_MODE = Setting("EXPORTER_LOCAL_MODE", "false",
                     "true allows 'env' connections (a Klaviyo key in an environment variable); local runs only")
EXPORTS_CONFIG_FILE = Setting("EXPORTS_CONFIG_FILE", "",
                              "a local exports JSON file read when EXPORTS_CONFIG_URL is empty (default: the bundled "
                              "exports.json); local runs only: exports.local.json works with the simulator")
SECRETS_FILE = Setting("EXPORTER_SECRETS_FILE", "~/.klaviyo-exporter/secrets.json",
                       "where the management API keeps Klaviyo keys when there is no Key Vault; local runs only: a "
                       "file outside the repository, readable by its owner only")
LOCAL_ONLY = (LOCAL_MODE, EXPORTS_CONFIG_FILE, SECRETS_FILE)
