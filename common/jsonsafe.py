"""Untrusted JSON: the one place that turns any oddity of a decoded document into an ``HgrError``.

``json.loads`` alone is not safe on input from the network:

- deep nesting (``[[[[…``) raises ``RecursionError``, which escaped a WebSocket session and dropped it;
- a few MB of ``[[],[],…]`` become GBs of Python lists and seconds of a blocked event loop;
- ``NaN``/``Infinity`` (and ``1e999``) are accepted but cannot be written back as JSON (a result that
  echoes them is invalid JSON, or a 500 from an encoder with ``allow_nan=False``);
- ``"\\ud800"`` decodes to a str that cannot be encoded to UTF-8 (a 500 when echoed, even in an error).

``Shape`` measures nesting and the number of values while the bytes arrive (chunk by chunk, at C speed
over string contents), so a REST body is refused long before it is all read; ``within`` answers the same
question for a document already whole (an MQTT payload, a WebSocket message) at C speed; ``loads`` checks
the shape, parses, and refuses non-finite numbers and lone surrogates. Every transport uses it: REST bodies and the
multipart ``options`` field (hub), ``hgr.json.v1`` WebSocket messages (``edge.protocol``), MQTT payloads
(``common.messaging.topics``). The errors are ``bad_json`` (not JSON, or JSON we will not echo) and
``json_too_complex`` (over ``JsonLimits``); each transport maps them (HTTP 400/413, a WS ``error``).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from hgr.common.errors import HgrError


class BadJson(HgrError):
    code = "bad_json"


class JsonTooComplex(HgrError):
    code = "json_too_complex"


class JsonStringTooLong(JsonTooComplex):
    """Over ``JsonLimits.max_string``: the caller knows what such a string would have been (an image)."""


@dataclass(frozen=True, slots=True)
class JsonLimits:
    """Our documents are shallow (a batch body is 4 levels deep) and small in values (a 32-image batch
    has ~200): the defaults leave a wide margin and stay far from the parser's recursion limit."""

    max_depth: int = 32
    max_values: int = 10_000
    max_string: int | None = None  # bytes of the longest string (escapes counted as sent); None: unbounded


DEFAULT_LIMITS = JsonLimits()

# Outside strings, only these bytes change the shape; inside a string only `"` and `\` matter.
_STRUCTURE = re.compile(rb'[\[\]{},"]')
_STRING_BODY = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*', re.DOTALL)


class Shape:
    """The depth and an upper bound of the number of values of a JSON text, fed in chunks.

    Values are counted as containers opened plus commas (exact for ``[[],[],…]``, the costly case;
    one less per non-empty container otherwise). The Python loop runs once per structural byte
    outside strings, which the limit bounds; string contents (base64 images) are skipped by one regex.
    ``feed`` raises ``JsonTooComplex`` as soon as a limit is crossed.
    """

    def __init__(self, limits: JsonLimits) -> None:
        self.limits = limits
        self.depth = 0
        self.values = 0
        self._in_string = False
        self._escaped = False  # the previous chunk ended inside a string, on a backslash
        self._string_bytes = 0  # of the string being read

    def feed(self, chunk: bytes) -> None:
        pos, end = 0, len(chunk)
        while pos < end:
            if self._in_string:
                if self._escaped:
                    self._escaped, pos = False, pos + 1
                    continue
                match = _STRING_BODY.match(chunk, pos)
                if match:
                    self._string_bytes += match.end() - pos
                    pos = match.end()
                longest = self.limits.max_string
                if longest is not None and self._string_bytes > longest:
                    raise JsonStringTooLong(f"the JSON holds a string longer than {longest} bytes")
                if pos >= end:
                    return
                if chunk[pos] == 0x5C:  # a backslash as the chunk's last byte: its escapee comes next
                    self._escaped, pos = True, pos + 1
                    continue
                self._in_string, pos = False, pos + 1  # the closing quote
                continue
            found = _STRUCTURE.search(chunk, pos)
            if found is None:
                return
            byte, pos = chunk[found.start()], found.end()
            if byte == 0x22:  # "
                self._in_string, self._string_bytes = True, 0
            elif byte in (0x5B, 0x7B):  # [ {
                self.depth += 1
                self.values += 1
                if self.depth > self.limits.max_depth:
                    raise JsonTooComplex(f"the JSON is nested deeper than {self.limits.max_depth} levels")
            elif byte in (0x5D, 0x7D):  # ] }
                self.depth = max(0, self.depth - 1)
            else:  # ,
                self.values += 1
            if self.values > self.limits.max_values:
                raise JsonTooComplex(f"the JSON has more than {self.limits.max_values} values")


# A string as ``Shape`` reads one in a single chunk: from a quote to the next unescaped quote, or to the end.
_STRING = re.compile(rb'"([^"\\]*(?:\\.[^"\\]*)*)"?', re.DOTALL)
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_DEPTH_STEP = {0x5B: 1, 0x7B: 1, 0x5D: -1, 0x7D: -1}


def within(data: bytes, limits: JsonLimits) -> bool:
    """Whether ``Shape(limits).feed(data)`` would pass, for a whole document in memory, mostly at C speed:
    the hub ingests thousands of MQTT payloads a second, and ``Shape``'s Python loop over every bracket,
    comma and quote was two thirds of its time (py-spy, ``python -m hgr.loadtest.mqtt_fleet``)."""
    if limits.max_string is not None and max(map(len, _STRING.findall(data)), default=0) > limits.max_string:
        return False
    outside = _STRING.sub(b"", data)
    opened = outside.count(b"[") + outside.count(b"{")
    if opened + outside.count(b",") > limits.max_values:
        return False
    if opened <= limits.max_depth:  # too few to nest deeper: no scan (every document we send)
        return True
    depth = 0
    for byte in outside.translate(None, _NOT_BRACKETS):  # at most max_values openings
        depth = max(0, depth + _DEPTH_STEP[byte])  # a stray closing bracket never goes below 0, as in Shape
        if depth > limits.max_depth:
            return False
    return True


def check_shape(data: bytes, limits: JsonLimits = DEFAULT_LIMITS) -> None:
    """``JsonTooComplex`` when ``data``, a whole document, is nested or sized past ``limits``: the check in
    front of every parse (``loads`` here, msgspec's typed decoders in ``topics`` and ``edge.protocol``)."""
    if not within(data, limits):
        Shape(limits).feed(data)  # the reference: it raises, with the message of the limit crossed first


def loads(data: bytes | bytearray | str, limits: JsonLimits = DEFAULT_LIMITS, *, measured: bool = False) -> Any:
    """The document in ``data``, or ``BadJson``/``JsonTooComplex``. ``measured``: the caller already fed
    every byte through a ``Shape`` with these limits (a streamed body), so it is not scanned twice."""
    if not measured:
        check_shape(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data), limits)
    try:
        doc = json.loads(data, parse_constant=_refuse_constant, parse_float=_finite_float)
    except (ValueError, RecursionError) as exc:  # RecursionError: unreachable under the depth limit
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else exc.__class__.__name__
        raise BadJson(f"not valid JSON ({detail})") from None
    _refuse_lone_surrogates(doc)
    return doc


def _refuse_constant(name: str) -> Any:
    raise BadJson(f"{name} is not a JSON number; send finite numbers only")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadJson(f"the number {text[:40]} is out of range")
    return value


def _refuse_lone_surrogates(doc: Any) -> None:
    """Every str (keys too) must encode to UTF-8: ``\\ud800`` without its pair cannot be answered back.
    Iterative, and bounded by the shape's value limit."""
    stack = [doc]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, dict):
            for key, value in item.items():
                _check_text(key)
                stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)


def _check_text(text: str) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadJson("a string holds an unpaired UTF-16 surrogate (\\ud800-\\udfff)") from None
