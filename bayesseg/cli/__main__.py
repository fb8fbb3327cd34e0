"""``python -m bayesseg.cli``: the ``bayesseg`` command."""

import sys

from bayesseg.cli import main

if __name__ == "__main__":
    sys.exit(main())
