"""The page on a developer's machine: ``scripts/page`` starts Azurite and the Klaviyo
simulator, uploads a sample segment, and serves the app (``devtools.host``) on
http://127.0.0.1:7071 with a sample exports document, signed in as an administrator (or,
with ``--as contributor``, a contributor), until Ctrl-C. Open http://127.0.0.1:7071/api/ui.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys

from devtools.azurite import free_port, start_azurite, upload
from devtools.demo import DEMO_FOLDER, LIST_ID, wait_for
from devtools.sample import segment_bytes

ADMIN_ID = "a0000000-0000-4000-8000-00000000000a"
CONTRIBUTOR_ID = "c0000000-0000-4000-8000-00000000000c"
KEY = "pk_demo_local_simulator_key"


def exports_document() -> dict:
    return {"connections": [{"name": "local", "display_name": "Klaviyo simulator (local)", "env": "KLAVIYO_API_KEY",
                             "users": [CONTRIBUTOR_ID]}],
            "exports": [{"name": "vip-customers", "connection": "local", "source": "demo/", "list_id": LIST_ID,
                         "settle_seconds": 0, "mapping": {"email": "email", "first_name": "first_name",
                                                          "properties.tier": "tier"}}]}


async def serve(port: int, principal: str) -> None:
    from devtools.host import LocalHost  # after the environment is set: it builds the app's runtime

    host = await LocalHost("local-function-key", "local-master-key", signed_in=principal).start(port)
    print(f"page: open {host.url}/api/ui   (Ctrl-C stops everything)", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await host.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/page", description=__doc__.split("\n\n")[0])
    parser.add_argument("--as", dest="role", choices=("admin", "contributor"), default="admin")
    parser.add_argument("--port", type=int, default=7071)
    args = parser.parse_args(argv)
    azurite = start_azurite()
    klaviyo_port = free_port()
    simulator = subprocess.Popen([sys.executable, "-m", "exporter", "simulate-klaviyo", "--port", str(klaviyo_port),
                                  "--list", LIST_ID, "--job-delay", "1"], stderr=subprocess.DEVNULL)
    try:
        wait_for(f"http://127.0.0.1:{klaviyo_port}/_sim/stats")
        asyncio.run(upload(azurite, "segments", "demo/vip-customers.csv", segment_bytes(25_000, bad_every=500)))
        folder = DEMO_FOLDER / "page"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "exports.json").write_text(json.dumps(exports_document(), indent=2))
        os.environ.update(AzureWebJobsStorage=azurite.connection_string, EXPORTS_CONFIG_FILE=str(folder / "exports.json"),
                          KLAVIYO_BASE_URL=f"http://127.0.0.1:{klaviyo_port}", KLAVIYO_API_KEY=KEY,
                          EXPORTER_LOCAL_MODE="true", KLAVIYO_POLL_SECONDS="0.5")
        from exporter.manage.principal import encode

        principal = (encode(ADMIN_ID, ("Exporter.Admin",), name="Local admin") if args.role == "admin" else
                     encode(CONTRIBUTOR_ID, ("Exporter.Contributor",), name="Local contributor"))
        asyncio.run(serve(args.port, principal))
    except KeyboardInterrupt:
        pass
    finally:
        simulator.terminate()
        simulator.wait(10)
        azurite.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
