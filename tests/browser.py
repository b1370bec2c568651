"""Headless Chromium for the browser tests: Debian's build at /usr/bin/chromium, driven by Playwright (its
own browser download is not used), with the flags that keep it off the network it cannot reach here."""

from __future__ import annotations

from pathlib import Path

from tests.support import need

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps dialling Google's hosts, refused here.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def need_chromium() -> None:
    """Skip locally, fail in CI, without Chromium or Playwright for Python."""
    need(Path(CHROMIUM).is_file(), f"chromium is not installed at {CHROMIUM}")
    try:
        import playwright  # noqa: F401
    except ImportError:
        need(False, "playwright (Python) is not installed")
