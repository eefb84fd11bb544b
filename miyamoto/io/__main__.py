"""`python -m miyamoto.io` runs the daemon, the same as `python -m miyamoto.io.node`."""

import sys

from .node import main

sys.exit(main())
