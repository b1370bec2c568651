"""Structured logging: one JSON object per line, with secrets and image payloads kept out.

Text that quotes a request is scrubbed as the application reads it: percent-encoding is decoded before
the secret patterns look (``?%74oken=`` is ``?token=`` to Starlette, so it is to the scrubber too). Text
logs (``LOG_FORMAT=text``) escape control characters in the message, so a client's newline cannot start
a line of its own; a traceback's further lines are indented. URLs of configured services are masked by
parsing them (``common.masking.mask_url``), not by pattern.

Call ``setup_logging(settings)`` once at start-up. Add context with ``log.info("msg", extra={...})``;
the request id of the current request (set by the HTTP middleware through ``request_id_var``) is
attached automatically.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
from typing import Any
from urllib.parse import unquote

from hgr.common.config import Settings

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

# uvicorn adds ``color_message`` (the message with ANSI colours) to its records: noise in JSON.
_STD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName",
                                                                     "color_message"}
# Keys whose values must never be logged, whatever the caller passes.
_SECRET_KEYS = re.compile(r"(authorization|api[_-]?key|token|password|secret|image_base64|image)$", re.IGNORECASE)
# Credentials embedded in text: Bearer tokens, ?token=..., user:pass@ in URLs, long base64 runs. A URL's
# credentials run to the *last* "@" before white space (a password may hold "@", even unencoded "/").
_SECRET_TEXT = [
    (re.compile(r"(?i)(bearer\s+)[^\s,;\"']+"), r"\1***"),
    (re.compile(r"(?i)([?&;][^=&\s\"']*(token|key|password|passwd|secret)=)[^&\s\"']+"), r"\1***"),
    (re.compile(r"(://[^:/@\s\"']*:)[^\s\"']*@"), r"\1***@"),
    (re.compile(r"(://)[^:/@\s\"']+@"), r"\1***@"),
    (re.compile(r"[A-Za-z0-9+/]{200,}={0,2}"), "<base64 omitted>"),
]
_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_NAMES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def scrub_text(text: str) -> str:
    """``text`` without credentials. Percent-encoded text is decoded first (what the application acts on
    is the decoded form, so that is what must be scrubbed)."""
    if _PERCENT.search(text):
        text = unquote(text, errors="backslashreplace")
    for pattern, repl in _SECRET_TEXT:
        text = pattern.sub(repl, text)
    return text


def escape_controls(text: str) -> str:
    """Control characters (C0, DEL, C1, the Unicode line separators) as visible escapes: one log line
    stays one line, and a client cannot move the cursor or forge a line of its own."""
    return _CONTROL.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return _CONTROL_NAMES.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


def scrub(value: Any, key: str = "") -> Any:
    if key and _SECRET_KEYS.search(key):
        return "***"
    if isinstance(value, dict):
        return {k: scrub(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    if isinstance(value, str):
        return scrub_text(value)
    return value


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": scrub_text(record.getMessage()),
        }
        rid = request_id_var.get()
        if rid:
            out["request_id"] = rid
        for key, value in vars(record).items():
            if key not in _STD and not key.startswith("_"):
                out[key] = scrub(value, key)
        if record.exc_info:
            out["exc"] = scrub_text(self.formatException(record.exc_info))
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(scrub_text(record.message))
        return super().formatMessage(record)

    def formatException(self, ei: Any) -> str:
        return self._indented(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return self._indented(super().formatStack(stack_info))

    @staticmethod
    def _indented(text: str) -> str:
        """A traceback's lines, each indented and escaped: no line of it can pass for a log line."""
        return "\n".join("    " + escape_controls(scrub_text(line)) for line in text.splitlines())


def setup_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel("DEBUG" if settings.debug else settings.log_level.upper())
    # uvicorn's access log would print query strings (?token=...) unscrubbed; our middleware logs requests.
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True
