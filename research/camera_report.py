"""The Markdown tables of docs/benchmarks.md from a saved camera bench report.

    hgr bench --sections camera > camera.json
    python -m research.camera_report camera.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from hgr.loadtest.camera import markdown


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m research.camera_report REPORT.json   (make one with: hgr bench --sections camera)",
              file=sys.stderr)
        return 2
    loaded = json.loads(Path(argv[0]).read_text())
    print(markdown(loaded.get("camera", loaded)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
