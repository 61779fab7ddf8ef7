"""The page people run the exporter from: static files shipped in the package and served by
the app at ``/api/ui`` (no build step, no CDN, no framework: a few hundred lines of plain
JavaScript modules that call the app's own management API, same origin, as the signed-in
person). Only the files in ``static/`` are served, by exact name, with a strict
Content-Security-Policy: no inline script or style, nothing from another origin.
"""

from __future__ import annotations

from pathlib import Path

from exporter.runs.api import ApiResponse

STATIC = Path(__file__).with_name("static")
TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}  # utf-8
ASSETS = {path.name: path for path in STATIC.iterdir() if path.suffix in TYPES}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "X-Frame-Options": "DENY", "Cache-Control": "no-cache"}


def asset(name: str) -> ApiResponse:
    path = ASSETS.get(name)
    if path is None:
        return ApiResponse(404, {}, dict(HEADERS), raw=b"not found", content_type="text/plain")
    return ApiResponse(200, {}, dict(HEADERS), raw=path.read_bytes(), content_type=TYPES[path.suffix])
