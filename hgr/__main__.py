"""``python -m hgr``: the ``hgr`` command."""

import sys

from hgr.cli import main

sys.exit(main())
