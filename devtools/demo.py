"""The README's first command: the main job end to end on local defaults.

Starts Azurite and the Klaviyo simulator on free loopback ports, uploads a generated
segment to Azurite, runs ``python -m exporter export`` on its blob URL exactly as a user
would, then prints the report and how many members the Klaviyo list received.

``--cdm`` exports a customer-data platform's CDM export folder instead (``model.json``
and headerless part files of two runs, from ``devtools/samples/cdm-export``): the
newest run is read as one segment.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from devtools.azurite import free_port, start_azurite, upload
from devtools.sample import MAPPING, segment_bytes

LIST_ID = "DemoVIP"
DEMO_FOLDER = Path(__file__).resolve().parent.parent / ".demo"  # the report, rejects and snapshot of the last demo
ROWS = 25_000


def wait_for(url: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


CDM_SAMPLE = Path(__file__).parent / "samples" / "cdm-export"
CDM_FOLDER = "CustomerInsights_demo/VIPExport/"


async def upload_cdm_sample(azurite) -> str:  # type: ignore[no-untyped-def]
    """The sample folder, older run first (a run's time is its files' upload time)."""
    url = ""
    for path in sorted(CDM_SAMPLE.rglob("*"), key=lambda p: (p.name == "model.json", str(p))):
        if path.is_file():
            url = await upload(azurite, "segments", CDM_FOLDER + path.relative_to(CDM_SAMPLE).as_posix(),
                               path.read_bytes())
    return url.rpartition("/model.json")[0] + "/"


def main(argv: list[str] | None = None) -> int:
    cdm = "--cdm" in (sys.argv[1:] if argv is None else argv)
    print("demo: starting Azurite (the storage emulator) and the Klaviyo simulator on free loopback ports", flush=True)
    azurite = start_azurite()
    port = free_port()
    simulator = subprocess.Popen([sys.executable, "-m", "exporter", "simulate-klaviyo", "--port", str(port),
                                  "--list", LIST_ID], stderr=subprocess.DEVNULL)
    try:
        klaviyo = f"http://127.0.0.1:{port}"
        wait_for(f"{klaviyo}/_sim/stats")
        if cdm:
            url = asyncio.run(upload_cdm_sample(azurite))
            print(f"Azurite on port {azurite.blob_port}, Klaviyo simulator on {klaviyo}; "
                  f"uploaded a CDM export folder (model.json and two runs of 3 part files) to segments/{CDM_FOLDER}",
                  flush=True)
        else:
            url = asyncio.run(upload(azurite, "segments", "demo/vip-customers.csv", segment_bytes(ROWS, bad_every=500)))
            print(f"Azurite on port {azurite.blob_port}, Klaviyo simulator on {klaviyo}; "
                  f"uploaded a {ROWS:,}-row segment to segments/demo/vip-customers.csv", flush=True)
        out = DEMO_FOLDER  # in the repository, git-ignored, replaced by each run: nothing left in the temp folder
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        env = dict(os.environ, AZURE_STORAGE_CONNECTION_STRING=azurite.connection_string,
                   KLAVIYO_API_KEY="pk_demo_local_simulator_key")
        command = [sys.executable, "-m", "exporter", "export",
                   "--source", url,
                   "--list-id", LIST_ID, "--email-column", "email", "--klaviyo-url", klaviyo,
                   "--report", str(out / "report.json"), "--rejects", str(out / "rejects.csv"),
                   "--state", str(out / "state")]  # this simulator's list starts empty: so does its snapshot
        for pair in MAPPING:
            command += ["--map", pair]
        print(f"demo: running {' '.join(command[1:4])} ... into list {LIST_ID}\n", flush=True)
        result = subprocess.run(command, env=env)
        members = json.loads(urllib.request.urlopen(f"{klaviyo}/_sim/lists/{LIST_ID}").read())
        print(f"\nKlaviyo list {LIST_ID} now has {members['count']:,} members.")
        print(f"Report: {out / 'report.json'}   Rejected rows: {out / 'rejects.csv'}")
        return result.returncode
    finally:
        simulator.terminate()
        simulator.wait(10)
        azurite.stop()


if __name__ == "__main__":
    sys.exit(main())
