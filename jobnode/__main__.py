"""`python -m jobnode`: the same as the `jobnode` command."""

import sys

from jobnode.cli.commands import main

sys.exit(main())
