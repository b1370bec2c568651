"""Hypothesis strategies for hostile input: JSON-ish documents and raw JSON text with the oddities a parser
chokes on, image bytes (real photos mutated, headers declaring extreme sizes), and fleet payloads."""

from __future__ import annotations

import base64
import io
import json
import struct
import zlib
from typing import Any

import msgpack
from hypothesis import reject
from hypothesis import strategies as st
from PIL import Image

# --- JSON values and texts ---

# Text that includes what st.text() leaves out by default: lone surrogates.
odd_text = st.one_of(
    st.text(max_size=20),
    st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3),
    st.sampled_from(["", "full", "lite", "frame", "0", "../../etc/passwd", "\x00", "é" * 40, "ª" * 300]),
)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), odd_text,
)
json_values: st.SearchStrategy[Any] = st.recursive(
    scalars, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(odd_text, inner, max_size=4)),
    max_leaves=12)


def pack(value: Any) -> bytes:
    """msgpack bytes of ``value`` (surrogates kept); an int beyond 64 bits cannot be sent at all: rejected."""
    try:
        packed: bytes = msgpack.packb(value, use_bin_type=True, unicode_errors="surrogatepass")
        return packed
    except OverflowError:
        reject()


def dumps_loose(value: Any) -> str:
    """JSON text of ``value`` the way a careless client writes it: NaN/Infinity bare, surrogates escaped."""
    return json.dumps(value, allow_nan=True)


# Raw JSON texts that break naive parsers: depth, width, bad escapes, bare constants, huge numbers.
@st.composite
def odd_json_texts(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["deep", "wide", "escape", "constant", "number", "garbage", "valid"]))
    if kind == "deep":
        n = draw(st.integers(1, 5000))
        return draw(st.sampled_from(["[" * n, "[" * n + "]" * n, '{"a":' * n + "1" + "}" * n]))
    if kind == "wide":
        return "[" + "[]," * draw(st.integers(0, 30_000)) + "[]]"
    if kind == "escape":
        esc = draw(st.sampled_from(["\\ud800", "\\udfff", "\\ud83d\\ude00", "\\u0000", "\\x41", "\\", "\\u12"]))
        return draw(st.sampled_from([f'"{esc}"', f'{{"image_id": "{esc}"}}', f'{{"{esc}": 1}}']))
    if kind == "constant":
        return draw(st.sampled_from(["NaN", "[Infinity]", '{"ts": -Infinity}', '{"image_id": NaN}']))
    if kind == "number":
        return draw(st.sampled_from(["1e999", "-1e999", "1" * 5000, "0." + "1" * 5000, "[1e-999]"]))
    if kind == "garbage":
        return draw(st.text(max_size=200))
    return dumps_loose(draw(json_values))


# --- images ---

def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_declaring(width: int, height: int, depth: int = 8, color: int = 2) -> bytes:
    """A well-formed tiny PNG whose header declares ``width × height``."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + _png_chunk(b"IEND", b""))


def jpeg_declaring(photo: bytes, width: int, height: int) -> bytes:
    """``photo`` with its SOF frame header rewritten to declare ``width × height`` (16-bit each)."""
    for marker in (b"\xff\xc0", b"\xff\xc2", b"\xff\xc1"):
        at = photo.find(marker)
        if at >= 0:
            return photo[:at + 5] + struct.pack(">HH", height, width) + photo[at + 9:]
    return photo


def bmp_declaring(width: int, height: int) -> bytes:
    """A BMP header (40-byte DIB) declaring ``width × height`` (signed: negative = top-down), few pixels."""
    pixels = b"\0" * 64
    dib = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(dib) + len(pixels), 0, 0, 14 + len(dib)) + dib + pixels


def webp_declaring(width: int, height: int) -> bytes:
    """A VP8X WebP header declaring a canvas of ``width × height`` (24-bit each), no image data."""
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\0\0\0\0" + (width - 1).to_bytes(3, "little") \
        + (height - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", 4 + len(vp8x)) + b"WEBP" + vp8x


def tiny_image(fmt: str, width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (120, 80, 40)).save(buf, fmt)
    return buf.getvalue()


side = st.one_of(st.integers(0, 70_000), st.sampled_from([1, 8, 16_384, 16_385, 32_766, 32_767, 65_535]))


@st.composite
def image_bytes(draw: st.DrawFn, photos: list[bytes]) -> bytes:
    """Image bytes a hostile client could send: mutated real photos, extreme headers, tiny or odd images."""
    photo = draw(st.sampled_from(photos))
    kind = draw(st.sampled_from(["photo", "truncate", "truncate_eoi", "flip", "splice", "png_header",
                                 "jpeg_header", "bmp_header", "webp_header", "tiny", "random"]))
    if kind == "photo":
        return photo
    if kind in ("truncate", "truncate_eoi"):
        cut = draw(st.integers(0, len(photo)))
        return photo[:cut] + (b"\xff\xd9" if kind == "truncate_eoi" else b"")
    if kind == "flip":
        data = bytearray(photo)
        for position in draw(st.lists(st.integers(0, len(data) - 1), min_size=1, max_size=8)):
            data[position] ^= 1 << draw(st.integers(0, 7))
        return bytes(data)
    if kind == "splice":
        at = draw(st.integers(0, len(photo)))
        return photo[:at] + draw(st.binary(max_size=64)) + photo[at + draw(st.integers(0, 64)):]
    if kind == "png_header":
        depth, color = draw(st.sampled_from([1, 8, 16])), draw(st.sampled_from([0, 2, 6]))
        return png_declaring(draw(side), draw(side), depth, color)
    if kind == "jpeg_header":
        return jpeg_declaring(photo, draw(st.integers(0, 65_535)), draw(st.integers(0, 65_535)))
    if kind == "bmp_header":
        return bmp_declaring(draw(st.integers(-(2**31), 2**31 - 1)), draw(st.integers(-(2**31), 2**31 - 1)))
    if kind == "webp_header":
        return webp_declaring(draw(st.integers(1, 2**24)), draw(st.integers(1, 2**24)))
    if kind == "tiny":
        return tiny_image(draw(st.sampled_from(["PNG", "JPEG", "BMP", "WEBP", "GIF"])), draw(st.integers(1, 40)),
                          draw(st.integers(1, 40)))
    return draw(st.binary(max_size=512))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- fleet payloads (docs/mqtt.md's examples, mutated) ---

FLEET_SEEDS: dict[str, dict[str, Any]] = {
    "status": {"v": 1, "edge_id": "cam-1", "session": "6275fa48ff104cd3", "status": "online", "birth_seq": 1,
               "conn": 1, "metrics_seq": 0, "ts": 1795685015.08, "version": "1.0.0", "model": "full",
               "metrics_interval_s": 10.0, "capabilities": {"protocols": ["hgr.msgpack.v1"], "max_fps": 60.0}},
    "metrics": {"v": 1, "edge_id": "cam-1", "session": "6275fa48ff104cd3", "seq": 42, "ts": 1795685027.59,
                "interval_s": 10.0, "fps": 29.8, "frames": {"received": 1520, "processed": 1498, "dropped": 22},
                "drops": {"superseded": 20}, "latency_ms": {"p50": 7.8, "p95": 14.2, "p99": 21.5},
                "connections": 3, "workers": {"workers": 2, "alive": 2, "restarts": 0}, "errors": {"bad_frame": 1},
                "frames_by_key": {"kiosk": 12}},
    "events": {"v": 1, "edge_id": "cam-1", "session": "6275fa48ff104cd3", "seq": 7, "ts": 1795685031.2,
               "stream": "1a-3f9c2e", "key": "kiosk", "phase": "new", "total_fingers": 3,
               "hands": [{"handedness": "Right", "fingers": 3, "gesture": "three"}]},
}


@st.composite
def fleet_docs(draw: st.DrawFn, kind: str) -> dict[str, Any]:
    """A seed message of ``kind`` with some fields replaced by arbitrary values (or removed)."""
    doc = dict(FLEET_SEEDS[kind])
    for key in draw(st.lists(st.sampled_from(sorted(doc)), max_size=4, unique=True)):
        if draw(st.booleans()):
            doc[key] = draw(json_values)
        else:
            doc.pop(key, None)
    return doc
