"""Where a checkout keeps what the research runs read: the repository, and the shared folder beside it
(models and the full labelled photo set, ``$HGR_SHARED_DIR`` or ``../shared``)."""

from __future__ import annotations

import os
from pathlib import Path

from hgr.loadtest.clips import SAMPLE_PHOTOS

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("HGR_SHARED_DIR", ROOT.parent / "shared"))
FULL_PHOTOS = SHARED / "data" / "hands"  # the 210 labelled photos
# The full set when this machine has it, else the 36 the package ships.
DEFAULT_PHOTOS = FULL_PHOTOS if (FULL_PHOTOS / "labels.csv").is_file() else SAMPLE_PHOTOS
