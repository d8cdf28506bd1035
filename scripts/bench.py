#!/usr/bin/env python3
"""The jobnode benchmark: `scripts/bench.py [--quick] [--compare arq] ...`.

Prints one JSON object on stdout, progress on stderr; `--help` lists the options and
docs/benchmark.md explains the figures. Needs jobnode installed (`pip install -e '.[bench]'`).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from tools.bench import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
