"""Run a recipe's passes in order, resuming what is already done, then write the report.

``Pipeline`` runs generic stages; ``run_recipe`` turns a recipe's steps into stages over the pass registry
(``edgepack.pipeline.passes``). Each stage writes its artifact to ``OUTPUT/<stage>``. A stage is skipped when ``OUTPUT/pipeline-state.json``
records the same key for it (a hash of its config, its parent's manifest and the *contents* of the data
file, input model and teacher it reads: editing the data CSV in place recomputes from the first stage that
read it) and its artifact still
opens with valid checksums and the recorded manifest hash. Deleting a stage's folder therefore recomputes
that stage, and, because its new manifest differs, every stage after it.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgepack.pipeline.passes import PASSES
from edgepack.pipeline.recipe import INPUT, Recipe, Step, resolve_model

from edgepack import __version__
from edgepack.artifact import Artifact, ArtifactError, _atomic_write_text, _jsonable
from edgepack.fingerprint import content_key, path_content_id

STATE_FILE = "pipeline-state.json"


@dataclass(frozen=True)
class Stage:
    name: str
    parent: str | None  # name of the stage whose artifact this one reads (None: the recipe's input)
    config: Any  # JSON-able description of everything that changes the result (or a callable giving it)
    run: Callable[[Artifact | None, Path], Artifact | Path]  # (parent artifact, out dir) -> artifact
    kind: str = ""  # the pass it runs, shown in the progress lines


class Pipeline:
    """Runs stages in order with resume; ``results[name]`` holds each stage's artifact (or path)."""

    def __init__(self, output: Path, log: Callable[[str], None] = print):
        self.output = Path(output)
        self.output.mkdir(parents=True, exist_ok=True)
        self.state_path = self.output / STATE_FILE
        self.state: dict = json.loads(self.state_path.read_text()) if self.state_path.is_file() else {}
        self.results: dict[str, Any] = {}
        self.timings: dict[str, dict] = {}
        self.log = log

    def key(self, stage: Stage) -> str:
        parent = self.results.get(stage.parent) if stage.parent else None
        parent_id = parent.manifest_sha256() if isinstance(parent, Artifact) else str(parent)
        config = stage.config() if callable(stage.config) else stage.config
        blob = json.dumps({"stage": stage.name, "config": _jsonable(config), "parent": parent_id,
                           "edgepack": __version__}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _done(self, stage: Stage, key: str) -> Artifact | Path | None:
        rec = self.state.get(stage.name)
        out = self.output / stage.name
        if not rec or rec.get("key") != key or not out.exists():
            return None
        if rec.get("kind") == "path":
            return out
        try:
            art = Artifact.open(out)
        except ArtifactError:
            return None
        return art if art.manifest_sha256() == rec.get("manifest_sha256") else None

    def run(self, stages: list[Stage]) -> dict[str, Any]:
        total = len(stages)
        for i, stage in enumerate(stages, 1):
            key = self.key(stage)
            done = self._done(stage, key)
            if done is not None:
                self.log(f"[{i}/{total}] {stage.name}: done before, skipped ({self.output / stage.name})")
                self.results[stage.name] = done
                self.timings[stage.name] = {"seconds": self.state[stage.name].get("seconds"), "skipped": True}
                continue
            self.log(f"[{i}/{total}] {stage.name}: running{f' ({stage.kind})' if stage.kind else ''}")
            t0 = time.perf_counter()
            parent = self.results.get(stage.parent) if stage.parent else None
            result = stage.run(parent, self.output / stage.name)
            seconds = round(time.perf_counter() - t0, 1)
            self.results[stage.name] = result
            self.timings[stage.name] = {"seconds": seconds, "skipped": False}
            rec = {"key": key, "seconds": seconds}
            if isinstance(result, Artifact):
                rec.update(kind="artifact", manifest_sha256=result.manifest_sha256())
            else:
                rec.update(kind="path")
            self.state[stage.name] = rec
            _atomic_write_text(self.state_path, json.dumps(self.state, indent=2) + "\n")
            self.log(f"[{i}/{total}] {stage.name}: finished in {seconds:.0f} s")
        return self.results


def _stage(step: Step, recipe: Recipe, model: str, pipe: Pipeline) -> Stage:
    """The resumable stage for one recipe step: its key covers the pass, its config, its parent's manifest,
    the data (for passes that read it) and the teacher's manifest (for passes that learn from one)."""
    spec = PASSES[step.kind]

    def teacher() -> Artifact | str | None:
        if step.teacher is None:
            return None
        return model if step.teacher == INPUT else pipe.results[step.teacher]

    def key() -> dict:
        t = teacher()
        data = content_key(_jsonable(recipe.data)) if spec.uses_data else None  # the CSV's sha256, not its path
        files = [getattr(getattr(step.config, "student", None), "model", None),  # distill: files it reads
                 getattr(getattr(step.config, "transfer", None), "path", None)]
        return {"pass": step.kind, "cfg": step.config, "data": data,
                "files": [path_content_id(f) for f in files if f] or None,
                "model": path_content_id(recipe.model) if step.parent is None else None,
                "teacher": t.manifest_sha256() if isinstance(t, Artifact) else path_content_id(t)}

    def run(parent: Artifact | None, out: Path) -> Artifact:
        t = teacher()
        return spec.run(parent if parent is not None else model, step.config, out, data=recipe.data,
                        teacher=t.path if isinstance(t, Artifact) else t)

    return Stage(step.name, step.parent, key, run, kind=step.kind)


def run_recipe(recipe: Recipe, log: Callable[[str], None] = print, report: bool = True) -> dict[str, Any]:
    """Run (or resume) every pass of ``recipe``, then benchmark and write the report into its output.

    Returns ``{"results": {step: Artifact}, "timings": {step: {"seconds", "skipped"}}, "output": Path}``.
    """
    model = resolve_model(recipe.model)
    pipe = Pipeline(recipe.output, log=log)
    stages = [_stage(s, recipe, model, pipe) for s in recipe.steps]
    if report:
        from edgepack.pipeline.report import write_report

        def report_key() -> dict:  # evaluated when the report stage is reached: every artifact exists then
            arts = {n: (a.manifest_sha256() if isinstance(a, Artifact) else str(a)) for n, a in pipe.results.items()}
            return {"artifacts": arts, "bench": recipe.bench, "goals": recipe.goals,
                    "data": content_key(_jsonable(recipe.data))}

        stages.append(Stage("report", None, report_key,
                            lambda p, out: write_report(recipe, model, pipe.results, pipe.timings, out)))
    results = pipe.run(stages)
    return {"results": results, "timings": pipe.timings, "output": Path(recipe.output)}
