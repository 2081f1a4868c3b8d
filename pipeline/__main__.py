"""``python -m edgepack.pipeline ...`` runs the ``edgepack`` command (same as ``python -m edgepack``)."""

from edgepack.pipeline.cli import main

raise SystemExit(main())
