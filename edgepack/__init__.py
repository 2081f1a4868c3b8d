"""edgepack: distill, prune, quantize, export and serve fine-tuned transformers.

Importing ``edgepack`` is lean (standard library only). Stages live in subpackages:
``edgepack.distill``, ``edgepack.prune``, ``edgepack.quantize``, ``edgepack.export``,
``edgepack.runtime``, ``edgepack.benchmarks``; each imports its heavy libraries lazily. Recipes, the
runner, the report and the ``edgepack`` command line live on top of them in ``edgepack.pipeline``.
"""

from edgepack.artifact import Artifact, ArtifactError, ArtifactWriter
from edgepack.errors import EdgepackError

__version__ = "0.1.0"
__all__ = ["Artifact", "ArtifactError", "ArtifactWriter", "EdgepackError", "__version__"]
