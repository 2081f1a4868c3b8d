"""The ``edgepack`` command line: a thin layer that builds stage configs and calls the stage functions.

Each stage folder contributes its subcommands from its own ``cli.py`` with a ``register(subparsers)``
function; those modules import only argparse at import time, so ``edgepack --help`` stays fast and
the lean runtime install can run ``edgepack predict``/``serve`` without torch. ``edgepack run`` (a whole
recipe) is defined here, on the top floor that may import every stage.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import os
import sys
import warnings

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
)

DESCRIPTION = """\
edgepack turns a fine-tuned transformer into a small, fast model you can ship.

pipeline:  teacher -> finetune/distill -> prune -> quantize -> export -> predict/serve -> bench
Every stage reads and writes an artifact directory (files + manifest.json with sha256 checksums),
so any stage can start from any earlier artifact.

examples:
  edgepack run                                   # the whole default recipe on the built-in example
  edgepack run my.yaml --check                   # validate a recipe and list its passes
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
    register_run(sub)
    return parser


def register_run(sub) -> None:
    """Add ``run``: a whole recipe, resuming finished passes."""
    p = sub.add_parser(
        "run", help="run a whole recipe: its passes in order (finetune, distill, prune, onnx, ...) -> bench -> report",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run every pass a YAML recipe lists, in order, and write report.md, report.json and a plot\n"
                    "into its output folder. Finished passes are skipped on a re-run (delete a pass's folder to\n"
                    "redo it and what follows it). The whole recipe is validated before anything runs. With no\n"
                    "recipe, the built-in default runs: all-MiniLM-L6-v2 fine-tuned on the Rotten Tomatoes\n"
                    "example, distilled to 3 layers, pruned, exported, fused, INT8, Triton repository.\n\n"
                    "examples:\n  edgepack run\n  edgepack run my-recipe.yaml --output runs/try2\n"
                    "  edgepack run --show-default > my-recipe.yaml\n  edgepack run my-recipe.yaml --check",
    )
    p.add_argument("recipe", nargs="?", help="recipe YAML (default: the built-in recipe)")
    p.add_argument("--output", help="output folder (default: the recipe's 'output', else runs/<name>)")
    p.add_argument("--show-default", action="store_true", help="print the built-in recipe and exit")
    p.add_argument("--check", action="store_true", help="validate the recipe, print its passes, run nothing")
    p.add_argument("--no-report", action="store_true", help="run the passes only, skip benchmarks and report")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from edgepack.pipeline.recipe import default_recipe_path, load_recipe

    if args.show_default:
        print(default_recipe_path().read_text(), end="")
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    recipe = load_recipe(args.recipe, output=args.output)
    print(f"recipe {recipe.name} ({recipe.source}) -> {recipe.output}")
    for i, s in enumerate(recipe.steps, 1):
        print(f"  {i}. {s.name}: {s.kind} (reads {s.parent or recipe.model})")
    if args.check:
        return 0
    from edgepack import ranks

    if ranks.world_size() > 1:
        raise EdgepackError(
            f"edgepack run does not run under a multi-process launcher ({ranks.world_size()} processes): its "
            "export, quantize and benchmark passes would run in every process and time each other; launch the "
            "training stages that way (edgepack finetune|distill|prune), then give their artifact to a recipe's "
            "model: and run it in one process")
    from edgepack.pipeline.runner import run_recipe

    out = run_recipe(recipe, report=not args.no_report)
    total = sum(t["seconds"] or 0 for t in out["timings"].values() if not t["skipped"])
    print(f"done in {total / 60:.1f} min of pass time; outputs in {out['output']}")
    if not args.no_report:
        print(f"report: {out['output'] / 'report' / 'report.md'}")
    return 0


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> str:
    """Warnings meant for the user (RuntimeWarning, e.g. an INT8 model on a CPU it was not made for) read
    like errors: one line, no source excerpt; others keep Python's format (they are for developers)."""
    if issubclass(category, RuntimeWarning):
        return f"edgepack: warning: {message}\n"
    return _default_format(message, category, filename, lineno, line)


_default_format = warnings.formatwarning


@contextlib.contextmanager
def _quiet_unless_main():
    """Under a multi-process launcher (accelerate launch, torchrun), results are printed once: by the main
    process (the others' stdout is dropped; their errors still reach stderr)."""
    from edgepack import ranks

    if ranks.is_main():
        yield
        return
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        yield


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.formatwarning = _one_line_warning
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        with _quiet_unless_main():
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
