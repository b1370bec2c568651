"""Who may do what on the hub: API-key scopes per route, and a limit on failed authentication.

Every route's scope is written once, in ``ROUTE_SCOPES``: docs/security.md has the same table,
``tests/test_security_model.py`` holds the two together and ``tests/test_access.py`` the enforcement. A
scope is required of the caller whatever ``AUTH_ENABLED`` says, except ``detect``, which only
``AUTH_ENABLED`` makes mandatory (the anonymous, per-IP-limited detection service of a keyless deployment stays).

An unknown key costs its client (the rate-limit identity ``hub.callers.identify`` gives an anonymous
caller) one unit of a GCRA bucket (``AUTH_FAILURE_LIMIT`` per ``AUTH_FAILURE_WINDOW``, in the rate
limiter's store, so every hub shares it); past it the answer is 429 ``too_many_auth_failures`` instead
of 403, so guessing keys runs at that pace at most. A valid key is checked first and never refused by
the failure bucket, so a guesser behind the same address cannot lock a legitimate caller out.
"""

from __future__ import annotations

import logging
import math
import time

from starlette.requests import Request

from hgr.common import metrics
from hgr.common.auth import DETECT, FLEET_ADMIN, FLEET_READ, ApiKey, AuthError, KeyRing, key_from_headers
from hgr.common.config import Settings
from hgr.common.errors import HgrError
from hgr.hub.callers import Caller, identify
from hgr.hub.gcra import US, Policy
from hgr.hub.ratelimit import RateLimiter
from hgr.hub.redis_conn import RedisDown

log = logging.getLogger("hgr.hub.access")

PUBLIC = "none"
# (method, route template) -> the scope a caller needs; PUBLIC: anyone. `/status` answers anyone, in
# full only to FLEET_READ (``Access.may``).
ROUTE_SCOPES: dict[tuple[str, str], str] = {
    ("GET", "/health"): PUBLIC,
    ("GET", "/ready"): PUBLIC,
    ("GET", "/status"): PUBLIC,
    ("GET", "/model/info"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/docs"): PUBLIC,  # renders /openapi.json (hub.apidocs)
    ("GET", "/docs/{asset}"): PUBLIC,
    ("POST", "/detect-fingers"): DETECT,
    ("POST", "/detect-fingers-batch"): DETECT,
    ("POST", "/detect-fingers-upload"): DETECT,
    ("GET", "/fleet"): FLEET_READ,
    ("GET", "/fleet/edges/{edge_id}"): FLEET_READ,
    ("POST", "/fleet/edges/{edge_id}/streams/{stream}/throttle"): FLEET_ADMIN,
}


class TooManyAuthFailures(HgrError):
    code = "too_many_auth_failures"


class Access:
    def __init__(self, settings: Settings, keyring: KeyRing, limiter: RateLimiter) -> None:
        self.settings = settings
        self.keyring = keyring
        self.limiter = limiter
        self.failures = Policy(settings.auth_failure_limit, settings.auth_failure_window)
        self._nobody = KeyRing([])

    async def require(self, request: Request, scope: str) -> ApiKey:
        """The caller's key if it has ``scope``; else 401 (no key), 403 (unknown key, or the scope is
        missing) or 429 (too many unknown keys from this client)."""
        presented = key_from_headers(request.headers)
        if not presented:
            metrics.AUTH_FAILURES.labels("missing").inc()
            raise AuthError(f"this needs an API key with the {scope!r} scope "
                            f"(Authorization: Bearer <key> or X-API-Key)")
        try:
            key = self.keyring.verify(presented)
        except AuthError:
            await self._failed(request)
            raise
        request.state.key_name = key.name
        if not key.allows(scope):
            metrics.AUTH_FAILURES.labels("scope").inc()
            raise AuthError(f"key {key.name!r} lacks the {scope!r} scope", code="forbidden")
        return key

    async def may(self, request: Request, scope: str) -> bool:
        """For a route that answers anyone, more to a key with ``scope``: False without a key, True with
        one that has the scope, the errors of ``require`` for any other key."""
        if not key_from_headers(request.headers):
            return False
        await self.require(request, scope)
        return True

    async def caller(self, request: Request) -> Caller:
        """The detection routes' ``identify`` with the failure limit and the ``detect`` scope."""
        try:
            caller = identify(request, self.keyring, self.settings.auth_enabled)
        except AuthError as exc:
            if exc.code == "forbidden":
                await self._failed(request)
            else:
                metrics.AUTH_FAILURES.labels("missing").inc()
            raise
        if caller.bucket.startswith("ip:") and self.keyring.keys and key_from_headers(request.headers):
            # AUTH_ENABLED=false serves an unknown key anonymously; it is a guess all the same (the
            # RateLimit-* headers of a named bucket would tell a right one), so it is paced like one
            await self._failed(request)
        name = getattr(request.state, "key_name", None)
        key = self.keyring.by_name.get(name) if caller.bucket.startswith("key:") and name else None
        if key is not None and not key.allows(DETECT):
            metrics.AUTH_FAILURES.labels("scope").inc()
            raise AuthError(f"key {key.name!r} lacks the {DETECT!r} scope", code="forbidden")
        return caller

    async def _failed(self, request: Request) -> None:
        """Charge an unknown key to its client; TooManyAuthFailures once the client is over its budget."""
        client = identify(request, self._nobody, False).bucket  # the address identify() would limit
        try:
            decision = await self.limiter.store.decide(f"{self.limiter.prefix}authfail:{client}",
                                                       int(time.time() * US), 1, self.failures)
        except RedisDown:  # the key is refused (403) all the same; only the pacing is lost
            metrics.AUTH_FAILURES.labels("invalid").inc()
            return
        if decision.allowed:
            metrics.AUTH_FAILURES.labels("invalid").inc()
            return
        metrics.AUTH_FAILURES.labels("limited").inc()
        retry = max(1, math.ceil(decision.retry_after_us / US))
        log.warning("too many unknown API keys", extra={"client": client})
        raise TooManyAuthFailures(f"too many unknown API keys from this client; retry after {retry} s",
                                  headers={"Retry-After": str(retry)})
