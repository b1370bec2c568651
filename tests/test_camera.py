"""Cameras: the CAMERAS setting, the back-off and pacing arithmetic, and the reader thread against real sources
on loopback (a looped MJPEG file; a server that accepts and then says nothing; a port that never answers)."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import simplejpeg

from hgr.common.camera_spec import CameraSpecError, parse_cameras, valid_name
from hgr.common.config import load_settings
from hgr.common.errors import ConfigError
from hgr.common.masking import mask_url
from hgr.common.options import DetectOptions
from hgr.edge.camera import (
    Camera,
    Grab,
    Pacer,
    Reader,
    backoff_delay,
    encode_frame,
    frame_pixels,
    frame_rgb,
    reduced_size,
)
from hgr.edge.stats import EdgeStats
from tests.camera_support import camera_frame, make_clip
from tests.support import free_port, poll

# --- CAMERAS ---


def test_cameras_parse_every_source_kind() -> None:
    cams = parse_cameras("kitchen=rtsp://127.0.0.1:8554/k, door=http://127.0.0.1:8080/mjpg,"
                         "demo=file:///clips/a.mp4,usb=/dev/video0,yard=rtsp+udp://cam.local/s,"
                         "shop=rtsps://u:p@cam.local/s")
    assert [(c.name, c.kind) for c in cams] == [("kitchen", "rtsp"), ("door", "http"), ("demo", "file"),
                                                ("usb", "device"), ("yard", "rtsp"), ("shop", "rtsp")]
    kitchen, door, demo, usb, yard, shop = cams
    assert kitchen.url == "rtsp://127.0.0.1:8554/k" and kitchen.options == {"rtsp_transport": "tcp"}
    assert yard.url == "rtsp://cam.local/s" and yard.options == {"rtsp_transport": "udp"}
    assert door.format == "mpjpeg" and demo.url == "/clips/a.mp4" and demo.loop and not kitchen.loop
    assert usb.format == "v4l2" and usb.url == "/dev/video0"
    assert shop.url == "rtsps://u:p@cam.local/s" and shop.shown == "rtsps://***@cam.local/s"


def test_cameras_from_a_file(tmp_path: Path) -> None:
    f = tmp_path / "cameras"
    f.write_text("# name=source, one a line\nkitchen=rtsp://h/k?a=1,b=2\n\ndoor=http://h/m\n")
    assert [(c.name, c.url) for c in parse_cameras(f"@{f}")] == [("kitchen", "rtsp://h/k?a=1,b=2"),
                                                                ("door", "http://h/m")]


@pytest.mark.parametrize(("spec", "says"), [
    ("Kitchen=rtsp://h/k", "camera name 'Kitchen'"),
    ("a" * 33 + "=rtsp://h/k", "expected [a-z0-9_-]{1,32}"),
    ("kitchen", "expected name=source"),
    ("kitchen=rtsp://h/a,kitchen=rtsp://h/b", "given twice"),
    ("kitchen=ftp://h/k", "is not a source"),
    ("kitchen=file://relative.mp4", "file:///absolute/path"),
    ("kitchen=rtsp:///nohost", "has no host"),
    ("kitchen=/dev/sda", "is not a source"),
    ("@/nonexistent/cameras", "file not found"),
])
def test_bad_cameras_are_refused_with_the_entry_named(spec: str, says: str) -> None:
    with pytest.raises(CameraSpecError, match=None) as exc:
        parse_cameras(spec)
    assert says in str(exc.value)
    with pytest.raises(ConfigError, match="CAMERAS"):
        load_settings({"CAMERAS": spec}, env_file=None)


def test_credentials_never_shown_in_errors() -> None:
    with pytest.raises(CameraSpecError) as exc:
        parse_cameras("kitchen=ftp://admin:hunter2@cam/s")
    assert "hunter2" not in str(exc.value)
    assert mask_url("http://cam/mjpg") == "http://cam/mjpg"
    assert mask_url("rtsp://admin:hunter2@cam/s?password=x") == "rtsp://***@cam/s?password=***"


def test_names() -> None:
    assert valid_name("kitchen") and valid_name("door_2") and valid_name("a-b") and valid_name("x" * 32)
    assert not valid_name("") and not valid_name("Kitchen") and not valid_name("a/b") and not valid_name("x" * 33)
    assert not valid_name("a+b") and not valid_name("a#") and not valid_name("a b")


def test_reconnect_bounds_are_checked() -> None:
    with pytest.raises(ConfigError, match="CAMERA_RECONNECT_MIN"):
        load_settings({"CAMERA_RECONNECT_MIN": "5", "CAMERA_RECONNECT_MAX": "1"}, env_file=None)


# --- arithmetic ---


def test_backoff_doubles_is_capped_and_jittered() -> None:
    caps = [backoff_delay(n, 0.5, 4.0, 0.999999) for n in range(7)]
    assert [round(c, 3) for c in caps] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    assert [backoff_delay(n, 0.5, 4.0, 0.0) for n in range(5)] == [0.25, 0.5, 1.0, 2.0, 2.0]  # the lower half
    assert backoff_delay(10_000, 0.5, 4.0, 0.5) == 3.0  # no overflow for a camera down for days


def test_pacer_keeps_every_third_frame_of_30_fps_at_10_fps_and_never_bursts() -> None:
    pacer = Pacer(10.0)
    kept = [n for n in range(30) if pacer.keep(n / 30)]
    assert kept == list(range(0, 30, 3))
    assert pacer.keep(100.0) and not pacer.keep(100.01) and not pacer.keep(100.05)  # after a gap: one frame
    assert pacer.keep(100.1)


def test_reduced_size_follows_the_workers_reduced_decode() -> None:
    assert reduced_size(640, 480, 360, 4096) == (640, 480)
    assert reduced_size(1920, 1080, 360, 4096) == (960, 540)
    assert reduced_size(3840, 2160, 360, 4096) == (960, 540)
    assert reduced_size(1920, 1080, 0, 4096) == (1920, 1080)
    assert reduced_size(1920, 1080, 0, 1000) == (1000, 562)


# --- the reader thread, on real sources ---


def _reader(source: str, **settings: float) -> Reader:
    s = load_settings({}, env_file=None, cameras=f"cam={source}", **settings)
    return Reader(parse_cameras(s.cameras)[0], s, notify=lambda: None)


def test_a_file_loops_and_mjpeg_parts_pass_through_undecoded(tmp_path: Path,
                                                             hand_photos: list[tuple[Path, int]]) -> None:
    clip = make_clip(tmp_path / "clip.mkv", [hand_photos[0][0]], fps=30, frames_each=6, codec="mjpeg")
    reader = _reader(f"file://{clip}", camera_fps=30.0)
    reader.start()
    try:
        poll(lambda: reader.frames_read > 14, 60, "the 6-frame clip read more than twice over")
        grab = poll(reader.take, 10, "a kept frame")
        assert grab.jpeg is not None and grab.jpeg[:2] == b"\xff\xd8" and grab.frame is None
        assert reader.up and reader.reconnects == 0
    finally:
        reader.stop()


@pytest.fixture
def silent_server() -> Iterator[int]:
    """An HTTP server that accepts, answers the MJPEG headers, then sends nothing."""
    port = free_port()
    srv = socket.create_server(("127.0.0.1", port))
    conns: list[socket.socket] = []
    done = threading.Event()

    def serve() -> None:
        srv.settimeout(0.2)
        while not done.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            conn.recv(4096)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=x\r\n\r\n")
            conns.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port
    done.set()
    thread.join(5)
    for c in conns:
        c.close()
    srv.close()


def test_a_silent_source_times_out_and_is_retried(silent_server: int) -> None:
    reader = _reader(f"http://127.0.0.1:{silent_server}/mjpg", camera_open_timeout=0.5, camera_read_timeout=0.5,
                     camera_reconnect_min=0.05, camera_reconnect_max=0.1)
    reader.start()
    try:
        poll(lambda: reader.reconnects >= 2, 60, "two reopen attempts")
        assert not reader.up and reader.frames_read == 0 and reader.error
    finally:
        reader.stop()


def test_a_port_that_never_answers_is_retried() -> None:
    with socket.create_server(("127.0.0.1", 0)) as srv:  # listens, never accepts: connect succeeds, no reply
        srv.listen(0)
        port = srv.getsockname()[1]
        reader = _reader(f"rtsp://127.0.0.1:{port}/cam", camera_open_timeout=0.5, camera_read_timeout=0.5,
                         camera_reconnect_min=0.05, camera_reconnect_max=0.1)
        reader.start()
        try:
            poll(lambda: reader.reconnects >= 2, 60, "two reopen attempts")
            assert not reader.up and reader.error
        finally:
            reader.stop()


# --- a decoded frame's way to the pool ---


class _PullingPool:
    """Just enough of the pool: each turn pulls the camera's frame at once and keeps it (no model runs)."""

    def __init__(self, wanted: int) -> None:
        self.frames: list[Any] = []
        self.enough = asyncio.Event()
        self.wanted = wanted

    async def submit_latest(self, pull: Any, *, stream: str) -> None:
        frame = pull()
        if frame is not None:
            self.frames.append(frame)
            if len(self.frames) >= self.wanted:
                self.enough.set()

    def close_stream(self, stream: str) -> None:
        pass


class _Host:
    def __init__(self, source: str, pool: _PullingPool) -> None:
        self.settings = load_settings({}, env_file=None, cameras=f"cam={source}", camera_fps=30.0)
        self.defaults = DetectOptions()
        self.counts = EdgeStats()
        self.pool = pool

    def report_frame(self, *args: Any) -> None:
        pass

    def camera_available(self, name: str, online: bool) -> None:
        pass


def test_a_decoded_frame_reaches_the_pool_as_pixels_at_the_size_its_jpeg_had(
        tmp_path: Path, hand_photos: list[tuple[Path, int]]) -> None:
    photo = hand_photos[0][0]
    clip = make_clip(tmp_path / "clip.mp4", [photo], fps=30, frames_each=6)  # H.264: the edge decodes it
    pool = _PullingPool(wanted=3)

    async def run() -> None:
        camera = Camera(_Host(f"file://{clip}", pool), parse_cameras(f"cam=file://{clip}")[0])  # type: ignore[arg-type]
        await camera.start()
        try:
            await asyncio.wait_for(pool.enough.wait(), 60)
        finally:
            await camera.stop()

    asyncio.run(run())
    s = load_settings({}, env_file=None)
    w, h = reduced_size(640, 480, s.reduced_decode_min_side, s.infer_max_side)
    for frame in pool.frames:
        assert frame.rgb_shape == (h, w) and len(frame.image) == h * w * 3  # pixels, not a JPEG
        assert frame.grab.frame is None  # the decoded frame is let go once converted
        rgb = np.frombuffer(frame.image, np.uint8).reshape(h, w, 3)
        assert np.abs(rgb.astype(int) - camera_frame(photo, w, h)).mean() < 6  # the photo, through H.264
    # the JPEG the edge made of such a frame before is the same size
    import av
    with av.open(str(clip)) as container:
        decoded = next(container.decode(video=0))
        pixels, shape = frame_pixels(decoded, s.reduced_decode_min_side, s.infer_max_side)
        assert len(pixels) == h * w * 3
        assert simplejpeg.decode_jpeg_header(encode_frame(decoded, s.reduced_decode_min_side, s.infer_max_side))[:2] \
            == shape == (h, w)


@pytest.mark.parametrize("width", [640, 638])
def test_a_decoded_frames_pixels_are_a_packed_view_whatever_the_row_padding(width: int) -> None:
    """``frame_pixels`` hands the pool a view of the array, no bytes copy; PyAV pads an RGB row to its line
    alignment (1914 bytes of a 638-px row in 1920), and such an array is packed first: the view is always the
    pixels row after row."""
    import av

    rgb = np.random.default_rng(width).integers(0, 256, (480, width, 3), np.uint8)
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
    converted = frame_rgb(frame, 0, 4096)
    assert converted.flags.c_contiguous == (width == 640)  # the case each width stands for
    pixels, shape = frame_pixels(frame, 0, 4096)
    assert shape == (480, width) and pixels.ndim == 1 and pixels.contiguous and pixels.nbytes == 480 * width * 3
    assert pixels == converted.tobytes()


def test_a_turn_takes_a_newer_mjpeg_part_but_leaves_a_newer_decoded_frame_to_the_reader() -> None:
    reader = _reader("file:///clips/none.mp4")  # never started: only its newest-frame slot is used
    try:
        reader._keep(Grab(1.0, 1000.0, frame=object()))  # type: ignore[arg-type]  # a decoded frame
        assert reader.take_part() is None and reader.take() is not None
        reader._keep(Grab(2.0, 2000.0, jpeg=b"\xff\xd8part"))
        part = reader.take_part()
        assert part is not None and part.jpeg == b"\xff\xd8part" and reader.take() is None
    finally:
        reader.stop()  # its series leave /metrics (a later test checks the camera labels there)
