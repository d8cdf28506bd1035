"""Serves the console's static files at /ui/ with a strict Content-Security-Policy.

The files are read once from the package (a fixed table of names, so no request path ever
reaches the file system) and answered with an ETag, so a browser revalidates cheaply and
picks up a new version after an upgrade. Every answer carries the security headers: the
policy allows scripts, styles and connections from this origin only and no inline code at
all, the page cannot be framed, content types are not sniffed, and no referrer leaves.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from functools import cache
from importlib import resources

from aiohttp import web

from jobnode.api.access import access
from jobnode.auth.roles import PUBLIC
from jobnode.core.errors import NotFound

PREFIX = "/ui/"
CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-cache",  # revalidate with the ETag: a node upgrade shows at once
}
TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css", ".html": "text/html",
         ".svg": "image/svg+xml", ".png": "image/png", ".txt": "text/plain"}

routes = web.RouteTableDef()


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str


@cache
def static_files() -> dict[str, StaticFile]:
    """Every file under static/, by its path relative to it ("index.html", "js/main.js")."""
    found: dict[str, StaticFile] = {}

    def walk(folder: resources.abc.Traversable, prefix: str) -> None:
        for entry in folder.iterdir():
            name = prefix + entry.name
            if entry.is_dir():
                walk(entry, name + "/")
            elif not entry.name.startswith("."):
                body = entry.read_bytes()
                suffix = "." + entry.name.rsplit(".", 1)[-1] if "." in entry.name else ""
                content_type = TYPES.get(suffix) or mimetypes.guess_type(entry.name)[0] or "application/octet-stream"
                found[name] = StaticFile(body, content_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')

    walk(resources.files(__package__) / "static", "")
    return found


@routes.get("/ui")
@access(PUBLIC)
async def console_root(request: web.Request) -> web.StreamResponse:
    raise web.HTTPPermanentRedirect(PREFIX)


@routes.get(PREFIX + "{path:.*}")
@access(PUBLIC)
async def console_file(request: web.Request) -> web.StreamResponse:
    path = request.match_info["path"] or "index.html"
    found = static_files().get(path)
    if found is None:
        raise NotFound(f"the console has no file {path[:100]!r}")
    headers = {**SECURITY_HEADERS, "ETag": found.etag}
    if request.headers.get("If-None-Match") == found.etag:
        return web.Response(status=304, headers=headers)
    charset = "utf-8" if found.content_type.startswith("text/") or found.content_type.endswith("+xml") else None
    return web.Response(body=found.body, content_type=found.content_type, charset=charset, headers=headers)
