"""Artifact directories: the hand-off between stages.

An artifact is a directory with the files a stage produced and a ``manifest.json``::

    {"schema": 1, "stage": "export", "format": "onnx", "task": "text-classification",
     "labels": ["negative", "positive"],
     "inputs":  [{"name": "input_ids", "dtype": "int64", "shape": ["batch", "sequence"]}, ...],
     "outputs": [{"name": "logits", "dtype": "float32", "shape": ["batch", 2]}],
     "files": {"model": {"path": "model.onnx", "sha256": "...", "bytes": 123}, ...},
     "parent": {"path": "/abs/path/of/parent", "stage": "distill", "manifest_sha256": "..."},
     "lineage": [{"stage": "finetune", ...}, {"stage": "distill", ...}],
     "config": {...}, "metrics": {...},
     "runtime": {"max_length": 128, "precision": "fp32", ...},   # edgepack.contract.RuntimeContract
     "extra": {...}, "created": "2026-11-23T09:00:00Z"}

``runtime`` holds the typed facts readers act on (validated when the artifact opens: a bad field is one
ArtifactError line naming it); ``extra`` holds stage reports and provenance nobody acts on. Manifests of
schema 1 kept the runtime facts in ``extra``: they are read from there.

Only the standard library is used here, so the lean runtime can open artifacts. Opening verifies
every file's size and sha256 and refuses a tampered or truncated artifact. Writing goes to a
temporary sibling directory that is renamed into place only when complete, so an interrupted stage
never leaves a half-written artifact behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any

from edgepack.contract import RuntimeContract
from edgepack.errors import EdgepackError
from edgepack.manifest_check import MANIFEST, ArtifactError, folder_entries, read_manifest, scan_folder
from edgepack.outputs import check_not_source, check_replaceable, clean_stale, make_temp_dir, replace_dir

__all__ = ["MANIFEST", "Artifact", "ArtifactError", "ArtifactWriter", "is_artifact", "sha256_file",
           "update_metrics"]
SCHEMA_VERSION = 2  # 2: runtime facts under "runtime" (RuntimeContract), no longer in "extra"
TASKS = ("text-classification", "feature-extraction")
FORMATS = ("hf", "onnx", "tensorrt", "triton", "torch-quantized")
# precisions schema-1 manifests wrote that the contract names otherwise
_SCHEMA1_PRECISION = {"int8": "int8-static", "torch-dynamic-int8": "int8-dynamic", "bnb-int8": "int8-dynamic",
                      "bnb-nf4": "nf4"}


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the mode a plain open() would
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def is_artifact(path: str | os.PathLike) -> bool:
    """True when ``path`` holds a manifest.json whose shape is valid (contents are not verified)."""
    try:
        read_manifest(Path(path))
    except ArtifactError:
        return False
    return True


@dataclass(frozen=True)
class Artifact:
    """A verified, read-only view of an artifact directory."""

    path: Path
    manifest: dict[str, Any]

    @classmethod
    def open(cls, path: str | os.PathLike, verify: bool = True) -> Artifact:
        """Open ``path``: check the manifest's shape, then (``verify``, the default) the folder's contents
        (no links, no unlisted files) and every file's size and sha256. ``verify=False`` trusts nothing in
        the folder and is only for reading the manifest's facts.

        Raises ArtifactError (one line) for a missing directory, a missing, oversized or malformed manifest,
        a path outside the folder, a symlink or unlisted file, a missing file, or a checksum mismatch.
        """
        root = Path(path).expanduser().absolute()
        if root.is_symlink():
            raise ArtifactError(f"refusing {root}: the artifact folder is a symlink")
        root = root.resolve()
        if not root.exists():
            raise ArtifactError(f"artifact directory not found: {root}")
        if not root.is_dir():
            raise ArtifactError(f"not a directory: {root}")
        manifest = read_manifest(root)
        mpath = root / MANIFEST
        if manifest.get("schema", 0) > SCHEMA_VERSION:
            raise ArtifactError(
                f"{root} was written by a newer edgepack (manifest schema {manifest.get('schema')}); upgrade"
            )
        art = cls(root, manifest)
        try:
            _ = art.runtime
        except EdgepackError as e:
            raise ArtifactError(f"{mpath}: {e}") from None
        if verify:  # verify=False reads the (shape-checked) manifest only: for tools that report on a folder
            art.verify()
        return art

    def verify(self) -> None:
        """Refuse links and unlisted files, then check every listed file's size and sha256."""
        scan_folder(self.path, self.manifest)
        for role in self.manifest["files"]:
            self.read_verified(role, keep=False)

    def read_verified(self, role: str, keep: bool = True) -> bytes | None:
        """The bytes of ``role``'s file, checked against the manifest (so what is used is what was verified)."""
        entry = self.manifest["files"].get(role)
        if entry is None:
            self.file(role)  # raises the "has no file" error
        p = self.path / entry["path"]
        try:
            fd = os.open(p, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            raise ArtifactError(f"artifact {self.path}: file for '{role}' is missing or not a file: "
                                f"{entry['path']}") from None
        h, chunks, size = hashlib.sha256(), [], 0
        with os.fdopen(fd, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
                size += len(block)
                if keep:
                    chunks.append(block)
        if "bytes" in entry and size != entry["bytes"]:
            raise ArtifactError(
                f"artifact {self.path}: {entry['path']} has {size} bytes, manifest says {entry['bytes']} "
                "(truncated or modified)"
            )
        if h.hexdigest() != entry["sha256"]:
            raise ArtifactError(
                f"artifact {self.path}: checksum mismatch for {entry['path']} (file was modified or corrupted)"
            )
        return b"".join(chunks) if keep else None

    # --- convenient accessors -------------------------------------------------------------
    @property
    def stage(self) -> str:
        return self.manifest.get("stage", "")

    @property
    def format(self) -> str:
        return self.manifest.get("format", "")

    @property
    def task(self) -> str:
        return self.manifest.get("task", "")

    @property
    def labels(self) -> list[str]:
        return list(self.manifest.get("labels") or [])

    @property
    def inputs(self) -> list[dict]:
        return list(self.manifest.get("inputs") or [])

    @property
    def outputs(self) -> list[dict]:
        return list(self.manifest.get("outputs") or [])

    @property
    def metrics(self) -> dict:
        return dict(self.manifest.get("metrics") or {})

    @property
    def config(self) -> dict:
        return dict(self.manifest.get("config") or {})

    @property
    def extra(self) -> dict:
        return dict(self.manifest.get("extra") or {})

    @cached_property
    def runtime(self) -> RuntimeContract:
        """The typed runtime contract (from ``extra``'s contract keys in a schema-1 manifest)."""
        if "runtime" in self.manifest or self.manifest.get("schema", 0) >= 2:
            return RuntimeContract.from_dict(self.manifest.get("runtime") or {})
        names = {f.name for f in fields(RuntimeContract)}
        old = {k: v for k, v in self.extra.items() if k in names}
        if old.get("precision") in _SCHEMA1_PRECISION:  # TensorRT "int8", torch-quantized method names
            old.setdefault("quantization", old["precision"] if old["precision"] != "int8" else None)
            old["precision"] = _SCHEMA1_PRECISION[old["precision"]]
        return RuntimeContract.from_dict(old)

    @property
    def lineage(self) -> list[dict]:
        return list(self.manifest.get("lineage") or [])

    def has(self, role: str) -> bool:
        return role in self.manifest["files"]

    def file(self, role: str) -> Path:
        try:
            return self.path / self.manifest["files"][role]["path"]
        except KeyError:
            have = ", ".join(sorted(self.manifest["files"])) or "none"
            raise ArtifactError(f"artifact {self.path} has no '{role}' file (it has: {have})") from None

    def require(self, *, format: str | tuple[str, ...] | None = None, task: str | None = None) -> Artifact:
        """Raise ArtifactError unless this artifact has the given format/task."""
        formats = (format,) if isinstance(format, str) else format
        if formats and self.format not in formats:
            raise ArtifactError(
                f"{self.path} is a '{self.format}' artifact (stage '{self.stage}'); this step needs "
                f"{' or '.join(repr(f) for f in formats)}"
            )
        if task and self.task != task:
            raise ArtifactError(f"{self.path} is a '{self.task}' model; this step needs '{task}'")
        return self

    def manifest_sha256(self) -> str:
        return sha256_file(self.path / MANIFEST)

    def summary(self) -> dict:
        """A short dict for lineage records and listings."""
        return {
            "stage": self.stage,
            "format": self.format,
            "path": str(self.path),
            "manifest_sha256": self.manifest_sha256(),
            "metrics": self.metrics,
        }


@dataclass
class ArtifactWriter:
    """Write an artifact atomically.

    >>> with ArtifactWriter(out_dir) as w:           # files go into w.dir (a temp sibling of out_dir)
    ...     (w.dir / "model.onnx").write_bytes(data)
    ...     art = w.commit(stage="export", format="onnx", task="text-classification",
    ...                    files={"model": "model.onnx"}, parent=parent_artifact)

    On ``commit`` the manifest is written (every regular file in the temp folder is listed: files not named
    in ``files`` are listed under their path) and the temp folder takes ``out_dir``'s place. An existing,
    non-empty ``out_dir`` needs ``overwrite=True`` and must be an edgepack artifact (nothing else is ever
    replaced); it stays whole until the new one is in place. ``sources``: input folders the output may not
    be, be inside or contain. If the block raises, the temp directory is removed and ``out_dir`` is untouched.
    """

    out: Path
    overwrite: bool = False
    sources: tuple = ()
    dir: Path = field(init=False)
    _committed: Artifact | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        out = Path(self.out).expanduser().absolute()
        if out.is_symlink():
            raise ArtifactError(f"refusing to write to {out}: it is a symlink")
        self.out = out.parent.resolve() / out.name
        if isinstance(self.sources, (str, os.PathLike)):
            self.sources = (self.sources,)
        self.sources = tuple(s.path if isinstance(s, Artifact) else s for s in self.sources)

    def __enter__(self) -> ArtifactWriter:
        check_not_source(self.out, self.sources)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        clean_stale(self.out)
        check_replaceable(self.out, self.overwrite)
        self.dir = make_temp_dir(self.out)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.dir.exists():
            shutil.rmtree(self.dir, ignore_errors=True)

    def commit(
        self,
        *,
        stage: str,
        format: str,
        task: str,
        files: dict[str, str],
        labels: list[str] | None = None,
        inputs: list[dict] | None = None,
        outputs: list[dict] | None = None,
        parent: Artifact | None = None,
        config: dict | None = None,
        metrics: dict | None = None,
        runtime: RuntimeContract | None = None,
        extra: dict | None = None,
    ) -> Artifact:
        """Checksum ``files`` (role -> path relative to ``self.dir``), write the manifest, rename into place.

        ``runtime`` is the typed contract readers act on; ``extra`` holds stage reports (no contract keys).
        Under a multi-process launcher (``edgepack.ranks``) every process commits the same artifact: they wait
        for each other (so none is still checking the output folder when it changes), the main process alone
        writes and swaps it in, the others drop their temp folder, wait for it and return it opened.
        """
        from edgepack import ranks

        kw = {"stage": stage, "format": format, "task": task, "files": files, "labels": labels, "inputs": inputs,
              "outputs": outputs, "parent": parent, "config": config, "metrics": metrics, "runtime": runtime,
              "extra": extra}
        if ranks.world_size() == 1:
            return self._commit(**kw)
        ranks.wait_for_everyone()
        if ranks.is_main():
            try:
                return self._commit(**kw)
            finally:  # also when it failed: the others then find no artifact and fail too, instead of hanging
                ranks.wait_for_everyone()
        shutil.rmtree(self.dir, ignore_errors=True)
        ranks.wait_for_everyone()
        self._committed = Artifact.open(self.out, verify=False)
        return self._committed

    def _commit(self, *, stage: str, format: str, task: str, files: dict[str, str], labels: list[str] | None,
                inputs: list[dict] | None, outputs: list[dict] | None, parent: Artifact | None, config: dict | None,
                metrics: dict | None, runtime: RuntimeContract | None, extra: dict | None) -> Artifact:
        clash = sorted(set(extra or {}) & {f.name for f in fields(RuntimeContract)})
        if clash:
            raise ValueError(f"{', '.join(clash)} belong in the runtime contract, not in extra")
        if format not in FORMATS:
            raise ValueError(f"unknown artifact format {format!r}; known: {FORMATS}")
        if task not in TASKS:
            raise ArtifactError(f"unsupported task {task!r}; edgepack supports: {', '.join(TASKS)}")
        if parent is not None:
            check_not_source(self.out, [parent.path])
        present, bad = folder_entries(self.dir)
        if bad:
            raise ArtifactError(f"stage wrote {bad[0]}: artifacts cannot hold symlinks or special files")
        files = {**files, **{rel: rel for rel in sorted(present - set(files.values()) - {MANIFEST})}}
        entries = {}
        for role, rel in files.items():
            rel = Path(rel).as_posix()
            p = self.dir / rel
            if not p.is_file():
                raise FileNotFoundError(f"stage did not write {rel} for role '{role}'")
            entries[role] = {"path": rel, "sha256": sha256_file(p), "bytes": p.stat().st_size}
        lineage = []
        parent_ref = None
        if parent is not None:
            lineage = parent.lineage + [parent.summary()]
            parent_ref = {"path": str(parent.path), "stage": parent.stage,
                          "manifest_sha256": parent.manifest_sha256()}
        manifest = {
            "schema": SCHEMA_VERSION,
            "stage": stage,
            "format": format,
            "task": task,
            "labels": list(labels or []),
            "inputs": list(inputs or []),
            "outputs": list(outputs or []),
            "files": entries,
            "parent": parent_ref,
            "lineage": lineage,
            "config": _jsonable(config or {}),
            "metrics": _jsonable(metrics or {}),
            "runtime": (runtime or RuntimeContract()).to_dict(),
            "extra": _jsonable(extra or {}),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        _atomic_write_text(self.dir / MANIFEST, json.dumps(manifest, indent=2, sort_keys=False) + "\n")
        check_replaceable(self.out, self.overwrite)  # again: the folder may have changed while the stage ran
        replace_dir(self.dir, self.out)
        self._committed = Artifact.open(self.out, verify=False)
        return self._committed


def update_metrics(art: Artifact, **metrics: Any) -> Artifact:
    """Merge ``metrics`` into an artifact's manifest (atomic rewrite of manifest.json)."""
    m = dict(art.manifest)
    m["metrics"] = {**art.metrics, **_jsonable(metrics)}
    _atomic_write_text(art.path / MANIFEST, json.dumps(m, indent=2) + "\n")
    return Artifact.open(art.path, verify=False)


def _jsonable(obj: Any) -> Any:
    """Convert dataclasses, paths, tuples and numpy scalars into JSON-friendly values."""
    import dataclasses

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        try:
            return obj.item()
        except (TypeError, ValueError):
            pass
    if isinstance(obj, float) and obj != obj:  # NaN is not valid JSON
        return None
    return obj
