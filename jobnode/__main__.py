"""`python -m jobnode`: the same as the `jobnode` command."""

import sys

from jobnode.cli.main import main

sys.exit(main())
