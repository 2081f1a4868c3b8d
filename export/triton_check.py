"""Structural check of a Triton model repository (what Triton would refuse at load time, found earlier).

For every model folder: ``config.pbtxt`` parses, its name matches the folder, the platform/backend is
known, a numeric version folder holds the model file Triton will look for, batching and instance
settings are valid, and inputs/outputs agree with the model: with the ONNX graph itself for
``onnxruntime_onnx`` (names, data types, ranks, fixed dims, a dynamic batch axis when Triton batches),
with the recorded engine IO for ``tensorrt_plan``. Ensembles must reference existing models, map only
tensors those models declare, and produce every ensemble output with a matching type.
"""

from __future__ import annotations

from pathlib import Path

from edgepack.export.triton_pbtxt import as_list, parse_pbtxt

from edgepack.artifact import Artifact, ArtifactError, is_artifact
from edgepack.errors import EdgepackError

DEFAULT_FILES = {
    "onnxruntime_onnx": "model.onnx",
    "tensorrt_plan": "model.plan",
    "python": "model.py",
    "ensemble": None,
}
BACKEND_PLATFORM = {"onnxruntime": "onnxruntime_onnx", "tensorrt": "tensorrt_plan", "python": "python"}
KINDS = ("KIND_GPU", "KIND_CPU", "KIND_AUTO", "KIND_MODEL")
TYPES = (
    "TYPE_BOOL",
    "TYPE_UINT8",
    "TYPE_UINT16",
    "TYPE_UINT32",
    "TYPE_UINT64",
    "TYPE_INT8",
    "TYPE_INT16",
    "TYPE_INT32",
    "TYPE_INT64",
    "TYPE_FP16",
    "TYPE_FP32",
    "TYPE_FP64",
    "TYPE_STRING",
    "TYPE_BF16",
)


def _kind(config: dict) -> str | None:
    if config.get("platform") in DEFAULT_FILES:
        return config["platform"]
    return BACKEND_PLATFORM.get(config.get("backend", ""))


def _check_io(name: str, config: dict, errs: list[str]) -> None:
    for field in ("input", "output"):
        entries = as_list(config.get(field))
        if not entries:
            errs.append(f"{name}: no {field} declared")
        for e in entries:
            if not isinstance(e, dict) or not e.get("name"):
                errs.append(f"{name}: an {field} entry has no name")
                continue
            if e.get("data_type") not in TYPES:
                errs.append(f"{name}: {field} '{e['name']}' has unknown data_type {e.get('data_type')!r}")
            dims = as_list(e.get("dims"))
            if not dims and config.get("max_batch_size", 0) == 0:
                errs.append(f"{name}: {field} '{e['name']}' has no dims")
            if any(not isinstance(d, int) or (d < 1 and d != -1) for d in dims):
                errs.append(f"{name}: {field} '{e['name']}' has invalid dims {dims} (use -1 for dynamic)")


def _check_against(name: str, config: dict, ref: dict, errs: list[str]) -> None:
    """Compare config inputs/outputs with reference specs ({"inputs","outputs"}: name, dtype, shape)."""
    from edgepack.export.triton_repo import NP_TO_TRITON

    batched = int(config.get("max_batch_size", 0)) > 0
    for field, key in (("input", "inputs"), ("output", "outputs")):
        have = {e["name"]: e for e in as_list(config.get(field)) if isinstance(e, dict) and "name" in e}
        want = {s["name"]: s for s in ref[key]}
        missing = sorted(set(want) - set(have)) if field == "input" else []
        unknown = sorted(set(have) - set(want))
        if missing:
            errs.append(f"{name}: the model needs inputs {missing} that config.pbtxt does not declare")
        if unknown:
            errs.append(f"{name}: config.pbtxt declares {field}s {unknown} that the model does not have")
        for n in sorted(set(have) & set(want)):
            spec, entry = want[n], have[n]
            if NP_TO_TRITON.get(spec["dtype"]) != entry.get("data_type"):
                errs.append(
                    f"{name}: {field} '{n}' is {spec['dtype']} in the model but "
                    f"{entry.get('data_type')} in config.pbtxt"
                )
            shape = list(spec["shape"])
            if batched:
                if shape and isinstance(shape[0], int) and shape[0] > 0:
                    errs.append(
                        f"{name}: {field} '{n}' has a fixed batch axis {shape[0]} but max_batch_size > 0"
                    )
                shape = shape[1:]
            dims = as_list(entry.get("dims"))
            if len(dims) != len(shape):
                errs.append(
                    f"{name}: {field} '{n}' has rank {len(shape)} in the model (without the batch "
                    f"axis: {batched}) but dims {dims} in config.pbtxt"
                )
                continue
            for axis, (d, s) in enumerate(zip(dims, shape)):
                fixed = isinstance(s, int) and s > 0
                if (fixed and d not in (s, -1)) or (not fixed and d != -1):
                    errs.append(
                        f"{name}: {field} '{n}' axis {axis} is {s} in the model but {d} in config.pbtxt"
                    )


def _check_model(folder: Path, config: dict, refs: dict, errs: list[str]) -> None:
    name = folder.name
    if config.get("name", name) != name:
        errs.append(f"{name}: config.pbtxt name {config.get('name')!r} differs from its folder name")
    kind = _kind(config)
    if kind is None:
        errs.append(f"{name}: unknown platform/backend {config.get('platform') or config.get('backend')!r}")
        return
    mbs = config.get("max_batch_size", 0)
    if not isinstance(mbs, int) or mbs < 0:
        errs.append(f"{name}: max_batch_size must be an integer >= 0, got {mbs!r}")
        mbs = 0
    versions = sorted(p for p in folder.iterdir() if p.is_dir() and p.name.isdigit())
    if not versions:
        errs.append(f"{name}: no numeric version folder (e.g. {name}/1/)")
    filename = config.get("default_model_filename") or DEFAULT_FILES[kind]
    for v in versions:
        if filename and not (v / filename).is_file():
            errs.append(f"{name}: version {v.name} has no {filename}")
    db = config.get("dynamic_batching")
    if db is not None:
        if mbs == 0:
            errs.append(f"{name}: dynamic_batching needs max_batch_size > 0")
        bad = [
            b
            for b in as_list(db.get("preferred_batch_size"))
            if not isinstance(b, int) or not 1 <= b <= max(mbs, 1)
        ]
        if bad:
            errs.append(f"{name}: preferred_batch_size {bad} outside 1..max_batch_size ({mbs})")
        if int(db.get("max_queue_delay_microseconds", 0)) < 0:
            errs.append(f"{name}: max_queue_delay_microseconds must be >= 0")
    for g in as_list(config.get("instance_group")):
        if g.get("kind", "KIND_AUTO") not in KINDS:
            errs.append(f"{name}: instance_group kind {g.get('kind')!r} is not one of {KINDS}")
        if int(g.get("count", 1)) < 1:
            errs.append(f"{name}: instance_group count must be >= 1")
        if kind == "tensorrt_plan" and g.get("kind") == "KIND_CPU":
            errs.append(f"{name}: a TensorRT plan cannot run on KIND_CPU")
    _check_io(name, config, errs)
    if kind == "onnxruntime_onnx" and versions and (versions[-1] / filename).is_file():
        from edgepack.export.triton_repo import graph_io

        inputs, outputs = graph_io(versions[-1] / filename)
        _check_against(name, config, {"inputs": inputs, "outputs": outputs}, errs)
    elif name in refs:
        _check_against(name, config, refs[name], errs)
    if kind == "tensorrt_plan" and name in refs:
        _check_profiles(name, config, int(refs[name].get("profiles") or 0), errs)
    elif kind == "tensorrt_plan":
        errs.append(f"{name}: no recorded engine IO to check config.pbtxt against (manifest.json missing?)")


def _check_profiles(name: str, config: dict, profiles: int, errs: list[str]) -> None:
    """Every instance group of a multi-profile engine lists all its profiles ("0".."n-1"): Triton
    otherwise runs profile 0 only, and requests outside its shapes fail."""
    want = [str(i) for i in range(profiles)]
    for i, g in enumerate(as_list(config.get("instance_group")) or [{}]):
        have = [str(p) for p in as_list(g.get("profile"))]
        bad = [p for p in have if p not in want]
        if bad:
            errs.append(f"{name}: instance_group {i} lists profiles {bad} the engine does not have (0..{profiles - 1})")
        elif profiles > 1 and sorted(have, key=int) != want:
            errs.append(
                f"{name}: the engine has {profiles} optimization profiles but instance_group {i} lists "
                f"{have or 'none (Triton then uses profile 0 only)'}: add profile: {want}"
            )


def _io_types(config: dict) -> tuple[dict, dict]:
    def types(field: str) -> dict:
        return {e["name"]: e.get("data_type") for e in as_list(config.get(field)) if isinstance(e, dict)}

    return types("input"), types("output")


def _check_ensemble(name: str, config: dict, models: dict[str, dict], errs: list[str]) -> None:
    ens_in, ens_out = _io_types(config)
    available = dict(ens_in)  # tensor name -> type, as the steps produce them
    steps = as_list((config.get("ensemble_scheduling") or {}).get("step"))
    if not steps:
        errs.append(f"{name}: ensemble has no ensemble_scheduling steps")
    for i, step in enumerate(steps):
        target = step.get("model_name")
        if target not in models:
            errs.append(f"{name}: step {i} uses model {target!r}, which is not in the repository")
            continue
        t_in, t_out = _io_types(models[target])
        for m in as_list(step.get("input_map")):
            if m.get("key") not in t_in:
                errs.append(f"{name}: step {i} feeds '{m.get('key')}', which {target} does not take")
            elif m.get("value") not in available:
                errs.append(f"{name}: step {i} reads '{m.get('value')}' before any step produces it")
            elif available[m["value"]] != t_in[m["key"]]:
                errs.append(
                    f"{name}: step {i} passes '{m['value']}' ({available[m['value']]}) to "
                    f"{target}.{m['key']} ({t_in[m['key']]})"
                )
        fed = {m.get("key") for m in as_list(step.get("input_map"))}
        if set(t_in) - fed:
            errs.append(f"{name}: step {i} leaves inputs {sorted(set(t_in) - fed)} of {target} unfed")
        for m in as_list(step.get("output_map")):
            if m.get("key") not in t_out:
                errs.append(f"{name}: step {i} maps '{m.get('key')}', which {target} does not output")
            else:
                available[m.get("value")] = t_out[m["key"]]
    for out, dtype in ens_out.items():
        if out not in available:
            errs.append(f"{name}: ensemble output '{out}' is produced by no step")
        elif available[out] != dtype:
            errs.append(f"{name}: ensemble output '{out}' is {dtype} but its step produces {available[out]}")


def check_repository(root: str | Path, refs: dict | None = None) -> list[str]:
    """Problems found in the repository at ``root`` (empty list: structurally sound).

    ``refs`` maps model names to {"inputs", "outputs"} specs to check non-ONNX models against; by default
    they come from the repository's manifest.json (an edgepack ``triton`` artifact).
    """
    root = Path(root)
    if not root.is_dir():
        return [f"{root} is not a directory"]
    if refs is None and is_artifact(root):
        try:
            art = Artifact.open(root, verify=False)
        except ArtifactError as e:
            return [str(e)]
        model = art.runtime.model_name
        profiles = len(art.runtime.profiles) if art.runtime.platform == "tensorrt_plan" else 0
        refs = {model: {"inputs": art.inputs, "outputs": art.outputs, "profiles": profiles}} if model else {}
    refs = refs or {}
    errs: list[str] = []
    models: dict[str, dict] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        cfg_path = folder / "config.pbtxt"
        if not cfg_path.is_file():
            errs.append(f"{folder.name}: no config.pbtxt")
            continue
        try:
            models[folder.name] = parse_pbtxt(cfg_path.read_text())
        except EdgepackError as e:
            errs.append(f"{folder.name}: {e}")
            continue
        _check_model(folder, models[folder.name], refs, errs)
    if not models and not errs:
        errs.append(f"{root} holds no model folders")
    for name, config in models.items():
        if config.get("platform") == "ensemble":
            _check_ensemble(name, config, models, errs)
    return errs


def assert_repository_ok(root: str | Path, refs: dict | None = None) -> None:
    """Raise EdgepackError listing every problem :func:`check_repository` finds."""
    errs = check_repository(root, refs)
    if errs:
        raise EdgepackError("Triton repository check failed:\n  " + "\n  ".join(errs))
