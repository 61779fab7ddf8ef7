"""A run's files for people: its rejects and its preview to download, and the preview's
rows as JSON for the page. Only these names; a run id of any other shape addresses nothing,
and a file too large for an HTTP answer says how to fetch it instead."""

from __future__ import annotations

import csv
import io

from exporter.runs.api import ApiResponse
from exporter.runs.store import FileTooLarge, RunStore, is_run_id

DOWNLOADS = {"rejects.csv", "preview.csv"}
MAX_DOWNLOAD_BYTES = 50_000_000
MAX_PREVIEW_ROWS = 200


async def answer(store: RunStore, export: str, run_id: str, file: str) -> ApiResponse:
    if file not in DOWNLOADS | {"preview"}:
        return ApiResponse(404, {"error": f"a run has no file {file!r}; it has {', '.join(sorted(DOWNLOADS))}"})
    if not is_run_id(run_id):
        return ApiResponse(404, {"error": f"export {export!r} has no run {run_id!r}"})
    name = "preview.csv" if file == "preview" else file
    try:
        raw = await store.load_file(export, run_id, name, MAX_DOWNLOAD_BYTES)
    except FileTooLarge as exc:
        return ApiResponse(413, {"error": f"{name} is {exc.size:,} bytes, too large to answer over HTTP; download it "
                                          f"from the reports container: {export}/{run_id}/{name}"})
    if raw is None:
        return ApiResponse(404, {"error": f"run {run_id!r} has no {name} (a run without rejects has no rejects "
                                          "file; only a dry run has a preview)"})
    if file == "preview":
        rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8", errors="replace"))))[:MAX_PREVIEW_ROWS]
        return ApiResponse(200, {"rows": rows})
    return ApiResponse(200, {}, {"Content-Disposition": f'attachment; filename="{export}-{run_id}-{name}"',
                                 "X-Content-Type-Options": "nosniff"}, raw=raw, content_type="text/csv")
