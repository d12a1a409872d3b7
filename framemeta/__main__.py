"""``python -m framemeta``: the same as the ``framemeta`` command."""

import sys

from framemeta.cli import main

sys.exit(main())
