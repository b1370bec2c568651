"""Camera clips made from the labelled photos, the way a sensor would film them.

A photo repeated bit for bit is not a camera: a real sensor adds fresh noise to every frame, the view
drifts by fractions of a pixel (a hand-held or wind-shaken mount, rolling-shutter wobble), the exposure
may flicker under mains light, and every frame is JPEG-encoded anew. Frame-to-frame differences,
motion gating and tracking all behave differently on such video than on identical bytes, so the
camera benchmark (``loadtest/camera.py``) streams these clips.

Scene kinds, each labelled with the finger count the scene should get (the sum for two hands):

- ``empty``: a background region of a photo, far from its hand (the hand's box as the model found it,
  grown by a margin), cropped at 4:3 and scaled up to 640×480. Same rooms, walls and lighting as the
  hand scenes, so an empty stream is no easier for the model than a real one. (No image set shipped by
  an installed package was available offline: scikit-image is not installed; the photos' borders are
  also closer to the scenes the cameras would see.)
- ``one_hand``: one photo, scaled to 640×480.
- ``two_hands``: two photos side by side, each cropped to a 320×480 window around its hand.

A clip shows ``scenes`` such scenes in turn, each held for ``hold`` frames (a hand held up, then the
next one); the stream loops over the clip. Everything here is pure (numpy/OpenCV on arrays, no model):
which photo regions hold hands is given by the caller (``Still``), and the same seed gives the same
bytes.
"""

from __future__ import annotations

import csv
import importlib.resources
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

WIDTH, HEIGHT = 640, 480
KINDS = ("empty", "one_hand", "two_hands")
# 36 labelled photos shipped inside the package (hands/README.md: sources and licenses), so `hgr bench` has
# frames on a plain install; `--photos` names a larger set. The wheel installs as files, so this is a real path.
SAMPLE_PHOTOS = Path(str(importlib.resources.files("hgr.loadtest") / "hands"))

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels


@dataclass(frozen=True)
class Sensor:
    """What the camera does to every frame."""

    noise_sigma: float = 3.0  # Gaussian read noise, DN (of 255), independent per pixel and channel
    drift_px: float = 1.5  # the view wanders by at most this many pixels in x and in y
    scale_wobble: float = 0.004  # and zooms by at most ± this fraction
    flicker: float = 0.0  # exposure gain varies by ± this fraction (0: off; 0.03 for mains-lit rooms)
    flicker_period_frames: float = 3.0  # 100 Hz light filmed at 30 fps beats at 10 Hz: 3 frames
    jpeg_quality: int = 80
    fps: float = 30.0  # the frame rate the drift's periods are meant for


@dataclass(frozen=True)
class Pose:
    """Where the sensor looks in one frame, relative to the scene."""

    dx: float
    dy: float
    scale: float
    gain: float


@dataclass(frozen=True)
class Still:
    """A photo as a still: what the reference model found in it (hand boxes, in pixels of the 640×480
    photo, and their finger counts, left to right) and what its label says."""

    file: str
    label: int
    image: np.ndarray  # HEIGHT×WIDTH×3 BGR
    boxes: tuple[Box, ...]
    counts: tuple[int, ...]
    steady: bool = True  # the same counts on every noisy, drifted frame of it looked at as a still

    @property
    def right(self) -> bool:
        """One hand found, counted as labelled, also through sensor noise: a photo a one-hand clip may use."""
        return self.steady and len(self.counts) == 1 and self.counts[0] == self.label


@dataclass(frozen=True)
class Scene:
    image: np.ndarray  # HEIGHT×WIDTH×3 BGR
    label: int  # expected total_fingers
    hands: int  # expected number of hands
    source: str  # photo file(s) and region, for the report


@dataclass(frozen=True)
class Clip:
    name: str
    kind: str
    frames: tuple[bytes, ...]  # JPEG
    labels: tuple[int, ...]  # expected total_fingers per frame
    hands: tuple[int, ...]  # expected hands per frame
    sources: tuple[str, ...] = field(default=())  # one per scene

    def __len__(self) -> int:
        return len(self.frames)

    def scene_of(self, frame: int) -> str:
        """The source of the scene ``frame`` belongs to (scenes are held for equal numbers of frames)."""
        return self.sources[frame * len(self.sources) // len(self.frames)]


# --- photos ---

def photo_folder(preferred: Path = SAMPLE_PHOTOS) -> Path:
    """The labelled photos: ``preferred`` when it has labels.csv, else the package's sample."""
    for folder in (preferred, SAMPLE_PHOTOS):
        if (folder / "labels.csv").is_file():
            return folder
    raise FileNotFoundError(f"no labels.csv in {preferred} or {SAMPLE_PHOTOS}")


def read_labels(folder: Path) -> list[tuple[str, int]]:
    """(file, fingers) for every row of ``folder/labels.csv`` whose photo exists."""
    with (folder / "labels.csv").open() as f:
        return [(row["file"], int(row["fingers"])) for row in csv.DictReader(f) if (folder / row["file"]).is_file()]


def fit(image: np.ndarray) -> np.ndarray:
    """Scale and centre-crop to WIDTH×HEIGHT (the photos are 4:3 already; others lose their edges)."""
    h, w = image.shape[:2]
    scale = max(WIDTH / w, HEIGHT / h)
    resized = cv2.resize(image, (max(WIDTH, round(w * scale)), max(HEIGHT, round(h * scale))),
                         interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    y0, x0 = (resized.shape[0] - HEIGHT) // 2, (resized.shape[1] - WIDTH) // 2
    return np.ascontiguousarray(resized[y0:y0 + HEIGHT, x0:x0 + WIDTH])


def load_photo(path: Path) -> np.ndarray:
    image = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path} is not a readable image")
    return fit(image)


# --- scene geometry (pure) ---

def grow(box: Box, margin: float, width: int = WIDTH, height: int = HEIGHT) -> Box:
    """``box`` grown by ``margin`` × its larger side on every side, clipped to the image."""
    x0, y0, x1, y1 = box
    m = margin * max(x1 - x0, y1 - y0)
    return max(0.0, x0 - m), max(0.0, y0 - m), min(float(width), x1 + m), min(float(height), y1 + m)


def empty_region(boxes: Sequence[Box], *, margin: float = 0.35, min_width: int = 160,
                 width: int = WIDTH, height: int = HEIGHT) -> tuple[int, int, int, int] | None:
    """The largest 4:3 rectangle (x0, y0, x1, y1) in one of the photo's four margins that stays clear of
    every hand box grown by ``margin``, or None when none is ``min_width`` wide."""
    if not boxes:
        return None
    grown = [grow(b, margin, width, height) for b in boxes]
    left = min(b[0] for b in grown)
    right = max(b[2] for b in grown)
    top = min(b[1] for b in grown)
    bottom = max(b[3] for b in grown)
    # the free strips: (x0, y0, x1, y1), each clear of the union of the grown boxes
    strips = [(0.0, 0.0, left, float(height)), (right, 0.0, float(width), float(height)),
              (0.0, 0.0, float(width), top), (0.0, bottom, float(width), float(height))]
    best: tuple[int, int, int, int] | None = None
    for x0, y0, x1, y1 in strips:
        w = min(x1 - x0, (y1 - y0) * 4 / 3)
        w = math.floor(w / 4) * 4
        if w < min_width or (best is not None and w <= best[2] - best[0]):
            continue
        h = w * 3 // 4
        # centred in the strip, so the crop keeps away from the hand on both sides where it can
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        bx0 = int(min(max(x0, cx - w / 2), x1 - w))
        by0 = int(min(max(y0, cy - h / 2), y1 - h))
        best = (bx0, by0, bx0 + int(w), by0 + int(h))
    return best


def crop_to_frame(image: np.ndarray, region: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = region
    return cv2.resize(image[y0:y1, x0:x1], (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC)


def hand_window(box: Box, *, width: int = WIDTH, height: int = HEIGHT,
                margin: float = 0.15) -> tuple[int, int, int, int]:
    """A 2:3 window (half the frame's width, its full height when the hand fits) centred on the hand,
    inside the image: the half of a side-by-side frame this photo fills."""
    x0, y0, x1, y1 = grow(box, margin, width, height)
    win_h = float(height)
    win_w = win_h * 2 / 3
    if x1 - x0 > win_w:  # a wide hand: a larger window, scaled down later
        win_w = min(float(width), x1 - x0)
        win_h = min(float(height), win_w * 3 / 2)
        win_w = win_h * 2 / 3
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    wx0 = min(max(0.0, cx - win_w / 2), width - win_w)
    wy0 = min(max(0.0, cy - win_h / 2), height - win_h)
    return round(wx0), round(wy0), round(wx0 + win_w), round(wy0 + win_h)


def side_by_side(left: Still, right: Still) -> np.ndarray:
    """Two photos in one frame, each cropped around its (single) hand."""
    halves = []
    for still in (left, right):
        x0, y0, x1, y1 = hand_window(still.boxes[0])
        halves.append(cv2.resize(still.image[y0:y1, x0:x1], (WIDTH // 2, HEIGHT), interpolation=cv2.INTER_AREA))
    return np.ascontiguousarray(np.hstack(halves))


# --- the sensor (pure) ---

def drift_path(frames: int, sensor: Sensor, rng: np.random.Generator) -> list[Pose]:
    """A smooth, bounded wander: per axis, two sines with random phases and periods of 2–8 s (at
    ``sensor.fps``), amplitudes summing to the bound, so |dx|, |dy| ≤ drift_px and |scale − 1| ≤
    scale_wobble in every frame. The flicker is a sine at ``flicker_period_frames`` with a random phase."""
    t = np.arange(frames, dtype=np.float64)

    def wander(bound: float) -> np.ndarray:
        periods = rng.uniform(2.0, 8.0, 2) * sensor.fps
        phases = rng.uniform(0, 2 * math.pi, 2)
        weights = rng.uniform(0.3, 0.7)
        path: np.ndarray = bound * (weights * np.sin(2 * math.pi * t / periods[0] + phases[0])
                                    + (1 - weights) * np.sin(2 * math.pi * t / periods[1] + phases[1]))
        return path

    dx, dy, ds = wander(sensor.drift_px), wander(sensor.drift_px), wander(sensor.scale_wobble)
    flicker_phase = rng.uniform(0, 2 * math.pi)
    gain = 1 + sensor.flicker * np.sin(2 * math.pi * t / sensor.flicker_period_frames + flicker_phase)
    return [Pose(float(dx[i]), float(dy[i]), float(1 + ds[i]), float(gain[i])) for i in range(frames)]


def look(scene: np.ndarray, pose: Pose) -> np.ndarray:
    """The scene as the sensor sees it at ``pose``: shifted and scaled about the centre (bilinear, edges
    reflected, as a slightly larger field of view would show them) and multiplied by the gain."""
    h, w = scene.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), 0.0, pose.scale)
    matrix[:, 2] += np.array([pose.dx, pose.dy])
    moved = cv2.warpAffine(scene, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    if pose.gain != 1.0:
        moved = cv2.convertScaleAbs(moved, alpha=pose.gain)
    return moved


def add_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian read noise of ``sigma`` DN on every pixel and channel, rounded and clipped to 0..255."""
    if sigma <= 0:
        return image
    noise = rng.standard_normal(image.shape, dtype=np.float32) * np.float32(sigma)
    return np.clip(image.astype(np.float32) + noise + np.float32(0.5), 0, 255).astype(np.uint8)


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return data.tobytes()


def render_frame(scene: np.ndarray, pose: Pose, sensor: Sensor, rng: np.random.Generator) -> bytes:
    """One camera frame: the scene at ``pose``, with fresh noise, JPEG-encoded."""
    return encode_jpeg(add_noise(look(scene, pose), sensor.noise_sigma, rng), sensor.jpeg_quality)


def render_clip(name: str, kind: str, scenes: Sequence[Scene], *, hold: int, sensor: Sensor, seed: int) -> Clip:
    """Each scene held for ``hold`` frames, in order, filmed by ``sensor``; the same seed, the same bytes."""
    rng = np.random.default_rng(seed)
    poses = drift_path(len(scenes) * hold, sensor, rng)
    frames: list[bytes] = []
    labels: list[int] = []
    hands: list[int] = []
    for i, scene in enumerate(scenes):
        for k in range(hold):
            frames.append(render_frame(scene.image, poses[i * hold + k], sensor, rng))
            labels.append(scene.label)
            hands.append(scene.hands)
    return Clip(name, kind, tuple(frames), tuple(labels), tuple(hands), tuple(s.source for s in scenes))


# --- choosing scenes ---

# What the reference model finds in a BGR image: (hand boxes in pixels, finger counts), left to right.
Judge = Callable[[np.ndarray], tuple[tuple[Box, ...], tuple[int, ...]]]


@dataclass
class SceneSource:
    """Picks scenes from the labelled photos in a seeded order, keeping only scenes whose still the
    reference model gets right (one-hand agreement is then a measure of the video path, not of photos
    the model misreads anyway). "Right" means on the clean photo and on ``looks`` frames of it as the
    ``sensor`` films them, each judged as a still: a photo whose count flips with camera noise alone is
    borderline for any pipeline and would measure the photo, not the video path. Stills are judged
    lazily, each at most once."""

    folder: Path
    judge: Judge
    seed: int
    sensor: Sensor = field(default_factory=Sensor)
    looks: int = 3
    _order: list[tuple[str, int]] = field(default_factory=list)
    _stills: dict[str, Still] = field(default_factory=dict)
    _next: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        labels = read_labels(self.folder)
        order = np.random.default_rng(self.seed).permutation(len(labels))
        self._order = [labels[i] for i in order]

    def still(self, file: str, label: int) -> Still:
        if file not in self._stills:
            image = load_photo(self.folder / file)
            boxes, counts = self.judge(image)
            self._stills[file] = Still(file, label, image, boxes, counts, self._steady(image, counts))
        return self._stills[file]

    def _steady(self, image: np.ndarray, counts: tuple[int, ...]) -> bool:
        """Whether ``looks`` noisy, drifted, re-encoded frames of ``image`` get ``counts`` too."""
        rng = np.random.default_rng([self.seed, int(image[::16, ::16].sum())])
        for pose in drift_path(self.looks, self.sensor, rng):
            frame = cv2.imdecode(np.frombuffer(render_frame(image, pose, self.sensor, rng), np.uint8), cv2.IMREAD_COLOR)
            if frame is None or self.judge(frame)[1] != counts:
                return False
        return True

    def _stills_from(self, cursor: str) -> Still | None:
        """The next still in this kind's walk through the seeded order (each kind walks on its own)."""
        i = self._next.get(cursor, 0)
        if i >= len(self._order):
            return None
        self._next[cursor] = i + 1
        return self.still(*self._order[i])

    def empty(self) -> Scene:
        while (still := self._stills_from("empty")) is not None:
            region = empty_region(still.boxes)
            if region is None:
                continue
            image = crop_to_frame(still.image, region)
            if not self.judge(image)[0]:  # the crop must really show no hand (no forearm taken for one)
                return Scene(image, 0, 0, f"{still.file}[{region[0]}:{region[2]},{region[1]}:{region[3]}]")
        raise LookupError("not enough photos with a hand-free border for the empty scenes")

    def one_hand(self) -> Scene:
        while (still := self._stills_from("one_hand")) is not None:
            if still.right:
                return Scene(still.image, still.label, 1, still.file)
        raise LookupError("not enough photos the model counts right for the one-hand scenes")

    def two_hands(self) -> Scene:
        while (left := self._next_right("two_hands")) is not None:
            right = self._next_right("two_hands")
            if right is None:
                break
            image = side_by_side(left, right)
            counts = self.judge(image)[1]
            if counts == (left.label, right.label) and self._steady(image, counts):
                return Scene(image, left.label + right.label, 2, f"{left.file}+{right.file}")
        raise LookupError("not enough photo pairs the model counts right side by side for the two-hand scenes")

    def _next_right(self, cursor: str) -> Still | None:
        while (still := self._stills_from(cursor)) is not None:
            if still.right:
                return still
        return None

    def scene(self, kind: str) -> Scene:
        if kind not in KINDS:
            raise ValueError(f"unknown scene kind {kind!r}; one of {', '.join(KINDS)}")
        return {"empty": self.empty, "one_hand": self.one_hand, "two_hands": self.two_hands}[kind]()


def parse_mix(text: str) -> list[tuple[str, int]]:
    """``"empty=4,one_hand=3,two_hands=1"`` → [("empty", 4), ("one_hand", 3), ("two_hands", 1)]."""
    mix = []
    for part in text.split(","):
        if not part.strip():
            continue
        kind, sep, count = part.partition("=")
        kind = kind.strip()
        if not sep or kind not in KINDS or not count.strip().isdigit():
            raise ValueError(f"bad mix entry {part!r}: want KIND=N with KIND one of {', '.join(KINDS)}")
        mix.append((kind, int(count)))
    return mix


def build_clips(source: SceneSource, mix: Sequence[tuple[str, int]], *, scenes: int, hold: int,
                sensor: Sensor, seed: int) -> list[Clip]:
    """One clip per stream of ``mix``, in its order; every clip its own scenes and its own noise."""
    clips: list[Clip] = []
    for kind, count in mix:
        for _ in range(count):
            index = len(clips)
            picked = [source.scene(kind) for _ in range(scenes)]
            clips.append(render_clip(f"{kind}-{index}", kind, picked, hold=hold, sensor=sensor,
                                     seed=seed * 1000 + index))
    return clips
