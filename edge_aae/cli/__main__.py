"""``python -m edge_aae.cli``: the same program as the ``edge-aae`` script."""

import sys

from edge_aae.cli import main

sys.exit(main())
