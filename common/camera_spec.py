"""Camera names and sources: the ``CAMERAS`` setting parsed and checked, pure (no I/O but reading its file).

``CAMERAS`` is comma-separated ``name=source`` pairs, or ``@/path/file`` with one pair per line (blank lines
and ``#`` comments ignored; the form for many cameras, or sources with commas in them). A name is
``[a-z0-9_-]{1,32}``: it becomes a metric label, an MQTT topic level and the stream's name in results and
events, so it is short, lower-case and safe in all three. The same rule names WebSocket streams.

Sources (docs/cameras.md):

- ``rtsp://…`` / ``rtsps://…`` RTSP over TCP (interleaved); ``rtsp+udp://…`` the same over UDP
  (``rtsp+tcp://…`` says TCP explicitly);
- ``http://…`` / ``https://…`` an MJPEG stream (``multipart/x-mixed-replace``);
- ``file:///abs/path.mp4`` a video file, looped, played at its own frame rate;
- ``/dev/videoN`` a V4L2 (USB) camera.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from hgr.common.masking import mask_url

NAME_RULE = "[a-z0-9_-]{1,32}"
_NAME = re.compile(NAME_RULE)
_DEVICE = re.compile(r"/dev/video[0-9]{1,3}")
KINDS = ("rtsp", "http", "file", "device")


class CameraSpecError(ValueError):
    """A ``CAMERAS`` entry that cannot be used; the message names the entry."""


def valid_name(name: str) -> bool:
    return bool(_NAME.fullmatch(name))


@dataclass(frozen=True)
class CameraSpec:
    name: str
    source: str  # as configured
    kind: str  # one of KINDS
    url: str  # what the decoder opens
    format: str | None = None  # the demuxer, where it cannot be guessed (mpjpeg, v4l2)
    options: dict[str, str] = field(default_factory=dict)  # the demuxer's options (rtsp_transport)

    @property
    def loop(self) -> bool:
        return self.kind == "file"

    @property
    def live(self) -> bool:
        """A source that runs on its own clock (everything but a file, which is paced to its timestamps)."""
        return self.kind != "file"

    @property
    def shown(self) -> str:
        """The source for /status and logs: user and password of a URL replaced by ``***``."""
        return mask_url(self.source)


def parse_source(name: str, source: str) -> CameraSpec:
    scheme = source.split("://", 1)[0].lower() if "://" in source else ""
    if scheme in ("rtsp", "rtsps", "rtsp+tcp", "rtsp+udp"):
        transport = "udp" if scheme == "rtsp+udp" else "tcp"
        url = ("rtsps" if scheme == "rtsps" else "rtsp") + source[len(scheme):]
        if not urlsplit(url).hostname:
            raise CameraSpecError(f"camera {name!r}: {mask_url(source)!r} has no host")
        return CameraSpec(name, source, "rtsp", url, None, {"rtsp_transport": transport})
    if scheme in ("http", "https"):
        if not urlsplit(source).hostname:
            raise CameraSpecError(f"camera {name!r}: {mask_url(source)!r} has no host")
        return CameraSpec(name, source, "http", source, "mpjpeg")
    if scheme == "file":
        path = source[len("file://"):]
        if not path.startswith("/"):
            raise CameraSpecError(f"camera {name!r}: {source!r}: a file source is file:///absolute/path")
        return CameraSpec(name, source, "file", path)
    if _DEVICE.fullmatch(source):
        return CameraSpec(name, source, "device", source, "v4l2")
    raise CameraSpecError(f"camera {name!r}: {mask_url(source)!r} is not a source this edge reads: "
                          "rtsp://, rtsp+udp://, http(s):// (MJPEG), file:///path or /dev/videoN")


def parse_cameras(spec: str) -> list[CameraSpec]:
    """The cameras of a ``CAMERAS`` value (``name=source,…`` or ``@file``), in order; names unique."""
    spec = spec.strip()
    if not spec:
        return []
    if spec.startswith("@"):
        path = Path(spec[1:])
        if not path.is_file():
            raise CameraSpecError(f"{spec!r}: file not found")
        entries = [line.strip() for line in path.read_text().splitlines()]
        entries = [e for e in entries if e and not e.startswith("#")]
    else:
        entries = [e.strip() for e in spec.split(",") if e.strip()]
    cameras: list[CameraSpec] = []
    for entry in entries:
        name, sep, source = entry.partition("=")
        name, source = name.strip(), source.strip()
        if not sep or not source:
            raise CameraSpecError(f"{mask_url(entry)!r}: expected name=source")
        if not valid_name(name):
            raise CameraSpecError(f"camera name {name!r}: expected {NAME_RULE} (lower-case letters, digits, "
                                  "'_' and '-', at most 32)")
        if any(c.name == name for c in cameras):
            raise CameraSpecError(f"camera name {name!r} given twice")
        cameras.append(parse_source(name, source))
    return cameras
