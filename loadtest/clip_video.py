"""Camera clips as video files an edge's file cameras read, the frames a WebSocket client would send of them,
and what reading them costs.

The ``file_cameras`` section (``loadtest/file_cameras.py``) plays each clip twice: as an H.264 file that a
camera of ``CAMERAS`` decodes in the edge, and as JPEG frames that a WebSocket client sends. The client's
frames are made the way the edge makes a camera's: the file decoded with PyAV, the frames the camera's pacing
keeps (``hgr.edge.camera.Pacer`` at the same rate), each at the size the camera hands its workers. A camera
hands them that frame's pixels (``hgr.edge.camera.frame_pixels``); a client can only send an image, so it sends
the JPEG of those pixels (``hgr.edge.camera.encode_frame``, the same size): the workers see the same picture
from both, decoded from a JPEG for the client's frames only.

A clip is photos filmed by the simulated sensor of ``loadtest/clips.py`` (drift, read noise), each held
for ``hold`` frames, written without B-frames and with a key frame every two seconds, as IP cameras send.
The noise comes from a bank of fields drawn once, each frame taking one at a random shift (``NoiseBank``):
a twentieth of the cost of drawing fresh noise for every frame (the clips are made while the section runs),
and enough for a section that measures CPU, not agreement: every frame still differs from the last
everywhere, as a real sensor's do, so neither the encoder nor a motion gate sees a still picture.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from hgr.common.config import Settings
from hgr.edge.camera import Pacer, encode_frame, frame_pixels, media_time
from hgr.loadtest import clips as camclips

KEY_FRAME_S = 2.0  # seconds between key frames, a common IP-camera setting
# A bit rate per frame (~1 Mbit/s at 15 fps), not a constant quality: libx264's rate control gives a slow
# clip many more bits per frame (17 × at 3 fps against 15), which would make the frame rate, not the
# camera path, set a frame's decode cost.
BITS_PER_FRAME = 64_000


@dataclass(frozen=True)
class VideoClip:
    path: Path
    fps: float  # the file's frame rate: a file camera plays it at this rate and decodes every frame
    frames: int
    sources: tuple[str, ...]  # the photos, in order


def photos(folder: Path) -> list[Path]:
    found = sorted(folder.glob("*.jpg"))
    if not found:
        raise FileNotFoundError(f"no JPEG photos in {folder}")
    return found


class NoiseBank:
    """Gaussian read noise of ``sigma`` DN: ``size`` fields drawn once, split into their positive and negative
    parts (so adding one is two saturating uint8 operations); each frame gets a random field at a random shift."""

    def __init__(self, sigma: float, rng: np.random.Generator, size: int = 8,
                 shape: tuple[int, int, int] = (camclips.HEIGHT, camclips.WIDTH, 3)) -> None:
        self.sigma = sigma
        self.fields = []
        for _ in range(size if sigma > 0 else 0):
            noise = np.rint(rng.standard_normal(shape, dtype=np.float32) * np.float32(sigma))
            self.fields.append((np.clip(noise, 0, 255).astype(np.uint8), np.clip(-noise, 0, 255).astype(np.uint8)))

    def add(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if not self.fields:
            return image
        up, down = self.fields[int(rng.integers(len(self.fields)))]
        shift = (int(rng.integers(image.shape[0])), int(rng.integers(image.shape[1])))
        out: np.ndarray = cv2.subtract(cv2.add(image, np.roll(up, shift, (0, 1))), np.roll(down, shift, (0, 1)))
        return out


def write_clip(path: Path, scenes: list[np.ndarray], *, hold: int, fps: float, sensor: camclips.Sensor,
               noise: NoiseBank, seed: int, sources: tuple[str, ...] = ()) -> VideoClip:
    """``scenes`` (WIDTH×HEIGHT BGR) in turn, each for ``hold`` frames, filmed by ``sensor`` at ``fps`` with
    ``noise``, as H.264 in ``path`` (.mp4); the same seed and bank, the same file."""
    import av

    sensor = dataclasses.replace(sensor, fps=fps)  # the drift's periods are in seconds of this clip
    rng = np.random.default_rng(seed)
    poses = camclips.drift_path(len(scenes) * hold, sensor, rng)
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=rate, options={"preset": "veryfast"})
        stream.width, stream.height = camclips.WIDTH, camclips.HEIGHT
        stream.pix_fmt = "yuv420p"
        stream.time_base = 1 / rate
        stream.codec_context.gop_size = max(1, round(KEY_FRAME_S * fps))
        stream.codec_context.max_b_frames = 0
        stream.bit_rate = int(BITS_PER_FRAME * fps)
        for n, pose in enumerate(poses):
            bgr = noise.add(camclips.look(scenes[n // hold], pose), rng)
            frame = av.VideoFrame.from_ndarray(bgr, format="bgr24")
            frame.pts = n
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return VideoClip(path, fps, len(poses), sources)


def make_clips(folder: Path, out: Path, count: int, *, scenes: int, hold: int, fps: float,
               sensor: camclips.Sensor, seed: int) -> list[VideoClip]:
    """``count`` clips of ``scenes`` photos each from ``folder``, photos drawn in a seeded order (each
    clip its own, while there are enough), written to ``out``/clip-N.mp4."""
    files = photos(folder)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(files))
    noise = NoiseBank(sensor.noise_sigma, rng)
    made = []
    for i in range(count):
        picked = [files[order[(i * scenes + k) % len(files)]] for k in range(scenes)]
        made.append(write_clip(out / f"clip-{i}.mp4", [camclips.load_photo(p) for p in picked], hold=hold, fps=fps,
                               sensor=sensor, noise=noise, seed=seed * 1000 + i, sources=tuple(p.name for p in picked)))
    return made


def _open(path: Path) -> tuple[Any, Any]:
    """The file and its video stream, decoded in the calling thread as a camera's reader decodes it."""
    import av

    container = av.open(str(path))
    stream = container.streams.video[0]
    stream.codec_context.thread_count = 1  # as hgr.edge.camera.Reader: one thread, the caller's
    return container, stream


def sent_frames(clip: VideoClip, pace: float, settings: Settings) -> list[bytes]:
    """One loop of ``clip`` as a WebSocket client would send what the edge's camera keeps of it at ``pace``
    frames per second: the frames ``Pacer`` keeps (by the file's timestamps), each JPEG-encoded by
    ``encode_frame`` at the size the camera hands its workers the pixels."""
    pacer = Pacer(pace)
    container, stream = _open(clip.path)
    frames = []
    with container:
        for frame in container.decode(stream):
            at = media_time(frame)
            if at is not None and pacer.keep(at):
                frames.append(encode_frame(frame, settings.reduced_decode_min_side, settings.infer_max_side))
    if not frames:
        raise ValueError(f"{clip.path}: no frames decoded")
    return frames


def reading_cost(clip: VideoClip, pace: float, settings: Settings, seconds: float) -> dict[str, Any]:
    """CPU a file camera spends in the edge on the first ``seconds`` of ``clip``, measured here: the file
    demuxed and decoded at its own rate (the thread sleeps until each frame is due, as the reader does),
    every frame the pacing keeps scaled and converted to the pixels a worker gets (``frame_pixels``). Thread CPU
    time (``time.thread_time``), so nothing else this process does is counted; call it in a thread of its own,
    off the event loop."""
    pacer = Pacer(pace)
    container, stream = _open(clip.path)
    read = kept = 0
    convert_s = 0.0
    with container:
        started_cpu, started = time.thread_time(), time.monotonic()
        for frame in container.decode(stream):
            at = media_time(frame)
            if at is not None and at >= seconds and kept:
                break
            read += 1
            if at is not None:
                wait = started + at - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                if pacer.keep(at):
                    kept += 1
                    t = time.thread_time()
                    frame_pixels(frame, settings.reduced_decode_min_side, settings.infer_max_side)
                    convert_s += time.thread_time() - t
        total_s = time.thread_time() - started_cpu
    if not read or not kept:
        raise ValueError(f"{clip.path}: no frames decoded")
    decode_s = total_s - convert_s
    return {"clip": clip.path.name, "video_fps": clip.fps, "pace_fps": pace, "frames_read": read, "frames_kept": kept,
            "decode_ms_per_read_frame": round(decode_s * 1000 / read, 3),
            "convert_ms_per_kept_frame": round(convert_s * 1000 / kept, 3),
            "ms_per_kept_frame": round(total_s * 1000 / kept, 3)}
