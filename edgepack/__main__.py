"""``python -m edgepack ...`` runs the ``edgepack`` command (same as the console script).

This module is the program's entry point, not library code: nothing imports it, and it is the one
place in the core allowed to reach up to the top floor (``edgepack.pipeline``, which owns the command
line because ``edgepack run`` drives every stage). ``python -m edgepack.pipeline`` is the same command.
"""

from edgepack.pipeline.cli import main

raise SystemExit(main())
