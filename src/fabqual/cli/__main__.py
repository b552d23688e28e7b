"""``python -m fabqual.cli``: the ``fabqual`` command without its installed script."""

import sys

from fabqual.cli import main

sys.exit(main())
