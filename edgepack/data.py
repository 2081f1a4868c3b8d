"""The one data layer: ``DataSpec`` (where the data is), ``Dataset`` (what every stage reads), label alignment.

``load_data(DataSpec(...))`` reads a CSV / TSV / JSONL / Parquet file (``edgepack.loaders``), checks its
columns and labels, and returns a stratified, seeded train/validation ``Dataset``. Label values are kept
as names (``label_names``) so the artifact can record them; ``labels`` in the spec fixes their order (and
rejects unknown values). Unlabeled files (``label_column=None``) are allowed for distillation: the
teacher labels them. ``DataSpec(path=None)`` / ``example_spec()`` is the embedded Rotten Tomatoes example
(see ``edgepack.loaders``).

Every stage takes its data through ``as_dataset`` (a DataSpec, a Dataset, or plain texts) and matches
label indices to a model's label order with ``align_labels`` / ``Dataset.aligned_to``: one rule for all.
"""

from __future__ import annotations

import dataclasses
import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from edgepack.config import check_fields, check_fraction, check_min
from edgepack.errors import EdgepackError
from edgepack.loaders import EXAMPLE_LABELS, example_rows, read_rows

# Short review-like sentences of varied length: export validation feeds, benchmark fallbacks, tests.
SAMPLE_SENTENCES: tuple[str, ...] = (
    "a gripping, beautifully acted film",
    "the plot is thin and the jokes fall flat",
    "an instant classic",
    "i walked out after twenty minutes",
    "warm funny and surprisingly moving with a great cast and a script that never stops surprising you",
    "dull",
    "the best thing about it is the soundtrack , everything else is forgettable",
)


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

    def __post_init__(self) -> None:
        check_fields(self)
        check_fraction(self, "val_fraction")
        check_min(self, 0, "seed")
        check_min(self, 1, "max_examples")


@dataclass
class Dataset:
    """A train/validation split; ``*_labels`` are indices into ``label_names`` (None when unlabeled).

    Training and importance scoring read the ``train_*`` split, evaluation reads ``eval_view()``
    (the validation split), static quantization calibrates on ``calibration_texts``. Sequences are
    stored as lists; a label list of the wrong length raises EdgepackError.
    """

    train_texts: list[str]
    train_labels: list[int] | None = None
    val_texts: list[str] = field(default_factory=list)
    val_labels: list[int] | None = None
    label_names: list[str] = field(default_factory=list)
    train_pairs: list[str] | None = None
    val_pairs: list[str] | None = None
    source: str = ""
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for split in ("train", "val"):
            texts = list(getattr(self, f"{split}_texts") or [])
            setattr(self, f"{split}_texts", texts)
            for kind in ("labels", "pairs"):
                values = getattr(self, f"{split}_{kind}")
                if values is None:
                    continue
                values = list(values)
                setattr(self, f"{split}_{kind}", values)
                if len(values) != len(texts):
                    raise EdgepackError(f"{split} split: {len(texts)} texts but {len(values)} {kind}")
        self.label_names = [str(n) for n in self.label_names or []]

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @classmethod
    def from_texts(cls, texts: Sequence[str], labels: Sequence[int] | None = None,
                   label_names: Sequence[str] = ()) -> Dataset:
        """Plain texts (and label indices) used for both splits: evaluated on and calibrated / scored with."""
        return cls(list(texts), labels, list(texts), labels, list(label_names), source="texts")

    @property
    def calibration_texts(self) -> list[str]:
        """Texts to calibrate activation ranges with: the training split, else the validation split."""
        return self.train_texts or self.val_texts

    def eval_view(self, max_n: int | None = None) -> Dataset:
        """This dataset with ``val_*`` set to the evaluation texts: the validation split (the training
        split when there is none), at most the first ``max_n``. The training split is kept."""
        if self.val_texts:
            texts, labels, pairs = self.val_texts, self.val_labels, self.val_pairs
        else:
            texts, labels, pairs = self.train_texts, self.train_labels, self.train_pairs
        if not texts:
            raise EdgepackError("no evaluation texts given")
        n = len(texts) if max_n is None else max_n
        return dataclasses.replace(self, val_texts=texts[:n], val_labels=None if labels is None else labels[:n],
                                   val_pairs=None if pairs is None else pairs[:n])

    def aligned_to(self, model_labels: Sequence[str] | None, where: str) -> Dataset:
        """Both splits' labels re-indexed into a model's label order with ``align_labels``.

        ``label_names`` become the model's, except for a model with generic names (LABEL_i), whose
        indices are kept and so still mean the data's own names.
        """
        model = list(model_labels or [])
        if not self.label_names or not model or self.label_names == model:
            return self
        names = self.label_names if _generic(model) else model
        return dataclasses.replace(self, train_labels=align_labels(self.train_labels, self.label_names, model, where),
                                   val_labels=align_labels(self.val_labels, self.label_names, model, where),
                                   label_names=list(names))


def as_dataset(data: DataSpec | Dataset | Mapping | tuple | list, what: str = "data") -> Dataset:
    """The one way a stage takes data: a DataSpec (loaded), a Dataset, a mapping of Dataset fields,
    ``(texts, labels)`` or a list of texts (``Dataset.from_texts``). Anything else: EdgepackError."""
    if isinstance(data, Dataset):
        return data
    if isinstance(data, DataSpec):
        return load_data(data)
    if isinstance(data, Mapping):
        unknown = set(data) - {f.name for f in dataclasses.fields(Dataset)}
        if unknown:
            raise EdgepackError(f"{what}: unknown Dataset field(s) {', '.join(sorted(map(str, unknown)))}")
        return Dataset(**data)
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], Sequence) and not isinstance(data[0], str):
        return Dataset.from_texts(data[0], data[1])
    if isinstance(data, (list, tuple)) and data and all(isinstance(t, str) for t in data):
        return Dataset.from_texts(data)
    raise EdgepackError(f"{what} must be a DataSpec, a Dataset, a dict of Dataset fields, (texts, labels) or a "
                        f"list of texts; got {type(data).__name__}")


def example_spec(seed: int = 0, val_fraction: float = 0.1, max_examples: int | None = None) -> DataSpec:
    """The embedded Rotten Tomatoes example (labels ``["rotten", "fresh"]``)."""
    return DataSpec(path=None, text_column="text", label_column="label", val_fraction=val_fraction,
                    seed=seed, max_examples=max_examples, labels=EXAMPLE_LABELS)


def _generic(names: Sequence[str]) -> bool:
    return all(n == f"LABEL_{i}" for i, n in enumerate(names))


def align_labels(labels: list[int] | None, names: list[str], model_names: list[str], where: str) -> list[int] | None:
    """Re-index ``labels`` (indices into ``names``) into a model's label order, matched by name.

    Equal orders, or a model with generic names (LABEL_0, ...) and at least as many classes, keep the
    indices. The data may hold fewer classes than the model (an evaluation set without some class). Raises
    EdgepackError when a data label is not one of the model's (a model trained on other labels).
    """
    if labels is None or not names or not model_names or list(names) == list(model_names):
        return labels
    if _generic(model_names) and len(names) <= len(model_names):
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
    rows = example_rows() if spec.path is None else read_rows(spec.path)
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
