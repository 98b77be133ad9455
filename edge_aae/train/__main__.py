"""``python -m edge_aae.train ...``: ``edge-aae train ...``, the module torchrun launches.

torchrun --nproc-per-node 2 -m edge_aae.train --data data/pump/train.csv --out runs/pump
"""

import sys

from edge_aae.cli import main

sys.exit(main(["train", *sys.argv[1:]]))
