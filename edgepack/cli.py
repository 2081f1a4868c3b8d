"""The ``edgepack`` command line: a thin layer that builds stage configs and calls the stage functions.

Each stage folder contributes its subcommands from its own ``cli.py`` with a ``register(subparsers)``
function; those modules import only argparse at import time, so ``edgepack --help`` stays fast and
the lean runtime install can run ``edgepack predict``/``serve`` without torch.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys

from edgepack import __version__
from edgepack.errors import EdgepackError

# Modules that add subcommands, in the order they appear in --help.
COMMAND_MODULES = (
    "edgepack.distill.cli",     # finetune, distill
    "edgepack.prune.cli",       # prune
    "edgepack.quantize.cli",    # quantize
    "edgepack.export.cli",      # export onnx|optimize|tensorrt|triton
    "edgepack.runtime.cli",     # predict, inspect
    "edgepack.runtime.serve_cli",  # serve
    "edgepack.benchmarks.cli",  # bench
    "edgepack.recipe_cli",      # run
)

DESCRIPTION = """\
edgepack turns a fine-tuned transformer into a small, fast model you can ship.

pipeline:  teacher -> finetune/distill -> prune -> quantize -> export -> predict/serve -> bench
Every stage reads and writes an artifact directory (files + manifest.json with sha256 checksums),
so any stage can start from any earlier artifact.

examples:
  edgepack run                                   # the whole default recipe on the built-in example
  edgepack export onnx MODEL_DIR out/onnx        # HF folder or LoRA adapter -> validated ONNX artifact
  edgepack predict out/onnx "great film" "dull"  # lean runtime (no torch needed)
  edgepack inspect out/onnx                      # show an artifact's manifest, verify checksums
Run `edgepack COMMAND --help` for each command's options."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgepack", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"edgepack {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        if importlib.util.find_spec(name) is None:
            continue  # a stage not present in this checkout
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        rc = args.func(args)
        return int(rc or 0)
    except EdgepackError as e:
        if args.verbose or os.environ.get("EDGEPACK_DEBUG"):
            raise
        print(f"edgepack: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edgepack: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
