"""The browser demo (web/), served by a real edge and driven in a real headless Chromium.

Chromium's fake camera plays a video made at test time from real hand photos (one showing 2 fingers,
one showing 5); the page captures it with getUserMedia, sends JPEG frames over the edge's WebSocket
protocol, and must display both counts. Nothing is mocked: real edge process, real model, real
browser, real camera pipeline. A screenshot is kept in artifacts/ for people to look at.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import pytest

from tests.browser import CHROMIUM, CHROMIUM_ARGS, need_chromium
from tests.support import free_port, stop_process, wait_for_port
from tests.webvideo import build_fake_camera, load_letterboxed

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "web"
ARTIFACTS = ROOT / "artifacts"
EXPECTED_COUNTS = (2, 5)
# Generous: a loaded 2-core machine runs the edge, its worker and Chromium's software video at once.
EDGE_START_S = 120.0
COUNTS_DEADLINE_S = 240.0

FAKE_CAMERA_ARGS = [
    "--use-fake-ui-for-media-stream",  # grant the camera without a prompt
    "--use-fake-device-for-media-stream",
]


# ---------- the edge ----------

def start_edge(tmp: Path, model_path: str, **env: str) -> tuple[subprocess.Popen[bytes], str, Path]:
    """`hgr edge` on a free port with one worker; returns (process, base URL, log file)."""
    port = free_port()
    log = tmp / f"edge-{port}.log"
    child_env = {**os.environ, "WORKERS": "1", "HGR_MODEL_PATH": model_path, "LOG_FORMAT": "text",
                 "MQTT_URL": "", "EDGE_ID": "web-e2e", **env}
    lite = Path(model_path).with_name("hand_landmarker_lite.task")
    if lite.is_file():
        child_env.setdefault("HGR_MODEL_LITE_PATH", str(lite))
    with log.open("wb") as out:
        # cwd=tmp: no developer .env file can change the edge under test.
        proc = subprocess.Popen([sys.executable, "-m", "hgr", "edge", "--host", "127.0.0.1",
                                 "--port", str(port)], cwd=tmp, env=child_env, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        wait_for_port("127.0.0.1", port, EDGE_START_S)
    except TimeoutError:
        proc.kill()
        raise AssertionError(f"edge did not start:\n{log.read_text()[-3000:]}") from None
    return proc, f"http://127.0.0.1:{port}", log


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory, model_path: str) -> Iterator[str]:
    proc, url, _log = start_edge(tmp_path_factory.mktemp("edge"), model_path)
    yield url
    stop_process(proc, 20)


# ---------- the fake camera and the browser ----------

def pick_photos(hand_photos: list[tuple[Path, int]], model_path: str) -> list[Path]:
    """For each expected count, the first labelled photo the model counts right, confidently.

    Chosen with the real model on the same letterboxed 640×480 frame the camera will show, so the
    browser test checks the page and the pipeline, not the model's accuracy on hard photos.
    """
    from hgr.common.config import load_settings
    from hgr.common.inference.engine import Detector
    from hgr.common.options import DetectOptions

    settings = load_settings(environ={"HGR_MODEL_PATH": model_path}, env_file=None)
    detector = Detector(settings, {"full": model_path})
    chosen: list[Path] = []
    try:
        for count in EXPECTED_COUNTS:
            for path, label in hand_photos:
                if label != count:
                    continue
                _ok, jpeg = cv2.imencode(".jpg", load_letterboxed(path), [cv2.IMWRITE_JPEG_QUALITY, 75])
                result = detector.detect_bytes(jpeg.tobytes(), DetectOptions(num_hands=2))
                hands = result["hands"]
                if (len(hands) == 1 and hands[0]["fingers"] == count and hands[0]["score"] >= 0.9
                        and hands[0]["bbox"][2] - hands[0]["bbox"][0] >= 0.2):
                    chosen.append(path)
                    break
            else:
                pytest.fail(f"no labelled {count}-finger photo is counted right by the model")
    finally:
        detector.close()
    return chosen


@pytest.fixture(scope="module")
def camera_video(tmp_path_factory: pytest.TempPathFactory, hand_photos: list[tuple[Path, int]],
                 model_path: str) -> Path:
    photos = pick_photos(hand_photos, model_path)
    return build_fake_camera(photos, tmp_path_factory.mktemp("camera") / "hands.y4m", seconds_each=4, fps=10)


@pytest.fixture(scope="module")
def browser(camera_video: Path) -> Iterator[Any]:
    need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=[*CHROMIUM_ARGS, *FAKE_CAMERA_ARGS, f"--use-file-for-fake-video-capture={camera_video}"])
        yield chromium
        chromium.close()


def open_page(browser: Any, url: str, **context_args: Any) -> tuple[Any, list[str]]:
    """A fresh page (own context: own sessionStorage) that records uncaught script errors."""
    context = browser.new_context(**context_args)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    return page, errors


SNAPSHOT_JS = """() => ({
  total: document.getElementById('total-fingers').textContent.trim(),
  hands: document.getElementById('hands-list').textContent.trim(),
  answered: parseFloat(document.getElementById('stat-fps-answered').textContent) || 0,
  sent: parseFloat(document.getElementById('stat-fps-sent').textContent) || 0,
  latency: document.getElementById('stat-latency').textContent.trim(),
  state: document.getElementById('connection-state').dataset.state,
  message: document.getElementById('message').hidden ? '' : document.getElementById('message').textContent,
  inkOnOverlay: (() => {
    const c = document.getElementById('overlay');
    if (!c.width || !c.height) return 0;
    const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let ink = 0;
    for (let i = 3; i < data.length; i += 16) if (data[i] > 0) ink++;
    return ink;
  })(),
})"""


HAS_COUNT_JS = "/^[0-9]+$/.test(document.getElementById('total-fingers').textContent)"
STATE_JS = "document.getElementById('connection-state').dataset.state"
MESSAGE_JS = "document.getElementById('message').hidden ? '' : document.getElementById('message').textContent"


# ---------- tests ----------

def test_page_and_vendored_files_are_served_by_the_edge(edge: str) -> None:
    """Every file the page loads comes from the edge itself, with the right type; no external URL."""
    with httpx.Client(base_url=edge, timeout=30) as client:
        index = client.get("/")
        assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
        html = index.text
        assert 'id="start"' in html

        # Everything index.html references, then every module those import, transitively.
        pending = [m for m in re.findall(r'(?:src|href)="([^"]+)"', html) if not m.startswith("data:")]
        seen: set[str] = set()
        while pending:
            ref = pending.pop().lstrip("./")
            if ref in seen:
                continue
            seen.add(ref)
            response = client.get("/" + ref)
            assert response.status_code == 200, f"/{ref} -> {response.status_code}"
            assert response.content == (WEB / ref).read_bytes(), f"/{ref} differs from web/{ref}"
            kind = response.headers["content-type"]
            if ref.endswith(".js"):
                # Browsers refuse to run an ES module served with a non-JavaScript type.
                assert "javascript" in kind, f"/{ref} served as {kind}"
                base = ref.rsplit("/", 1)[0] + "/" if "/" in ref else ""
                pending += [base + m.lstrip("./") for m in re.findall(r'from\s+"(\./[^"]+)"', response.text)]
            elif ref.endswith(".css"):
                assert kind.startswith("text/css"), f"/{ref} served as {kind}"
        assert {"css/app.css", "js/app.js", "js/protocol.js", "vendor/msgpack/msgpack.min.js"} <= seen

        license_text = client.get("/vendor/msgpack/LICENSE")
        assert license_text.status_code == 200 and "MessagePack" in license_text.text


def test_web_files_reference_nothing_external() -> None:
    """Works offline: no script, style, font or image is fetched from another host."""
    loaded = [p for p in WEB.rglob("*") if p.suffix in {".html", ".js", ".css", ".mjs"}]
    assert loaded, "web/ has no page files"
    for path in loaded:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"https?://", text), f"{path.relative_to(ROOT)} references an external URL"
        assert not re.search(r"""(?:src|href)=["']//""", text), f"{path.relative_to(ROOT)} has a //host URL"
        assert "@import" not in text or "url(http" not in text, f"{path.relative_to(ROOT)} imports remotely"


def test_vendored_msgpack_matches_its_recorded_digest() -> None:
    """web/vendor/README.md records where the bundle came from; the shipped bytes must match it."""
    readme = (WEB / "vendor" / "README.md").read_text()
    recorded = re.search(r"sha256 of `msgpack.min.js` \| `([0-9a-f]{64})`", readme)
    assert recorded, "vendor/README.md does not record the bundle's sha256"
    actual = hashlib.sha256((WEB / "vendor" / "msgpack" / "msgpack.min.js").read_bytes()).hexdigest()
    assert actual == recorded.group(1)
    assert (WEB / "vendor" / "msgpack" / "LICENSE").is_file()


def test_pure_modules_in_the_browser(edge: str, browser: Any) -> None:
    """The page's pure logic, run in Chromium exactly as served: codec, flow control, stats, drawing."""
    page, errors = open_page(browser, edge)
    out = page.evaluate("""async () => {
      const protocol = await import('/js/protocol.js');
      const { InFlight } = await import('/js/flow.js');
      const { percentile, RateMeter } = await import('/js/stats.js');
      const { backoffDelay } = await import('/js/connection.js');
      const { toCanvas, drawResult } = await import('/js/draw.js');

      const bytes = protocol.encodeFrame({ seq: 7, ts: 1234, image: new Uint8Array([0xff, 0xd8, 0xff, 1]),
                                           opts: { num_hands: 1, mirrored: false, model: 'full' } });
      const frame = MessagePack.decode(bytes);

      const flow = new InFlight(2, 1000);
      const flowLog = [flow.canSend()];
      flow.sent(1, 0); flow.sent(2, 10);
      flowLog.push(flow.canSend());                  // two in flight: full
      flowLog.push(flow.answered(2));                // answer to 2 supersedes 1
      flowLog.push(flow.canSend());
      flow.sent(3, 20);
      flowLog.push(flow.expire(5000));               // never answered: forgotten

      const rate = new RateMeter(2000);
      for (let t = 0; t <= 1000; t += 100) rate.mark(t);

      // A hand on the left of the frame is drawn on the right when the preview is mirrored.
      const hand = { handedness: 'Right', fingers: 2, gesture: 'victory',
                     landmarks: Array.from({ length: 21 }, (_, i) => [0.1 + 0.01 * i, 0.3 + 0.01 * i, 0]) };
      const inkX = (mirrored) => {
        const c = document.createElement('canvas'); c.width = 200; c.height = 100;
        drawResult(c, { hands: [hand], total_fingers: 2 }, mirrored);
        const d = c.getContext('2d').getImageData(0, 0, 200, 100).data;
        let sum = 0, n = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0) { sum += (i / 4) % 200; n++; }
        return sum / n;
      };
      return {
        frame: { type: frame.type, seq: frame.seq, ts: frame.ts, image: Array.from(frame.image),
                 isBinary: frame.image instanceof Uint8Array, opts: frame.opts },
        subprotocols: protocol.subprotocols('k3y-1'),
        noKey: protocol.subprotocols(''),
        badKey: protocol.isSendableKey('has space'),
        close1008: protocol.describeClose(1008, ''),
        close1013: protocol.describeClose(1013, ''),
        close1009: protocol.describeClose(1009, ''),
        error: protocol.describeError({ code: 'image_too_large', message: 'frame of 5000000 bytes' }),
        flowLog,
        p50: percentile(Array.from({ length: 100 }, (_, i) => i + 1), 50),
        p95: percentile(Array.from({ length: 100 }, (_, i) => i + 1), 95),
        rate: rate.rate(1000),
        backoff: [backoffDelay(0, 0, () => 0.5), backoffDelay(3, 0, () => 0.5), backoffDelay(20, 0, () => 0.5),
                  backoffDelay(0, 2000, () => 0.5)],
        mirror: toCanvas([0.25, 0.5, 0], 200, 100, true),
        plain: toCanvas([0.25, 0.5, 0], 200, 100, false),
        inkPlain: inkX(false),
        inkMirrored: inkX(true),
      };
    }""")
    assert out["frame"] == {"type": "frame", "seq": 7, "ts": 1234, "image": [0xFF, 0xD8, 0xFF, 1], "isBinary": True,
                            "opts": {"num_hands": 1, "mirrored": False, "model": "full"}}
    assert out["subprotocols"] == ["hgr.msgpack.v1", "hgr.key.k3y-1"]
    assert out["noKey"] == ["hgr.msgpack.v1"]
    assert out["badKey"] is False
    assert out["close1008"]["retry"] is False and "API key" in out["close1008"]["text"]
    assert out["close1013"]["retry"] is True and "overloaded" in out["close1013"]["text"]
    assert out["close1009"]["retry"] is True and "too large" in out["close1009"]["text"]
    assert "lower the resolution" in out["error"] and "5000000 bytes" in out["error"]
    assert out["flowLog"] == [True, False, 1, True, 1]
    assert (out["p50"], out["p95"]) == (50, 95)
    assert 9 <= out["rate"] <= 12  # 11 events over one second
    assert out["backoff"] == [500, 4000, 10000, 2000]
    assert out["mirror"] == [150, 50] and out["plain"] == [50, 50]
    assert out["inkPlain"] < 100 < out["inkMirrored"]  # left half plain, right half mirrored
    assert not errors, errors
    page.context.close()


def test_live_camera_counts_fingers(edge: str, browser: Any) -> None:
    """Start the camera in the page: both photos' finger counts appear, results are answered, drawn."""
    page, errors = open_page(browser, edge, viewport={"width": 1280, "height": 860})
    page.click("#start")

    seen: set[str] = set()
    best: dict[str, Any] = {}
    last: dict[str, Any] = {}
    max_answered = 0.0
    deadline = time.monotonic() + COUNTS_DEADLINE_S
    while time.monotonic() < deadline:
        last = page.evaluate(SNAPSHOT_JS)
        seen.add(last["total"])
        max_answered = max(max_answered, last["answered"])
        if last["total"] == str(max(EXPECTED_COUNTS)) and last["inkOnOverlay"] > best.get("inkOnOverlay", 0):
            best = last
        if {str(c) for c in EXPECTED_COUNTS} <= seen and max_answered > 0 and best:
            break
        if last["state"] == "failed":
            break
        page.wait_for_timeout(150)

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web_e2e.png"))
    assert {str(c) for c in EXPECTED_COUNTS} <= seen, f"counts seen {sorted(seen)}; last page state {last}"
    assert max_answered > 0, f"no answered fps shown; last page state {last}"
    assert best["inkOnOverlay"] > 0, "the landmarks were not drawn over the video"
    assert "finger" in best["hands"] and ("Left" in best["hands"] or "Right" in best["hands"]), best
    assert last["state"] == "open" and not last["message"], last
    assert re.fullmatch(r"\d+ / \d+", last["latency"]), last["latency"]

    # Un-mirroring the preview flips only the display; the stream carries on.
    page.uncheck("#mirrored")
    assert page.evaluate("getComputedStyle(document.getElementById('video')).transform") == "none"
    page.check("#mirrored")
    assert page.evaluate("getComputedStyle(document.getElementById('video')).transform") != "none"

    # Stop releases the camera and clears the count.
    page.click("#stop")
    page.wait_for_function("document.getElementById('total-fingers').textContent === '–'")
    assert page.evaluate("document.getElementById('video').srcObject === null")
    assert not errors, errors
    page.context.close()


def test_phone_sized_screen(edge: str, browser: Any) -> None:
    """On a phone-sized viewport the page fits the width and every control has an accessible name."""
    page, errors = open_page(browser, edge, viewport={"width": 390, "height": 844}, device_scale_factor=2,
                             is_mobile=True, has_touch=True)
    page.click("#start")
    page.wait_for_function(HAS_COUNT_JS, timeout=COUNTS_DEADLINE_S * 1000)
    width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], f"horizontal scrolling on a phone: {width}"
    unnamed = page.evaluate("""() => [...document.querySelectorAll('input, select, button')]
        .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                      && !el.getAttribute('aria-labelledby') && !el.textContent.trim())
        .map(el => el.id)""")
    assert unnamed == []
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web_e2e_phone.png"), full_page=True)
    page.click("#stop")
    assert not errors, errors
    page.context.close()


@pytest.fixture(scope="module")
def auth_edge(tmp_path_factory: pytest.TempPathFactory, model_path: str) -> Iterator[str]:
    """An edge that requires an API key and takes a single connection at a time."""
    proc, url, _log = start_edge(tmp_path_factory.mktemp("auth-edge"), model_path, AUTH_ENABLED="true",
                                API_KEYS=f"web:{API_KEY}", MAX_CONNECTIONS="1")
    yield url
    stop_process(proc, 20)


API_KEY = "s3cret-web-key-42"


def test_api_key_overload_and_reconnect(auth_edge: str, browser: Any) -> None:
    """A refused key is said in words and opens the key field; a right key streams; a second page
    meets a full edge (1013), says so, and gets in by itself once the first page stops."""
    console: list[str] = []
    first, errors = open_page(browser, auth_edge)
    first.on("console", lambda m: console.append(m.text))
    first.click("#start")
    first.wait_for_function(f"{STATE_JS} === 'failed'", timeout=60_000)
    assert "API key" in first.evaluate(MESSAGE_JS)
    assert first.evaluate("document.getElementById('connection-details').open") is True

    first.fill("#api-key", API_KEY)
    first.check("#remember-key")
    first.click("#start")
    first.wait_for_function(HAS_COUNT_JS, timeout=COUNTS_DEADLINE_S * 1000)
    assert API_KEY not in first.url
    assert first.evaluate("sessionStorage.getItem('hgr.apiKey')") == API_KEY

    second, errors2 = open_page(browser, auth_edge)
    second.click("#connection-details summary")  # the key field lives under "Connection"
    second.fill("#api-key", API_KEY)
    second.click("#start")
    second.wait_for_function(f"({MESSAGE_JS}).includes('overloaded')", timeout=60_000)
    assert second.evaluate(STATE_JS) in ("waiting", "connecting")
    assert second.evaluate("sessionStorage.getItem('hgr.apiKey')") is None  # not asked to remember

    first.click("#stop")  # frees the edge's only connection: the second page's backoff gets it in
    second.wait_for_function(f"{STATE_JS} === 'open' && {HAS_COUNT_JS}", timeout=COUNTS_DEADLINE_S * 1000)

    first.reload()  # the remembered key survives a reload of the tab, and nothing logged it
    assert first.input_value("#api-key") == API_KEY
    assert not any(API_KEY in line for line in console)
    second.click("#stop")
    assert not errors and not errors2, errors + errors2
    first.context.close()
    second.context.close()
