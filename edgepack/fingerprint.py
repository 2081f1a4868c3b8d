"""Content identities for resume keys and checkpoint fingerprints. Standard library only.

Resuming by path trusts that nothing changed in place; these name the *contents* instead: a file by its
sha256, an artifact by its manifest's sha256 (which pins every file's sha256), any other folder by the
hashes of its files, and a Dataset by the hash of its texts and labels. A value that is not a local path
(a Hub model id) is kept as it is.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from edgepack.artifact import MANIFEST, is_artifact, sha256_file

_CACHE: dict[tuple, str] = {}  # (path, size, mtime_ns) -> sha256, so one run hashes a file once


def _file_sha(p: Path) -> str:
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _CACHE:
        _CACHE[key] = sha256_file(p)
    return _CACHE[key]


def path_content_id(value: Any) -> Any:
    """``sha256:...`` for a file, ``manifest:...`` for an artifact, ``tree:...`` for a folder; else ``value``."""
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        return value
    p = Path(value).expanduser()
    if p.is_file():
        return "sha256:" + _file_sha(p)
    if p.is_dir():
        if is_artifact(p):
            return "manifest:" + _file_sha(p / MANIFEST)
        h = hashlib.sha256()
        for f in sorted(q for q in p.rglob("*") if q.is_file()):
            h.update(f"{f.relative_to(p).as_posix()}\0{_file_sha(f)}\n".encode())
        return "tree:" + h.hexdigest()
    return value


def data_content_id(ds: Any) -> str:
    """The sha256 of a Dataset's texts, pairs, labels and label names (what training actually reads)."""
    h = hashlib.sha256()
    for name in ("train_texts", "train_pairs", "train_labels", "val_texts", "val_pairs", "val_labels",
                 "label_names"):
        h.update(json.dumps([name, getattr(ds, name, None)], ensure_ascii=False).encode())
    return h.hexdigest()


def content_key(value: Any) -> Any:
    """``value`` (a JSON-able dict/list, e.g. a DataSpec's dict) with every ``path`` entry by its contents."""
    if isinstance(value, dict):
        return {k: (path_content_id(v) if k == "path" else content_key(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [content_key(v) for v in value]
    return value
