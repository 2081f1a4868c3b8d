"""The top floor: recipes as ordered passes, the resuming runner, the report and the ``edgepack`` CLI.

``load_recipe(path)`` reads and validates a YAML recipe (every pass config built before anything runs);
``run_recipe(recipe)`` runs its passes in order with resume and writes the report. Passes are registered
in ``edgepack.pipeline.passes.PASSES``. This package may import every stage; nothing below imports it.
Importing it is lean (standard library only; stages load when a pass runs).
"""

from edgepack.pipeline.recipe import Recipe, Step, load_recipe
from edgepack.pipeline.runner import run_recipe

__all__ = ["Recipe", "Step", "load_recipe", "run_recipe"]
