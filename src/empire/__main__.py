"""`python -m empire`: the same as the `empire` command."""

import sys

from empire.cli import main

sys.exit(main())
