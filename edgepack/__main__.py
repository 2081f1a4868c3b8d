"""``python -m edgepack ...`` runs the ``edgepack`` command (same as the console script)."""

from edgepack.cli import main

raise SystemExit(main())
