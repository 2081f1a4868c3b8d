"""Optimization profiles and calibration batches for TensorRT, in pure Python (no TensorRT needed).

A TensorRT engine built from a graph with dynamic axes needs one or more *optimization profiles*: for
every dynamic input a (min, opt, max) shape. Kernels are tuned at ``opt`` and valid for any shape
between ``min`` and ``max``. edgepack declares the ranges as batch and sequence lengths
(:class:`ShapeRange`), turns them into per-input shapes from the ONNX artifact's manifest
(:func:`input_profiles`), can split the sequence range into buckets so short requests run on kernels
tuned for short inputs (:func:`bucketed_ranges`), and picks the profile for a given input shape at
run time (:func:`select_profile`). The same ranges become ONNX Runtime TensorRT-EP options
(:func:`ort_trt_profile_options`) and ``trtexec`` flags.

INT8 calibration feeds TensorRT fixed-shape batches of real, tokenized samples
(:func:`calibration_batches`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from edgepack.config import check_fields
from edgepack.errors import EdgepackError

BATCH_NAMES = ("batch", "batch_size", "n", "N")
SEQUENCE_NAMES = ("sequence", "sequence_length", "seq", "seq_len", "T")

Shape = tuple[int, ...]


@dataclass(frozen=True)
class ShapeRange:
    """Declared batch and sequence lengths of one optimization profile (min <= opt <= max)."""

    min_batch: int = 1
    opt_batch: int = 8
    max_batch: int = 32
    min_seq: int = 1
    opt_seq: int = 128
    max_seq: int = 128

    def __post_init__(self) -> None:
        check_fields(self)
        for what, lo, mid, hi in (
            ("batch", self.min_batch, self.opt_batch, self.max_batch),
            ("sequence", self.min_seq, self.opt_seq, self.max_seq),
        ):
            if not (isinstance(lo, int) and isinstance(mid, int) and isinstance(hi, int)):
                raise EdgepackError(f"{what} lengths must be integers, got {lo}, {mid}, {hi}")
            if not 1 <= lo <= mid <= hi:
                raise EdgepackError(
                    f"{what} lengths must satisfy 1 <= min <= opt <= max; got min={lo} opt={mid} max={hi}"
                )

    def contains(self, batch: int, seq: int) -> bool:
        """Whether a (batch, seq) input fits this profile."""
        return self.min_batch <= batch <= self.max_batch and self.min_seq <= seq <= self.max_seq


def parse_range(text: str, what: str) -> tuple[int, int, int]:
    """Parse ``"1,8,32"`` (min,opt,max) or ``"32"`` (min=opt=max) into three ints."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise EdgepackError(f"{what} must be MIN,OPT,MAX integers (e.g. 1,8,32), got {text!r}") from None
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise EdgepackError(f"{what} must be MIN,OPT,MAX (three integers) or one integer, got {text!r}")
    return values[0], values[1], values[2]


def check_against_model(rng: ShapeRange, max_length: int | None) -> None:
    """Refuse sequence lengths beyond the model's position limit (``extra.max_length``)."""
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


def _axis_role(dim: object, axis: int) -> str | int:
    """'batch', 'sequence' or a fixed int for one manifest dim."""
    if isinstance(dim, int) and dim > 0:
        return dim
    if dim in BATCH_NAMES or (axis == 0 and isinstance(dim, str)):
        return "batch"
    if dim in SEQUENCE_NAMES or (axis == 1 and isinstance(dim, str)):
        return "sequence"
    raise EdgepackError(
        f"cannot build a TensorRT profile for dynamic axis {axis} named {dim!r}: only batch (axis 0) "
        "and sequence (axis 1) axes may be dynamic"
    )


def input_profiles(inputs: list[dict], rng: ShapeRange) -> dict[str, tuple[Shape, Shape, Shape]]:
    """Per-input (min, opt, max) shapes for manifest ``inputs`` (symbolic dims by name or position)."""
    if not inputs:
        raise EdgepackError("the artifact declares no inputs; cannot build optimization profiles")
    pick = {
        "batch": (rng.min_batch, rng.opt_batch, rng.max_batch),
        "sequence": (rng.min_seq, rng.opt_seq, rng.max_seq),
    }
    out = {}
    for spec in inputs:
        roles = [_axis_role(d, i) for i, d in enumerate(spec["shape"])]
        shapes = tuple(tuple(r if isinstance(r, int) else pick[r][k] for r in roles) for k in range(3))
        out[spec["name"]] = shapes  # type: ignore[assignment]
    return out


def select_profile(ranges: Sequence[ShapeRange], batch: int, seq: int) -> int:
    """Index of the profile to run a (batch, seq) input on: the one with the tightest sequence range.

    Raises EdgepackError when no profile covers the shape (the message lists the declared ranges).
    """
    fits = [i for i, r in enumerate(ranges) if r.contains(batch, seq)]
    if not fits:
        have = "; ".join(
            f"#{i}: batch {r.min_batch}-{r.max_batch}, seq {r.min_seq}-{r.max_seq}"
            for i, r in enumerate(ranges)
        )
        raise EdgepackError(
            f"input of batch {batch} x sequence {seq} is outside every optimization profile of this "
            f"engine ({have}); rebuild the engine with wider --batch/--seq ranges or send smaller batches"
        )
    return min(fits, key=lambda i: (ranges[i].max_seq - ranges[i].min_seq, ranges[i].max_batch, i))


def _dims(shape: Shape) -> str:
    return "x".join(str(d) for d in shape)


def ort_trt_profile_options(profiles: Sequence[dict[str, tuple[Shape, Shape, Shape]]]) -> dict[str, str]:
    """ONNX Runtime TensorRT-EP options ``trt_profile_{min,opt,max}_shapes`` ("name:1x1,name2:1x1").

    Several profiles are given by repeating an input name (ORT >= 1.15 reads them in order).
    """
    keys = ("trt_profile_min_shapes", "trt_profile_opt_shapes", "trt_profile_max_shapes")
    out = {}
    for k, key in enumerate(keys):
        out[key] = ",".join(
            f"{name}:{_dims(shapes[k])}" for prof in profiles for name, shapes in prof.items()
        )
    return out


def trtexec_shape_flags(profile: dict[str, tuple[Shape, Shape, Shape]]) -> list[str]:
    """``trtexec --minShapes/--optShapes/--maxShapes`` flags for one profile (for docs and debugging)."""
    flags = []
    for k, flag in enumerate(("--minShapes", "--optShapes", "--maxShapes")):
        flags.append(f"{flag}=" + ",".join(f"{n}:{_dims(s[k])}" for n, s in profile.items()))
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
