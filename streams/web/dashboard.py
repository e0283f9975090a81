"""The analysts' dashboard: GET /dashboard and its static assets on the worker's Faust web.

The page is static HTML + vanilla JS that polls the JSON APIs (/stats, /stats/windows,
/quality) from the same origin, so it needs no network beyond the worker and works offline.
Assets are a fixed list read once when the pages are registered: no request path ever reaches
the filesystem.
"""

from __future__ import annotations

from importlib import resources

import faust

#: URL prefix of the dashboard's assets.
STATIC_PREFIX = "/dashboard/static/"

_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
}
# The page changes with releases, not with data: let browsers revalidate each load.
_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}


def load_assets() -> dict[str, tuple[bytes, str]]:
    """Asset name → (body, content type), for every file of a known type in static/."""
    folder = resources.files("streams.web") / "static"
    out: dict[str, tuple[bytes, str]] = {}
    for entry in folder.iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if entry.is_file() and suffix in _CONTENT_TYPES:
            out[entry.name] = (entry.read_bytes(), _CONTENT_TYPES[suffix])
    return out


def register(app: faust.App) -> None:
    """GET /dashboard and one route per asset under STATIC_PREFIX."""
    assets = load_assets()

    def serve(path: str, name: str) -> None:
        body, content_type = assets[name]

        async def view(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
            # The type goes in the headers: aiohttp refuses a charset inside `content_type`.
            return web.bytes(body, headers={**_HEADERS, "Content-Type": content_type})

        view.__name__ = "".join(c if c.isalnum() else "_" for c in path.strip("/"))
        app.page(path)(view)

    serve("/dashboard", "dashboard.html")
    for name in sorted(assets):
        serve(STATIC_PREFIX + name, name)
