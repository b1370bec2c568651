"""API keys: parsing ``API_KEYS`` and checking a presented key. Used by the hub (REST) and the edge (WebSocket).

Keys are held only as SHA-256 digests and compared in constant time, so neither a memory dump, a log
line nor a timing side channel gives them away. A key has a *name*; the name (never the key) is what
appears in logs, metrics and rate-limit buckets.

``API_KEYS`` format: comma-separated entries ``name:key[:requests/window_s][:scopes]`` (a per-key rate
limit; scopes joined by ``+``, e.g. ``ops:s3cret:fleet:read+fleet:admin``), or ``@/path/to/file`` with one
entry per line (``#`` starts a comment). A key without scopes has ``DEFAULT_SCOPES`` (``detect`` and
``fleet:read``: what every key could do before scopes existed, less the fleet controls); ``fleet:admin``
is only ever given explicitly. Among the scopes, ``camera:<pattern>`` entries (``*`` matches any run of
characters) limit the names the key's WebSocket streams may take on an edge (``?camera=``/``opts.camera``):
``kitchen:s3cret:detect+camera:kitchen`` may name its stream ``kitchen`` and nothing else; a key without
any may take any free name. docs/security.md has the model.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hgr.common.errors import ConfigError, HgrError


class AuthError(HgrError):
    code = "unauthorized"


DETECT, FLEET_READ, FLEET_ADMIN = "detect", "fleet:read", "fleet:admin"
SCOPES = (DETECT, FLEET_READ, FLEET_ADMIN)
DEFAULT_SCOPES = frozenset({DETECT, FLEET_READ})
# What a scope brings with it: whoever may control the fleet may see it.
IMPLIED = {FLEET_ADMIN: frozenset({FLEET_READ})}
# A stream-name allowance among the scopes: the camera name rule (common/camera_spec.py) plus ``*``.
CAMERA_PREFIX = "camera:"
_CAMERA_PATTERN = re.compile(r"[a-z0-9_*-]{1,32}")


@dataclass(frozen=True, slots=True)
class ApiKey:
    name: str
    digest: bytes
    limit: tuple[int, float] | None = None  # (requests, window seconds) overriding the global limit
    scopes: frozenset[str] = DEFAULT_SCOPES
    cameras: tuple[str, ...] | None = None  # the stream names it may take (patterns); None: any

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or any(scope in IMPLIED.get(s, ()) for s in self.scopes)

    def may_name(self, name: str) -> bool:
        return self.cameras is None or any(fnmatch.fnmatchcase(name, p) for p in self.cameras)


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
        name, _, rest = entry.partition(":")
        key, _, rest = rest.partition(":")
        if not name or not key:
            raise ConfigError(f"API_KEYS entry {n}: expected name:key[:requests/window_s][:scopes]")
        if name in seen:
            raise ConfigError(f"API_KEYS entry {n}: duplicate key name {name!r}")
        seen.add(name)
        limit, scopes, cameras = _limit_and_scopes(rest, n, name)
        keys.append(ApiKey(name, _digest(key), limit, scopes, cameras))
    return keys


def _limit_and_scopes(rest: str, n: int,
                      name: str) -> tuple[tuple[int, float] | None, frozenset[str], tuple[str, ...] | None]:
    """What follows ``name:key``: an optional ``requests/window_s``, then optional ``+``-joined scopes (a
    scope itself holds a colon, ``fleet:read``, so the fields are told apart by shape, not by position),
    among them ``camera:<pattern>`` allowances; only allowances leave the scopes at their default."""
    limit = None
    head, sep, tail = rest.partition(":")
    if "/" in head:
        try:
            requests, window = head.split("/")
            limit = (int(requests), float(window))
            if limit[0] < 1 or limit[1] <= 0:
                raise ValueError
        except ValueError:
            raise ConfigError(f"API_KEYS entry {n} ({name}): limit must be requests/window_s, "
                              f"e.g. 100/60") from None
        rest = tail if sep else ""
    if not rest:
        return limit, DEFAULT_SCOPES, None
    entries = rest.split("+")
    cameras = tuple(e.removeprefix(CAMERA_PREFIX) for e in entries if e.startswith(CAMERA_PREFIX))
    scopes = [e for e in entries if not e.startswith(CAMERA_PREFIX)]
    bad = [p for p in cameras if not _CAMERA_PATTERN.fullmatch(p)]
    if bad:
        raise ConfigError(f"API_KEYS entry {n} ({name}): camera pattern(s) {bad}: expected [a-z0-9_*-]{{1,32}}")
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise ConfigError(f"API_KEYS entry {n} ({name}): unknown scope(s) {unknown}; scopes are "
                          f"{', '.join(SCOPES)} or camera:<pattern>, joined by '+'")
    return limit, frozenset(scopes) if scopes else DEFAULT_SCOPES, cameras or None


def key_from_headers(headers: Mapping[str, str]) -> str | None:
    """The key from ``Authorization: Bearer <key>``, else ``X-API-Key`` (headers as Starlette gives them)."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("x-api-key") or None


class KeyRing:
    def __init__(self, keys: list[ApiKey]) -> None:
        self.keys = keys
        self.by_name = {k.name: k for k in keys}

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
