"""`python -m oracle.cli`: the `bptt` command."""

import sys

from oracle.cli import main

sys.exit(main())
