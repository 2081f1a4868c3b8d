"""Transfer-set texts for distillation: an unlabeled file and/or seeded augmented copies.

``transfer_texts(settings, train_texts, mask_token)`` gives the extra texts the teacher labels (its soft
targets are cached with the training set's). Augmentation is word-level and seeded (same settings, same
texts): word dropout, masking with the teacher's mask token, and swaps of neighbouring word spans, the
simple perturbations of EDA (Wei & Zou 2019) and of TinyBERT's data augmentation without a generator.
"""

from __future__ import annotations

import random
from pathlib import Path

from edgepack.distill.configs import TransferSettings

from edgepack.errors import EdgepackError
from edgepack.loaders import read_rows


def read_texts(path: str, text_column: str = "text") -> list[str]:
    """Non-empty texts of a ``.txt`` file (one per line) or of a CSV/TSV/JSONL/Parquet file's column."""
    p = Path(path).expanduser()
    if p.suffix.lower() == ".txt":
        if not p.is_file():
            raise EdgepackError(f"transfer file not found: {p}")
        texts = [line.strip() for line in p.read_text(encoding="utf-8").splitlines()]
    else:
        rows = read_rows(p)
        if rows and text_column not in rows[0]:
            raise EdgepackError(f"{p}: no column '{text_column}' for the transfer texts; the file has "
                                f"{', '.join(sorted(map(str, rows[0])))}")
        texts = [str(r.get(text_column) or "").strip() for r in rows]
    texts = [t for t in texts if t]
    if not texts:
        raise EdgepackError(f"{p}: no transfer texts in it")
    return texts


def augment(text: str, rng: random.Random, word_dropout: float, mask: float, swap: float,
            mask_token: str | None) -> str:
    """One perturbed copy of ``text``: words dropped / masked (at least one word kept), then spans swapped."""
    words = text.split()
    out = []
    for w in words:
        r = rng.random()
        if r < word_dropout:
            continue
        out.append(mask_token if r < word_dropout + mask and mask_token else w)
    if not out and words:
        out = [rng.choice(words)]
    for _ in range(round(swap * len(out))):
        span = rng.randint(1, 3)
        if len(out) < 2 * span:
            span = len(out) // 2
        if span == 0:
            break
        i = rng.randint(0, len(out) - 2 * span)
        out[i:i + 2 * span] = out[i + span:i + 2 * span] + out[i:i + span]
    return " ".join(out)


def transfer_texts(cfg: TransferSettings, train_texts: list[str], mask_token: str | None = None) -> list[str]:
    """The transfer set: the file's texts plus ``augment_copies`` augmented copies of each, or only the
    copies of ``train_texts`` when there is no file (either source a seeded sample of ``max_texts``)."""
    rng = random.Random(cfg.seed)
    sources = read_texts(cfg.path, cfg.text_column) if cfg.path is not None else list(train_texts)
    if cfg.max_texts is not None and len(sources) > cfg.max_texts:
        sources = rng.sample(sources, cfg.max_texts)
    base = sources if cfg.path is not None else []
    copies = [augment(t, rng, cfg.word_dropout, cfg.mask, cfg.swap, mask_token)
              for _ in range(cfg.augment_copies) for t in sources]
    return base + [t for t in copies if t]
