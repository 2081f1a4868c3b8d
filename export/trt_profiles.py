"""TensorRT profiles and calibration data for the engine BUILD, in pure Python (no TensorRT needed).

The sequence range can be split into buckets so short requests run on kernels tuned for short inputs
(:func:`bucketed_ranges`); requested lengths are checked against the model (:func:`check_against_model`);
``trtexec`` flags document a profile (:func:`trtexec_shape_flags`). INT8 calibration feeds TensorRT
fixed-shape batches of real, tokenized samples (:func:`calibration_batches`). What the runtime needs
(per-input shapes, ORT TensorRT-EP options, choosing a profile for an input) is
:mod:`edgepack.runtime.trt_profiles`; :class:`edgepack.contract.ShapeRange` declares one profile.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from edgepack.runtime.trt_profiles import Shape, shape_str

from edgepack.contract import ShapeRange
from edgepack.errors import EdgepackError


def check_against_model(rng: ShapeRange, max_length: int | None) -> None:
    """Refuse sequence lengths beyond the model's position limit (``runtime.max_length``)."""
    if max_length is not None and rng.max_seq > int(max_length):
        raise EdgepackError(
            f"max sequence length {rng.max_seq} exceeds the model's max_length {max_length}; "
            f"use --seq MIN,OPT,{max_length} or less"
        )


def bucketed_ranges(rng: ShapeRange, seq_buckets: Sequence[int] = ()) -> list[ShapeRange]:
    """Split ``rng``'s sequence range at ``seq_buckets`` into consecutive profiles.

    ``ShapeRange(max_seq=128)`` with buckets ``(32,)`` gives profiles for seq 1..32 (opt 32) and
    33..128 (opt = the declared opt if it falls inside, else the bucket's max). Batch ranges are shared.
    """
    cuts = sorted({int(b) for b in seq_buckets})
    for c in cuts:
        if not rng.min_seq <= c < rng.max_seq:
            raise EdgepackError(
                f"sequence bucket {c} must lie in [{rng.min_seq}, {rng.max_seq}) (the declared sequence range)"
            )
    bounds = [rng.min_seq - 1] + cuts + [rng.max_seq]
    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        lo += 1
        opt = rng.opt_seq if lo <= rng.opt_seq <= hi else hi
        out.append(ShapeRange(rng.min_batch, rng.opt_batch, rng.max_batch, lo, opt, hi))
    return out


def trtexec_shape_flags(profile: dict[str, tuple[Shape, Shape, Shape]]) -> list[str]:
    """``trtexec --minShapes/--optShapes/--maxShapes`` flags for one profile (for docs and debugging)."""
    flags = []
    for k, flag in enumerate(("--minShapes", "--optShapes", "--maxShapes")):
        flags.append(f"{flag}=" + ",".join(f"{n}:{shape_str(s[k])}" for n, s in profile.items()))
    return flags


def calibration_batches(
    texts: Sequence[str],
    tokenizer_json: str,
    input_names: Sequence[str],
    batch_size: int,
    seq_len: int,
    pad_token_id: int = 0,
    max_batches: int | None = None,
) -> list[dict[str, np.ndarray]]:
    """Tokenize ``texts`` into full (batch_size, seq_len) int64 batches for an INT8 calibrator.

    TensorRT calibrates at one shape (the calibration profile), so every batch is padded/truncated to
    ``seq_len`` and has exactly ``batch_size`` rows; the final partial batch is dropped. Raises
    EdgepackError when there are fewer texts than one batch.
    """
    from tokenizers import Tokenizer

    if batch_size < 1 or seq_len < 1:
        raise EdgepackError("calibration batch size and sequence length must be >= 1")
    texts = [t for t in texts if isinstance(t, str) and t.strip()]
    if len(texts) < batch_size:
        raise EdgepackError(
            f"INT8 calibration needs at least one full batch: got {len(texts)} non-empty texts for a "
            f"calibration batch size of {batch_size}"
        )
    unknown = set(input_names) - {"input_ids", "attention_mask", "token_type_ids"}
    if unknown:
        raise EdgepackError(f"cannot build calibration data for model inputs {sorted(unknown)}")
    tok = Tokenizer.from_file(str(tokenizer_json))
    tok.enable_truncation(max_length=int(seq_len))
    tok.enable_padding(length=int(seq_len), pad_id=int(pad_token_id))
    n_batches = len(texts) // batch_size
    if max_batches is not None:
        n_batches = min(n_batches, int(max_batches))
    batches = []
    for b in range(n_batches):
        enc = tok.encode_batch(texts[b * batch_size : (b + 1) * batch_size])
        cols = {
            "input_ids": np.array([e.ids for e in enc], dtype=np.int64),  # (B, T)
            "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64),
        }
        batches.append({n: cols[n] for n in input_names})
    return batches
