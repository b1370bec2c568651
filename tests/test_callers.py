"""hub/callers.py: who a request is from, i.e. its rate-limit bucket, with and without AUTH_ENABLED."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from hgr.common.auth import AuthError, KeyRing
from hgr.hub.callers import identify

RING = KeyRing.from_spec("alice:a-key,kiosk:k-key:5/10")


def _request(headers: dict[str, str], client: str = "10.0.0.7") -> Request:
    return Request({"type": "http", "method": "POST", "path": "/detect-fingers", "query_string": b"",
                    "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
                    "client": (client, 40000)})


def test_with_auth_a_valid_key_gets_its_named_bucket_and_limit() -> None:
    request = _request({"X-API-Key": "k-key"})
    caller = identify(request, RING, auth_enabled=True)
    assert (caller.bucket, caller.limit) == ("key:kiosk", (5, 10.0))
    assert request.state.key_name == "kiosk"  # for the access log: the name, never the key


@pytest.mark.parametrize("headers,code", [({}, "unauthorized"), ({"Authorization": "Bearer nope"}, "forbidden")])
def test_with_auth_no_key_or_a_wrong_one_is_refused(headers: dict[str, str], code: str) -> None:
    with pytest.raises(AuthError) as info:
        identify(_request(headers), RING, auth_enabled=True)
    assert info.value.code == code


def test_without_auth_anonymous_and_wrong_keys_are_limited_per_ip_and_valid_keys_keep_their_bucket() -> None:
    assert identify(_request({}), RING, auth_enabled=False).bucket == "ip:10.0.0.7"
    assert identify(_request({"X-API-Key": "nope"}, "10.0.0.8"), RING, auth_enabled=False).bucket == "ip:10.0.0.8"
    assert identify(_request({"Authorization": "Bearer a-key"}), RING, auth_enabled=False).bucket == "key:alice"
    assert identify(_request({"X-API-Key": "a-key"}), KeyRing([]), auth_enabled=False).bucket == "ip:10.0.0.7"


@pytest.mark.parametrize("client,bucket", [
    ("10.0.0.9", "ip:10.0.0.9"), ("2001:db8::1", "ip:2001:db8::1"), ("::ffff:10.0.0.9", "ip:10.0.0.9"),
    ("fe80::1%eth0", "ip:fe80::1"), ("x" * 5000, "ip:invalid"), ("10.0.0.9, 10.0.0.10", "ip:invalid"),
    ("", "ip:unknown")])
def test_the_ip_bucket_is_an_ip_address_or_one_bucket_for_anything_else(client: str, bucket: str) -> None:
    """What a trusted proxy's X-Forwarded-For said becomes the client address; it is part of a Redis key."""
    assert identify(_request({}, client), RING, auth_enabled=False).bucket == bucket
