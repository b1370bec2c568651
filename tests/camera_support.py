"""Camera sources for tests, all real and on loopback: clips made from the labelled photos (PyAV), an
MJPEG-over-HTTP server (``multipart/x-mixed-replace``, a thread in the test) and a GStreamer RTSP server
(a subprocess under Debian's python3: tests/rtsp_server.py)."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self

import av
import cv2
import numpy as np

from tests.support import free_port, need, port_open

RTSP_SCRIPT = Path(__file__).parent / "rtsp_server.py"
SYSTEM_PYTHON = "/usr/bin/python3"


def camera_frame(photo: Path, width: int = 640, height: int = 480) -> np.ndarray:
    """A photo as an RGB camera frame of ``width``×``height``."""
    bgr = cv2.imread(str(photo))
    assert bgr is not None, photo
    return np.ascontiguousarray(cv2.cvtColor(cv2.resize(bgr, (width, height)), cv2.COLOR_BGR2RGB))


def make_clip(path: Path, photos: list[Path], *, fps: int = 15, frames_each: int = 15, codec: str = "h264") -> Path:
    """A small video of the photos in turn, each held for ``frames_each`` frames (h264 in .mp4, or mjpeg)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        assert isinstance(stream, av.video.stream.VideoStream)
        stream.width, stream.height = 640, 480
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        stream.time_base = Fraction(1, fps)
        n = 0
        for photo in photos:
            rgb = camera_frame(photo)
            for _ in range(frames_each):
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                frame.pts = n
                n += 1
                for packet in stream.encode(frame):
                    out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


class MjpegServer:
    """``multipart/x-mixed-replace`` JPEG parts at ``fps`` to every client of http://127.0.0.1:PORT/mjpg."""

    def __init__(self, jpegs: list[bytes], fps: float = 15.0) -> None:
        self.jpegs, self.fps = jpegs, fps
        self.port = free_port()
        self.clients = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=hgrframe")
                self.end_headers()
                server.clients += 1
                n = 0
                try:
                    while not server.stopped.is_set():
                        jpeg = server.jpegs[n % len(server.jpegs)]
                        n += 1
                        self.wfile.write(b"--hgrframe\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                                         % len(jpeg) + jpeg + b"\r\n")
                        server.stopped.wait(1 / server.fps)
                except OSError:
                    return

            def log_message(self, format: str, *args: object) -> None:
                return

        self.stopped = threading.Event()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mjpg"

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def rtsp_available() -> bool:
    if not (Path(SYSTEM_PYTHON).is_file() and shutil.which("gst-inspect-1.0")):
        return False
    code = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    probe = subprocess.run([SYSTEM_PYTHON, "-c", code], check=False, capture_output=True)
    plugins = all(subprocess.run(["gst-inspect-1.0", p], check=False, capture_output=True).returncode == 0
                  for p in ("x264enc", "rtph264pay", "imagefreeze", "jpegdec"))
    return probe.returncode == 0 and plugins


class RtspServer:
    """tests/rtsp_server.py serving ``image`` as live H.264 at rtsp://127.0.0.1:PORT/cam; ``kill`` and
    ``start`` again on the same port (the outage test)."""

    def __init__(self, image: Path, fps: int = 15) -> None:
        need(rtsp_available(), "GStreamer's RTSP server (python3-gi, gir1.2-gst-rtsp-server-1.0, "
                               "gstreamer1.0-plugins-good/-ugly) is not installed")
        self.image, self.fps = image, fps
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/cam"

    def start(self, deadline_s: float = 30.0) -> None:
        self.proc = subprocess.Popen([SYSTEM_PYTHON, str(RTSP_SCRIPT), str(self.port), str(self.image),
                                      str(self.fps)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        end = time.monotonic() + deadline_s
        while not port_open("127.0.0.1", self.port, timeout=0.2):
            assert self.proc.poll() is None, f"the RTSP server exited with {self.proc.returncode}"
            assert time.monotonic() < end, "the RTSP server did not listen"
            time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
