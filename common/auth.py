"""API keys: parsing ``API_KEYS`` and checking a presented key. Used by the hub (REST) and the edge (WebSocket).

Keys are held only as SHA-256 digests and compared in constant time, so neither a memory dump, a log
line nor a timing side channel gives them away. A key has a *name*; the name (never the key) is what
appears in logs, metrics and rate-limit buckets.

``API_KEYS`` format: comma-separated entries ``name:key`` or ``name:key:requests/window_s`` (per-key
rate limit), or ``@/path/to/file`` with one entry per line (``#`` starts a comment).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hgr.common.errors import ConfigError, HgrError


class AuthError(HgrError):
    code = "unauthorized"


@dataclass(frozen=True, slots=True)
class ApiKey:
    name: str
    digest: bytes
    limit: tuple[int, float] | None = None  # (requests, window seconds) overriding the global limit


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def parse_api_keys(spec: str) -> list[ApiKey]:
    """Parse the ``API_KEYS`` value; raise ConfigError naming the bad entry (never echoing the key)."""
    if spec.startswith("@"):
        lines = Path(spec[1:]).read_text().splitlines()
        entries = [line.split("#", 1)[0].strip() for line in lines]
    else:
        entries = [e.strip() for e in spec.split(",")]
    keys: list[ApiKey] = []
    seen: set[str] = set()
    for n, entry in enumerate((e for e in entries if e), 1):
        parts = entry.split(":")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
            raise ConfigError(f"API_KEYS entry {n}: expected name:key or name:key:requests/window_s")
        name, key = parts[0], parts[1]
        if name in seen:
            raise ConfigError(f"API_KEYS entry {n}: duplicate key name {name!r}")
        seen.add(name)
        limit = None
        if len(parts) == 3:
            try:
                requests, window = parts[2].split("/")
                limit = (int(requests), float(window))
                if limit[0] < 1 or limit[1] <= 0:
                    raise ValueError
            except ValueError:
                raise ConfigError(f"API_KEYS entry {n} ({name}): limit must be requests/window_s, "
                                  f"e.g. 100/60") from None
        keys.append(ApiKey(name, _digest(key), limit))
    return keys


def key_from_headers(headers: Mapping[str, str]) -> str | None:
    """The key from ``Authorization: Bearer <key>``, else ``X-API-Key`` (headers as Starlette gives them)."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("x-api-key") or None


class KeyRing:
    def __init__(self, keys: list[ApiKey]) -> None:
        self.keys = keys

    @classmethod
    def from_spec(cls, spec: str) -> KeyRing:
        return cls(parse_api_keys(spec) if spec else [])

    def verify(self, presented: str | None) -> ApiKey:
        """The key's entry, or AuthError. Compares against every key so timing reveals nothing."""
        if not presented:
            raise AuthError("an API key is required (Authorization: Bearer <key> or X-API-Key)")
        digest = _digest(presented)
        match = None
        for key in self.keys:
            if hmac.compare_digest(key.digest, digest):
                match = key
        if match is None:
            raise AuthError("invalid API key", code="forbidden")
        return match
