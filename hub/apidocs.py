"""``/docs``: the interactive API documentation (Swagger UI 5 on ``/openapi.json``), served by the hub itself.

The page and its files come from the package (``hub/docs_ui/``: Swagger UI's minified bundle and CSS,
vendored from the npm package ``swagger-ui-dist`` by ``deploy/dev/docs-ui.sh``, which records the
version and each file's SHA-256 in ``vendored.txt``; ``tests/test_apidocs.py`` checks them), so the browser
fetches nothing from elsewhere; the Content-Security-Policy says so too. Keyless, as ``/openapi.json``:
it only renders the public schema (docs/security.md). "Try it out" sends requests from the browser to
this hub, with the key typed into "Authorize".
"""

from __future__ import annotations

import functools
import hashlib
from importlib.resources import files

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from hgr.common.errors import HgrError

FOLDER = "docs_ui"
# name -> media type: exactly the files the page loads, and the licence that must travel with them
ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css", "docs.js": "text/javascript",
          "LICENSE": "text/plain"}
VENDORED = "vendored.txt"

# Swagger UI sets inline style attributes (React), hence 'unsafe-inline' for styles only; scripts, fetches
# and images come from this origin alone (data: for the CSS's inline SVG icons).
CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>hgr hub API</title>
<link rel="stylesheet" href="docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/swagger-ui-bundle.js"></script>
<script src="docs/docs.js"></script>
</body>
</html>
"""


@functools.cache
def asset(name: str) -> tuple[bytes, str]:
    """(bytes, ETag) of one of ``ASSETS``, read from the package once."""
    data = files("hgr.hub").joinpath(FOLDER, name).read_bytes()
    return data, f'"{hashlib.sha256(data).hexdigest()[:32]}"'


def routes() -> list[Route]:
    headers = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(PAGE, headers=headers)

    async def docs_file(request: Request) -> Response:
        name = request.path_params["asset"]
        if name not in ASSETS:
            raise HgrError(f"no file {name[:64]!r} in /docs; the page's files are {', '.join(ASSETS)}",
                           code="not_found")
        data, etag = asset(name)
        cached = {**headers, "ETag": etag}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=cached)
        return Response(data, media_type=ASSETS[name], headers=cached)

    return [Route("/docs", page, methods=["GET"]), Route("/docs/{asset}", docs_file, methods=["GET"])]
