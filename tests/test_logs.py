"""common/logs.py: one JSON object per line, with the request id, and no secret or image payload in it."""

from __future__ import annotations

import json
import logging

from hgr.common.logs import JsonFormatter, TextFormatter, request_id_var, scrub, scrub_text


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
