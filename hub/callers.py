"""Who is calling: an API key's name (from ``Authorization: Bearer`` or ``X-API-Key``), or an IP.

With ``AUTH_ENABLED`` a valid key is required (401 none, 403 wrong). Without it a valid key still
earns its named bucket and limits, and anyone else is limited per client IP. Only the key's *name*
is kept (in ``request.state.key_name`` for the access log); the key itself goes nowhere.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from hgr.common.auth import AuthError, KeyRing, key_from_headers


@dataclass(frozen=True, slots=True)
class Caller:
    bucket: str  # rate-limit identity: "key:<name>" or "ip:<address>"
    limit: tuple[int, float] | None  # the key's own requests/window, if it has one


def identify(request: Request, keyring: KeyRing, auth_enabled: bool) -> Caller:
    key = key_from_headers(request.headers)
    if auth_enabled or (key and keyring.keys):
        try:
            entry = keyring.verify(key)
        except AuthError:
            if auth_enabled:
                raise
        else:
            request.state.key_name = entry.name
            return Caller(f"key:{entry.name}", entry.limit)
    host = request.client.host if request.client else "unknown"
    return Caller(f"ip:{host}", None)
