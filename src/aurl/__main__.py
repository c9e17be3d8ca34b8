"""``python -m aurl``: the same CLI as ``aurl`` (``torchrun -m aurl train ...`` starts it)."""

import sys

from aurl.cli import main

sys.exit(main())
