"""The installed environment a user gets from `make`: one `cv2`, the headless build, and mediapipe's
Tasks API importable (mediapipe declares the GUI OpenCV build; see README "OpenCV builds")."""

from __future__ import annotations

from importlib import metadata

import cv2


def _installed(name: str) -> bool:
    try:
        metadata.distribution(name)
        return True
    except metadata.PackageNotFoundError:
        return False


def test_exactly_one_opencv_build_and_it_is_headless() -> None:
    builds = [n for n in ("opencv-python", "opencv-contrib-python", "opencv-python-headless",
                          "opencv-contrib-python-headless") if _installed(n)]
    assert builds == ["opencv-python-headless"], f"installed OpenCV builds: {builds}"
    assert "GUI: NONE" in " ".join(cv2.getBuildInformation().split()), "cv2 must be the build without GUI"


def test_mediapipe_tasks_api_is_importable() -> None:
    from mediapipe.tasks.python import vision

    assert hasattr(vision, "HandLandmarker")
