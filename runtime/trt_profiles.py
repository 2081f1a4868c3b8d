"""TensorRT optimization profiles at run time: per-input shapes and the profile for one input. Pure Python.

An engine built from a graph with dynamic axes has one or more *optimization profiles*: for every
dynamic input a (min, opt, max) shape. edgepack declares them as batch and sequence lengths
(:class:`edgepack.contract.ShapeRange`, recorded in the artifact's runtime contract), turns them into
per-input shapes from the manifest's inputs (:func:`input_profiles`), and picks the profile a given
input runs on (:func:`select_profile`). The same shapes become ONNX Runtime TensorRT-EP options
(:func:`ort_trt_profile_options`). The build side (buckets, trtexec flags, calibration) is
:mod:`edgepack.export.trt_profiles`.
"""

from __future__ import annotations

from collections.abc import Sequence

from edgepack.contract import ShapeRange
from edgepack.errors import EdgepackError

BATCH_NAMES = ("batch", "batch_size", "n", "N")
SEQUENCE_NAMES = ("sequence", "sequence_length", "seq", "seq_len", "T")

Shape = tuple[int, ...]


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


def shape_str(shape: Shape) -> str:
    """``(1, 128)`` -> ``"1x128"``, the shape syntax of ORT's TensorRT EP and of trtexec."""
    return "x".join(str(d) for d in shape)


def ort_trt_profile_options(profiles: Sequence[dict[str, tuple[Shape, Shape, Shape]]]) -> dict[str, str]:
    """ONNX Runtime TensorRT-EP options ``trt_profile_{min,opt,max}_shapes`` ("name:1x1,name2:1x1").

    Several profiles are given by repeating an input name (ORT >= 1.15 reads them in order).
    """
    keys = ("trt_profile_min_shapes", "trt_profile_opt_shapes", "trt_profile_max_shapes")
    out = {}
    for k, key in enumerate(keys):
        out[key] = ",".join(
            f"{name}:{shape_str(shapes[k])}" for prof in profiles for name, shapes in prof.items()
        )
    return out
