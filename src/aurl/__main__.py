"""``python -m aurl``: the same CLI as ``aurl`` (``torchrun -m aurl train ...`` starts it)."""

import os
import sys

from aurl.cli import main

code = main()
if int(os.environ.get("WORLD_SIZE", "1")) > 1:
    # A torchrun worker has written everything and left its process group; it leaves without
    # the interpreter's teardown, where a gloo thread taking the GIL can abort the process
    # ("terminate called without an active exception") and fail a finished job.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
sys.exit(code)
