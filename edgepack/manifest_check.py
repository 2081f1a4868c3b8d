"""What an artifact folder may hold, checked before anything in it is read. Standard library only.

``read_manifest`` reads ``manifest.json`` (size-capped) and checks its shape: types, required keys, file
entries whose paths are relative, without ``..`` and inside the folder. ``scan_folder`` walks the folder
without following links and refuses symlinks and any regular file the manifest does not list, so every
byte a loader can reach was verified. Every failure is one :class:`ArtifactError` line naming the file.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path, PurePosixPath
from typing import Any

from edgepack.errors import EdgepackError

MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 8 << 20  # a real manifest is a few KiB; the cap keeps a crafted one from eating memory
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_ROLE = re.compile(r"^[^\x00-\x1f]{1,1024}$")


class ArtifactError(EdgepackError):
    """A missing, corrupt, tampered or incompatible artifact."""


def check_rel_path(rel: Any, where: str) -> str:
    """``rel`` if it is a plain relative POSIX path inside the folder (no ``..``, no absolute, no ``\\``)."""
    if not isinstance(rel, str) or not rel:
        raise ArtifactError(f"{where}: path must be a non-empty string")
    p = PurePosixPath(rel)
    if (rel.startswith(("/", "~")) or "\\" in rel or "\x00" in rel or (len(rel) > 1 and rel[1] == ":")
            or any(part in ("..", ".", "") for part in rel.split("/")) or str(p) != rel or len(rel) > 1024):
        raise ArtifactError(f"{where}: path {rel!r} must be relative, inside the artifact, without '..'")
    return rel


def _type_name(v: Any) -> str:
    return type(v).__name__ if v is not None else "null"


def _need(m: dict, key: str, types: type | tuple, mpath: Path, required: bool = False) -> None:
    if key not in m:
        if required:
            raise ArtifactError(f"corrupt manifest {mpath}: missing '{key}'")
        return
    v = m[key]
    if not isinstance(v, types) or (isinstance(v, bool) and types is int):
        raise ArtifactError(f"corrupt manifest {mpath}: '{key}' has the wrong type ({_type_name(v)})")


def check_manifest(manifest: Any, mpath: Path) -> dict:
    """Check the manifest's shape; returns it. The runtime contract is checked by RuntimeContract."""
    if not isinstance(manifest, dict):
        raise ArtifactError(f"corrupt manifest {mpath}: not a JSON object")
    _need(manifest, "schema", int, mpath)
    _need(manifest, "files", dict, mpath, required=True)
    for key in ("stage", "format", "task", "created"):
        _need(manifest, key, str, mpath)
    for key in ("labels", "inputs", "outputs", "lineage"):
        _need(manifest, key, list, mpath)
    for key in ("config", "metrics", "extra", "runtime"):
        _need(manifest, key, dict, mpath)
    _need(manifest, "parent", (dict, type(None)), mpath)
    if not all(isinstance(x, str) for x in manifest.get("labels") or []):
        raise ArtifactError(f"corrupt manifest {mpath}: 'labels' must be a list of strings")
    for key in ("inputs", "outputs", "lineage"):
        if not all(isinstance(x, dict) for x in manifest.get(key) or []):
            raise ArtifactError(f"corrupt manifest {mpath}: '{key}' must be a list of objects")
    seen: dict[str, str] = {}
    for role, entry in manifest["files"].items():
        where = f"corrupt manifest {mpath}: files.{str(role)[:60]}"
        if not _ROLE.match(role):
            raise ArtifactError(f"{where}: bad role name")
        if not isinstance(entry, dict):
            raise ArtifactError(f"{where}: must be an object with path, sha256, bytes")
        rel = check_rel_path(entry.get("path"), where)
        if not isinstance(entry.get("sha256"), str) or not _SHA256.match(entry["sha256"]):
            raise ArtifactError(f"{where}: 'sha256' must be 64 lowercase hex digits")
        if "bytes" in entry and (not isinstance(entry["bytes"], int) or isinstance(entry["bytes"], bool)
                                 or entry["bytes"] < 0):
            raise ArtifactError(f"{where}: 'bytes' must be a non-negative integer")
        if rel == MANIFEST:
            raise ArtifactError(f"{where}: the manifest cannot list itself")
        if rel in seen and seen[rel] != entry["sha256"]:
            raise ArtifactError(f"{where}: {rel} is listed twice with different checksums")
        seen[rel] = entry["sha256"]
    return manifest


def read_manifest(root: Path) -> dict:
    """Read and shape-check ``root/manifest.json`` (a regular file, not a link, at most MAX_MANIFEST_BYTES)."""
    mpath = root / MANIFEST
    try:
        st = os.lstat(mpath)
    except FileNotFoundError:
        raise ArtifactError(f"{root} is not an edgepack artifact (no {MANIFEST})") from None
    except OSError as e:
        raise ArtifactError(f"corrupt manifest {mpath}: {e.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        raise ArtifactError(f"refusing {mpath}: it is a symlink")
    if not stat.S_ISREG(st.st_mode):
        raise ArtifactError(f"{root} is not an edgepack artifact ({MANIFEST} is not a file)")
    if st.st_size > MAX_MANIFEST_BYTES:
        raise ArtifactError(f"corrupt manifest {mpath}: {st.st_size} bytes, over the {MAX_MANIFEST_BYTES} limit")
    try:
        with open(mpath, "rb") as f:
            raw = f.read(MAX_MANIFEST_BYTES + 1)
        if len(raw) > MAX_MANIFEST_BYTES:
            raise ArtifactError(f"corrupt manifest {mpath}: over the {MAX_MANIFEST_BYTES} byte limit")
        manifest = json.loads(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"corrupt manifest {mpath}: {str(e)[:200]}") from None
    except RecursionError:
        raise ArtifactError(f"corrupt manifest {mpath}: nested too deeply") from None
    try:
        return check_manifest(manifest, mpath)
    except RecursionError:
        raise ArtifactError(f"corrupt manifest {mpath}: nested too deeply") from None


def folder_entries(root: Path) -> tuple[set[str], list[str]]:
    """``(regular files, symlinks/special files)`` under ``root`` as relative POSIX paths (links not followed)."""
    files: set[str] = set()
    bad: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel_dir = os.path.relpath(dirpath, root)
        for name in list(dirnames) + filenames:
            full = os.path.join(dirpath, name)
            rel = name if rel_dir == "." else f"{rel_dir}/{name}".replace(os.sep, "/")
            mode = os.lstat(full).st_mode
            if stat.S_ISLNK(mode):
                bad.append(rel)
                if name in dirnames:
                    dirnames.remove(name)
            elif stat.S_ISREG(mode):
                files.add(rel)
            elif not stat.S_ISDIR(mode):
                bad.append(rel)
    return files, sorted(bad)


def scan_folder(root: Path, manifest: dict) -> None:
    """Refuse symlinks, special files and unlisted files; every listed file must be a regular file here."""
    files, bad = folder_entries(root)
    if bad:
        raise ArtifactError(f"artifact {root}: refusing {bad[0]}: symlinks and special files are not allowed")
    listed = {e["path"] for e in manifest["files"].values()}
    unlisted = sorted(files - listed - {MANIFEST})
    if unlisted:
        more = f" (and {len(unlisted) - 1} more)" if len(unlisted) > 1 else ""
        raise ArtifactError(f"artifact {root}: unlisted file {unlisted[0]}{more} is not in the manifest; "
                            "refusing to load unverified files")
    for role, entry in manifest["files"].items():
        if entry["path"] not in files:
            raise ArtifactError(f"artifact {root}: file for '{role}' is missing: {entry['path']}")
