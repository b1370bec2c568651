"""Who is calling: an API key's name (from ``Authorization: Bearer`` or ``X-API-Key``), or an IP.

With ``AUTH_ENABLED`` a valid key is required (401 none, 403 wrong). Without it a valid key still
earns its named bucket and limits, and anyone else is limited per client IP. Only the key's *name*
is kept (in ``request.state.key_name`` for the access log); the key itself goes nowhere.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from common.auth import AuthError, KeyRing


@dataclass(frozen=True, slots=True)
class Caller:
    bucket: str  # rate-limit identity: "key:<name>" or "ip:<address>"
    key_name: str | None
    limit: tuple[int, float] | None  # the key's own requests/window, if it has one


def presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("x-api-key") or None


def identify(request: Request, keyring: KeyRing, auth_enabled: bool) -> Caller:
    key = presented_key(request)
    if auth_enabled or (key and keyring.keys):
        try:
            entry = keyring.verify(key)
        except AuthError:
            if auth_enabled:
                raise
        else:
            request.state.key_name = entry.name
            return Caller(f"key:{entry.name}", entry.name, entry.limit)
    host = request.client.host if request.client else "unknown"
    return Caller(f"ip:{host}", None, None)
