"""``python -m uc_datasets ...``: the ``uc-datasets`` command."""

import sys

from uc_datasets.commands.cli import main

if __name__ == "__main__":
    sys.exit(main())
