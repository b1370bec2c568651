"""Who is calling: an API key's name (from ``Authorization: Bearer`` or ``X-API-Key``), or an IP.

With ``AUTH_ENABLED`` a valid key is required (401 none, 403 wrong). Without it a valid key still
earns its named bucket and limits, and anyone else is limited per client IP. Only the key's *name*
is kept (in ``request.state.key_name`` for the access log); the key itself goes nowhere.

The client IP is the socket's peer, or what a trusted proxy (``FORWARDED_ALLOW_IPS``) wrote in
``X-Forwarded-For``; it becomes part of a Redis key, so anything that is not an IP address (a proxy
passing on a forged header: any string, 5 000 characters or more) is one bucket, ``ip:invalid``.
"""

from __future__ import annotations

import ipaddress
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
    return Caller(f"ip:{client_ip(request)}", None)


def client_ip(request: Request) -> str:
    """The client's address, normalised (``::ffff:1.2.3.4`` and ``1.2.3.4`` are one caller), or
    ``unknown`` (no address) / ``invalid`` (not an IP address: at most 45 characters ever reach Redis)."""
    if request.client is None or not request.client.host:
        return "unknown"
    try:
        address = ipaddress.ip_address(request.client.host[:64].split("%", 1)[0])
    except ValueError:
        return "invalid"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address)
