"""`edgepack run [recipe.yaml]`: the whole pipeline from one recipe, resuming finished stages."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser(
        "run", help="run a whole recipe: finetune -> distill -> prune -> export -> quantize -> bench -> report",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run every stage a YAML recipe names and write report.md, report.json and a plot into its\n"
                    "output folder. Finished stages are skipped on a re-run (delete a stage's folder to redo it\n"
                    "and what follows it). With no recipe, the built-in default runs: all-MiniLM-L6-v2\n"
                    "fine-tuned on the Rotten Tomatoes example, distilled to 3 layers, FFN-pruned, INT8.\n\n"
                    "examples:\n  edgepack run\n  edgepack run my-recipe.yaml --output runs/try2\n"
                    "  edgepack run --show-default > my-recipe.yaml",
    )
    p.add_argument("recipe", nargs="?", help="recipe YAML (default: the built-in recipe)")
    p.add_argument("--output", help="output folder (default: the recipe's 'output', else runs/<name>)")
    p.add_argument("--show-default", action="store_true", help="print the built-in recipe and exit")
    p.add_argument("--no-report", action="store_true", help="run the stages only, skip benchmarks and report")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from edgepack.recipe import default_recipe_path, load_recipe

    if args.show_default:
        print(default_recipe_path().read_text(), end="")
        return 0
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from edgepack.run import run_recipe

    recipe = load_recipe(args.recipe, output=args.output)
    print(f"recipe {recipe.name} ({recipe.source}) -> {recipe.output}")
    out = run_recipe(recipe, report=not args.no_report)
    total = sum(t["seconds"] or 0 for t in out["timings"].values() if not t["skipped"])
    print(f"done in {total / 60:.1f} min of stage time; outputs in {out['output']}")
    if not args.no_report:
        print(f"report: {out['output'] / 'report' / 'report.md'}")
    return 0
