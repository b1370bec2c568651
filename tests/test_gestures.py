"""Gestures on real hands where the photos show them, and on hands built from real finger chains."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from hgr.common.inference.fingers import fingers_up
from hgr.common.inference.gestures import GESTURES, PATTERNS, classify
from tests.fixtures.hands import (
    INDEX,
    PINKY,
    THUMB,
    mirror,
    point_up,
    project,
    random_rotation,
    scored_hands,
    transplant,
    turn_in_picture,
    world,
)

OPEN, FIST, ONE = "p_0069.jpg", "p_0182.jpg", "p_0138.jpg"  # real left hands: open palm, fist, index up


def gesture_of(pts: np.ndarray, with_world: bool = True) -> str:
    up = fingers_up(pts)
    return classify(up, project(pts), pts.tolist() if with_world else None)


def share(photo_filter: Callable[[dict[str, Any]], bool], expected: str) -> tuple[float, Counter[str]]:
    got = Counter(classify(fingers_up(h["world_landmarks"]), h["landmarks"], h["world_landmarks"])
                  for p, h in scored_hands() if photo_filter(p))
    return got[expected] / max(1, sum(got.values())), got


# --- gestures the photos show ------------------------------------------------------------------------

@pytest.mark.parametrize("source,label,expected,minimum", [
    ("SubhiH", 0, "fist", 1.0),
    ("SubhiH", 1, "pointing_up", 0.85),  # an upright index finger
    ("SubhiH", 2, "victory", 0.95),
    ("SubhiH", 4, "four", 0.95),  # thumb tucked
    ("", 5, "open_palm", 0.95),
    ("EPSRC", 2, "victory", 0.85),
    ("EPSRC", 3, "three", 0.75),  # mostly index+middle+ring, seen from the back
])
def test_real_photos(source: str, label: int, expected: str, minimum: float) -> None:
    ratio, got = share(lambda p: p["source"].startswith(source) and p["label"] == label, expected)
    assert ratio >= minimum, got


@pytest.mark.parametrize("file", ["p_0017.jpg", "p_0055.jpg", "p_0104.jpg", "p_0153.jpg", "p_0198.jpg"])
def test_ok_on_real_photos(file: str) -> None:
    assert gesture_of(world(file)) == "ok"


# --- gestures built from real chains -----------------------------------------------------------------

def thumb_fist() -> np.ndarray:
    """A real fist with the real extended thumb of an open palm."""
    return transplant(world(FIST), world(OPEN), THUMB)


def test_thumb_up_and_down() -> None:
    up = point_up(thumb_fist(), 2, 4)
    assert fingers_up(up) == {
        "thumb": True, "index": False, "middle": False, "ring": False, "pinky": False}
    for tilt in (-20, 0, 20):
        assert gesture_of(turn_in_picture(up, tilt)) == "thumb_up"
        assert gesture_of(turn_in_picture(up, 180 + tilt)) == "thumb_down"
        # image landmarks alone give the same answer
        assert gesture_of(turn_in_picture(up, tilt), with_world=False) == "thumb_up"
    # a thumb pointing sideways is neither
    assert gesture_of(turn_in_picture(up, 90)) == "none"
    assert gesture_of(turn_in_picture(up, -90)) == "none"


def test_thumb_up_of_a_right_hand() -> None:
    """The mirror image (a right hand) still points its thumb up."""
    assert gesture_of(mirror(point_up(thumb_fist(), 2, 4))) == "thumb_up"


def test_pointing_up_versus_one() -> None:
    upright = point_up(world(ONE), 5, 8)
    assert gesture_of(upright) == "pointing_up"
    assert gesture_of(turn_in_picture(upright, 90)) == "one"  # pointing sideways
    assert gesture_of(turn_in_picture(upright, 180)) == "one"  # pointing down


def test_i_love_you() -> None:
    """Index up (real), plus the real extended thumb and pinky of an open palm."""
    pts = transplant(transplant(world(ONE), world(OPEN), THUMB), world(OPEN), PINKY)
    assert gesture_of(pts) == "i_love_you"
    assert gesture_of(turn_in_picture(pts, 180)) == "i_love_you"


def test_call_me() -> None:
    pts = transplant(thumb_fist(), world(OPEN), PINKY)
    assert gesture_of(pts) == "call_me"


def test_no_gesture_for_an_unnamed_pattern() -> None:
    """Pinky alone (a real extended pinky on a real fist) is no gesture."""
    pts = transplant(world(FIST), world(OPEN), PINKY)
    assert fingers_up(pts)["pinky"] and sum(fingers_up(pts).values()) == 1
    assert gesture_of(pts) == "none"


def test_four_and_open_palm_and_fist_built_from_chains() -> None:
    assert gesture_of(transplant(world(OPEN), world(FIST), THUMB)) == "four"
    assert gesture_of(world(OPEN)) == "open_palm"
    assert gesture_of(transplant(world(OPEN), world(FIST), INDEX)) == "none"  # thumb + m/r/p: no name


# --- the label set stays bounded ---------------------------------------------------------------------

def test_every_result_is_a_known_label() -> None:
    rng = np.random.default_rng(7)
    seen = set()
    for _, h in scored_hands():
        pts = np.asarray(h["world_landmarks"])
        for moved in (pts, pts @ random_rotation(rng).T, mirror(pts)):
            name = classify(fingers_up(moved), h["landmarks"], moved.tolist())
            assert name in GESTURES
            seen.add(name)
    assert {"fist", "pointing_up", "victory", "three", "four", "open_palm", "ok"} <= seen
    assert set(PATTERNS.values()) <= set(GESTURES)
    assert len(GESTURES) == len(set(GESTURES)) and "none" in GESTURES


def test_gesture_does_not_change_when_the_hand_turns_about_the_vertical() -> None:
    """Patterns come from the invariant finger rules, so turning a hand to show its back keeps the name."""
    for file, expected in ((OPEN, "open_palm"), (FIST, "fist")):
        pts = world(file)
        for degrees in (45, 135, 180):
            turned = pts @ np.array([[np.cos(np.radians(degrees)), 0, np.sin(np.radians(degrees))], [0, 1, 0],
                                     [-np.sin(np.radians(degrees)), 0, np.cos(np.radians(degrees))]]).T
            assert gesture_of(turned) == expected
