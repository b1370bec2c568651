"""common/auth.py: the API_KEYS syntax, key lookup that never reveals which key was close, and where a key is
read from in a request."""

from __future__ import annotations

from pathlib import Path

import pytest

from hgr.common.auth import SCOPES, AuthError, KeyRing, key_from_headers, parse_api_keys
from hgr.common.errors import ConfigError


def test_keys_with_and_without_their_own_limit() -> None:
    keys = parse_api_keys(" alice:a-key , kiosk:k-key:100/60 ,")
    assert [(k.name, k.limit) for k in keys] == [("alice", None), ("kiosk", (100, 60.0))]
    assert all(len(k.digest) == 32 for k in keys)  # SHA-256 digests: the keys themselves are not kept
    assert not any(b"a-key" in k.digest for k in keys)


def test_keys_from_a_file_with_comments(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("# operators\nops:o-key  # the night shift\n\ncam:c-key:5/1\n")
    assert [k.name for k in parse_api_keys(f"@{path}")] == ["ops", "cam"]


@pytest.mark.parametrize("spec,fragment", [
    ("S3CR3T", "entry 1: expected name:key"), (":S3CR3T", "entry 1"), ("a:S3CR3T,a:S3CR3T", "duplicate key name 'a'"),
    ("a:S3CR3T:ten/60", "limit must be requests/window_s"), ("a:S3CR3T:0/60", "limit"), ("a:S3CR3T:5/0", "limit"),
    ("a:x,b:S3CR3T:1/2:x", "entry 2"),
])
def test_bad_entries_name_the_entry_and_never_echo_the_key(spec: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment) as info:
        parse_api_keys(spec)
    assert "S3CR3T" not in str(info.value)


def test_verify_finds_the_key_or_says_missing_or_wrong() -> None:
    ring = KeyRing.from_spec("alice:a-key,bob:b-key:3/60")
    assert ring.verify("b-key").name == "bob" and ring.verify("b-key").limit == (3, 60.0)
    with pytest.raises(AuthError) as missing:
        ring.verify(None)
    assert (missing.value.code, missing.value.status) == ("unauthorized", 401)
    with pytest.raises(AuthError) as wrong:
        ring.verify("a-key ")
    assert (wrong.value.code, wrong.value.status) == ("forbidden", 403)
    assert "a-key" not in wrong.value.message
    assert KeyRing.from_spec("").keys == []


@pytest.mark.parametrize("headers,key", [
    ({"authorization": "Bearer  tok-1 "}, "tok-1"), ({"authorization": "bearer tok-2"}, "tok-2"),
    ({"x-api-key": "tok-3"}, "tok-3"), ({"authorization": "Bearer tok-4", "x-api-key": "tok-5"}, "tok-4"),
    ({"authorization": "Basic dXNlcjpwdw=="}, None), ({"authorization": "Bearer "}, None), ({}, None),
    ({"authorization": "Basic x", "x-api-key": "tok-6"}, "tok-6"),
])
def test_key_from_headers_prefers_bearer_then_x_api_key(headers: dict[str, str], key: str | None) -> None:
    assert key_from_headers(headers) == key


@pytest.mark.parametrize("spec,scopes,limit", [
    ("a:k", {"detect", "fleet:read"}, None),
    ("a:k:100/60", {"detect", "fleet:read"}, (100, 60.0)),
    ("a:k:fleet:admin", {"fleet:admin"}, None),
    ("a:k:detect+fleet:read+fleet:admin", set(SCOPES), None),
    ("a:k:100/60:detect", {"detect"}, (100, 60.0)),
])
def test_api_keys_carry_scopes(spec: str, scopes: set[str], limit: tuple[int, float] | None) -> None:
    (key,) = parse_api_keys(spec)
    assert (set(key.scopes), key.limit) == (scopes, limit)


def test_camera_allowances_limit_the_names_a_key_may_take() -> None:
    kitchen, porch, free = parse_api_keys("kitchen:k1:detect+camera:kitchen,porch:k2:10/60:camera:porch-*,free:k3")
    assert (set(kitchen.scopes), kitchen.cameras) == ({"detect"}, ("kitchen",))
    assert kitchen.may_name("kitchen") and not kitchen.may_name("kitchen2") and not kitchen.may_name("porch-1")
    # allowances alone leave the scopes at their default
    assert (set(porch.scopes), porch.limit, porch.cameras) == ({"detect", "fleet:read"}, (10, 60.0), ("porch-*",))
    assert porch.may_name("porch-1") and porch.may_name("porch-") and not porch.may_name("kitchen")
    assert free.cameras is None and free.may_name("anything")


@pytest.mark.parametrize("spec", ["a:k:fleet:write", "a:k:detect+", "a:k:0/60:detect", "a::detect",
                                  "a:k:camera:", "a:k:detect+camera:Kitchen", "a:k:camera:a/b"])
def test_bad_scopes_are_refused(spec: str) -> None:
    with pytest.raises(ConfigError, match=r"API_KEYS entry 1"):
        parse_api_keys(spec)
