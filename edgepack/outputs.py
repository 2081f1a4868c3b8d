"""Output folders that never destroy data. Standard library only.

* Writing into an existing, non-empty folder needs ``overwrite=True`` (``--overwrite``), and even then only a
  folder that is an edgepack artifact (a valid manifest, no unlisted files, no links) is replaced.
* An output equal to, inside, or containing a source is refused.
* Replacement is crash-safe: the new folder is swapped in with one atomic exchange (Linux renameat2); where
  that is unavailable, the old artifact is moved aside and a crash in between is repaired on the next write.
* Temp folders (``.NAME.tmp-PID-*``), moved-aside ones (``.NAME.old-PID-*``) and the quantize stage's scratch
  folders (``.NAME.candidates-PID-*``) left by a crashed process are removed on the next write to ``NAME``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from edgepack.manifest_check import MANIFEST, ArtifactError, folder_entries, read_manifest


def check_not_source(out: Path, sources: Iterable[str | os.PathLike | None]) -> None:
    """Refuse an output that is, is inside, or contains one of ``sources``."""
    out = Path(out).expanduser().resolve()
    for s in sources:
        if s is None:
            continue
        src = Path(s).expanduser().resolve()
        if out == src:
            raise ArtifactError(f"output {out} is the source; write to another folder")
        if src.is_relative_to(out):
            raise ArtifactError(f"output {out} contains the source {src}; write to another folder")
        if out.is_relative_to(src):
            raise ArtifactError(f"output {out} is inside the source {src}; write to another folder")


def check_replaceable(out: Path, overwrite: bool) -> None:
    """Raise unless writing to ``out`` destroys nothing but an edgepack artifact the caller agreed to replace."""
    if os.path.islink(out):
        raise ArtifactError(f"refusing to write to {out}: it is a symlink")
    if not out.exists():
        return
    if not out.is_dir():
        raise ArtifactError(f"refusing to replace {out}: it is a file, not an artifact folder")
    if not any(out.iterdir()):
        return  # an empty folder holds nothing to lose
    if not overwrite:
        raise ArtifactError(f"output {out} already exists; pass --overwrite (overwrite=True) to replace it")
    try:
        manifest = read_manifest(out)
        files, bad = folder_entries(out)
    except ArtifactError as e:
        raise ArtifactError(f"refusing to replace {out}: it is not a valid edgepack artifact ({e})") from None
    listed = {e["path"] for e in manifest["files"].values()} | {MANIFEST}
    extra = sorted(set(bad) | (files - listed))
    if extra:
        raise ArtifactError(f"refusing to replace {out}: it holds {extra[0]}, which is not part of the artifact")


_STALE = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old|candidates)-(?:(?P<pid>\d+)-)?[^/]*$")


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (this process counts; another user's process counts)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(out: Path) -> list[Path]:
    """Remove ``.NAME.tmp-*`` / ``.NAME.old-*`` / ``.NAME.candidates-*`` sibling folders of ``out`` left by dead
    processes (a PID in the name that is still alive keeps it; links and files are never touched); returns them.

    If ``out`` is missing and a moved-aside copy holds the old artifact (a crash between the two renames of
    the fallback replacement), that copy is put back first.
    """
    removed = []
    if not out.parent.is_dir():
        return removed
    for p in sorted(out.parent.iterdir()):
        m = _STALE.match(p.name)
        if not m or m["name"] != out.name or not p.is_dir() or p.is_symlink():
            continue
        if m["pid"] is not None and pid_alive(int(m["pid"])):
            continue
        old = p / "old"
        if m["kind"] == "old" and not out.exists() and old.is_dir() and (old / MANIFEST).is_file():
            os.replace(old, out)
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    return removed


def make_temp_dir(out: Path, kind: str = "tmp") -> Path:
    """A hidden sibling of ``out`` named ``.NAME.KIND-PID-xxxx`` (so a later write can tell it is stale)."""
    return Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.{kind}-{os.getpid()}-"))


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: the filesystem or kernel cannot exchange
        return False
    raise OSError(err, os.strerror(err), str(b))


def replace_dir(src: Path, dst: Path) -> None:
    """Put the complete folder ``src`` at ``dst``; an existing ``dst`` stays whole until ``src`` is in place."""
    if not dst.exists() or (dst.is_dir() and not any(dst.iterdir())):
        os.replace(src, dst)
        return
    if _exchange(src, dst):
        shutil.rmtree(src, ignore_errors=True)  # src now holds the old artifact
        return
    trash = make_temp_dir(dst, "old")
    os.replace(dst, trash / "old")  # a crash here leaves the old artifact in trash/old: clean_stale restores it
    os.replace(src, dst)
    shutil.rmtree(trash, ignore_errors=True)


def check_output(out: str | os.PathLike, overwrite: bool, sources: Iterable[str | os.PathLike | None] = ()) -> Path:
    """The checks ArtifactWriter makes, run before a long stage starts so a bad target fails in a second."""
    path = Path(out).expanduser().absolute()
    if path.is_symlink():
        raise ArtifactError(f"refusing to write to {path}: it is a symlink")
    path = path.parent.resolve() / path.name
    check_not_source(path, [getattr(s, "path", s) for s in sources])
    check_replaceable(path, overwrite)
    return path
