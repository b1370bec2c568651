"""common/logs.py: one JSON object per line, with the request id, and no secret or image payload in it."""

from __future__ import annotations

import json
import logging
import sys

from hgr.common.logs import JsonFormatter, TextFormatter, request_id_var, scrub, scrub_text
from hgr.common.masking import mask_url


def _record(msg: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("hgr.test", logging.WARNING, __file__, 1, msg, None, None)
    record.__dict__.update(extra)
    return record


def test_secrets_in_text_are_masked() -> None:
    text = ("Authorization: Bearer abc.def-123 from redis://user:hunter2@redis:6379/0 "
            "ws://edge/ws?token=s3cret&x=1 " + "QUJD" * 60)
    out = scrub_text(text)
    for secret in ("abc.def-123", "hunter2", "s3cret", "QUJDQUJD"):
        assert secret not in out
    assert "Bearer ***" in out and "redis://user:***@redis" in out and "<base64 omitted>" in out


def test_secret_keys_and_bytes_are_masked_at_any_depth() -> None:
    doc = {"api_key": "k", "nested": {"password": "p", "Authorization": "Bearer x", "images": [b"\x00" * 9]},
           "image_base64": "AAAA", "keep": 3}
    assert scrub(doc) == {"api_key": "***", "nested": {"password": "***", "Authorization": "***",
                                                       "images": ["<9 bytes>"]},
                          "image_base64": "***", "keep": 3}


def test_json_lines_carry_the_request_id_and_scrubbed_extras() -> None:
    token = request_id_var.set("req-42")
    try:
        line = JsonFormatter().format(_record("login with Bearer tok-1", key_name="alice", token="tok-2"))
    finally:
        request_id_var.reset(token)
    out = json.loads(line)
    assert out["request_id"] == "req-42" and out["level"] == "warning" and out["logger"] == "hgr.test"
    assert out["key_name"] == "alice" and out["token"] == "***" and "tok-1" not in line
    assert out["ts"].endswith("Z")


def test_text_lines_are_scrubbed_too() -> None:
    line = TextFormatter().format(_record("connecting to mqtt://edge:pw@broker:1883"))
    assert "pw@" not in line and "mqtt://edge:***@broker" in line


def test_mask_url_parses_so_the_whole_password_goes() -> None:
    cases = {
        "redis://:p@ssw0rd@host/0": "redis://***@host/0",
        "redis://user:p@ss@h:1/0?password=x&db=1": "redis://***@h:1/0?password=***&db=1",
        "redis+sentinel://:p@w@h1:1,h2:2/master/0": "redis+sentinel://***@h1:1,h2:2/master/0",
        "unix://:pw@/tmp/redis.sock?db=0": "unix://***@/tmp/redis.sock?db=0",
        "redis://:pa/ss@host/0": "redis://***@host/0",  # an unencoded "/" ends the authority early
        "mqtt://edge:p%40w@broker:1883": "mqtt://***@broker:1883",
        "rediss://host/0?ssl_password=zz": "rediss://host/0?ssl_password=***",
        "redis://host:6379/0": "redis://host:6379/0",
    }
    for url, masked in cases.items():
        assert mask_url(url) == masked, url


def test_scrubbing_acts_on_the_decoded_text() -> None:
    out = scrub_text('"WebSocket /ws?%74oken=k3y-1&x=1" ?api%5Fkey=k3y-2 ?access_token=k3y-3 bearer%20k3y-4 '
                     "redis://:p@ssw0rd@host/0 https://k3y-5@host/x")
    for secret in ("k3y-1", "k3y-2", "k3y-3", "k3y-4", "ssw0rd", "k3y-5"):
        assert secret not in out, out
    assert "token=***&x=1" in out and "redis://:***@host/0" in out


def test_text_lines_escape_control_characters_and_indent_tracebacks() -> None:
    forged = "2026-01-01 00:00:00,000 WARNING hgr.auth: FORGED"
    line = TextFormatter().format(_record(f"bad topic a\n{forged}\r\x1b[2K\u2028{forged}\x85"))
    assert len(line.splitlines()) == 1 and "a\\n" + forged in line and "\\x1b[2K\\u2028" in line
    try:
        raise ValueError(f"bad\n{forged}")
    except ValueError:
        record = logging.LogRecord("hgr.test", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    lines = TextFormatter().format(record).splitlines()
    assert lines[0].endswith("failed") and len(lines) > 2
    assert all(line.startswith("    ") for line in lines[1:]), lines
