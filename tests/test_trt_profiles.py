"""Optimization profiles, profile selection, ORT/trtexec shape strings and INT8 calibration batches (CPU)."""

import numpy as np
import pytest
from edgepack.export.trt_profiles import (
    bucketed_ranges,
    calibration_batches,
    check_against_model,
    trtexec_shape_flags,
)
from edgepack.runtime.trt_profiles import input_profiles, ort_trt_profile_options, parse_range, select_profile
from hypothesis import given
from hypothesis import strategies as st

from edgepack.contract import ShapeRange
from edgepack.errors import EdgepackError

INPUTS = [
    {"name": n, "dtype": "int64", "shape": ["batch_size", "sequence_length"]}
    for n in ("input_ids", "attention_mask", "token_type_ids")
]


def test_shape_range_validation():
    with pytest.raises(EdgepackError, match="1 <= min <= opt <= max; got min=8 opt=4 max=16"):
        ShapeRange(min_batch=8, opt_batch=4, max_batch=16)
    with pytest.raises(EdgepackError, match="sequence lengths"):
        ShapeRange(min_seq=0)
    with pytest.raises(EdgepackError, match="exceeds the model's max_length 64"):
        check_against_model(ShapeRange(opt_seq=64, max_seq=128), 64)


def test_parse_range():
    assert parse_range("1,8,32", "batch") == (1, 8, 32)
    assert parse_range("16", "batch") == (16, 16, 16)
    with pytest.raises(EdgepackError, match="MIN,OPT,MAX"):
        parse_range("1,2", "--seq")
    with pytest.raises(EdgepackError, match="integers"):
        parse_range("a,b,c", "--seq")


def test_input_profiles_from_manifest_dims():
    prof = input_profiles(
        INPUTS + [{"name": "pixel", "dtype": "float32", "shape": ["batch", 3]}],
        ShapeRange(1, 4, 16, 2, 64, 128),
    )
    assert prof["input_ids"] == ((1, 2), (4, 64), (16, 128))
    assert prof["pixel"] == ((1, 3), (4, 3), (16, 3))  # fixed dims stay fixed
    with pytest.raises(EdgepackError, match="dynamic axis 2 named 'heads'"):
        input_profiles(
            [{"name": "x", "dtype": "float32", "shape": ["batch", "sequence", "heads"]}], ShapeRange()
        )


def test_bucketed_ranges_cover_the_declared_range_without_overlap():
    r = ShapeRange(1, 8, 32, 1, 48, 128)
    got = bucketed_ranges(r, (32, 64))
    assert [(g.min_seq, g.opt_seq, g.max_seq) for g in got] == [(1, 32, 32), (33, 48, 64), (65, 128, 128)]
    assert all((g.min_batch, g.max_batch) == (1, 32) for g in got)
    assert bucketed_ranges(r) == [r]
    with pytest.raises(EdgepackError, match="bucket 128 must lie in"):
        bucketed_ranges(r, (128,))


@given(st.integers(1, 32), st.integers(1, 128))
def test_select_profile_picks_a_covering_tightest_profile(batch, seq):
    ranges = bucketed_ranges(ShapeRange(1, 8, 32, 1, 64, 128), (16, 64))
    i = select_profile(ranges, batch, seq)
    assert ranges[i].contains(batch, seq)
    # with a wide profile listed first, the tighter bucket still wins
    wide = [ShapeRange(1, 8, 32, 1, 64, 128)] + ranges
    j = select_profile(wide, batch, seq)
    assert j != 0 and wide[j].contains(batch, seq)


def test_select_profile_outside_every_profile_says_so():
    with pytest.raises(
        EdgepackError, match=r"batch 64 x sequence 10 is outside every optimization profile.*#0: batch 1-32"
    ):
        select_profile([ShapeRange()], 64, 10)


def test_ort_and_trtexec_shape_strings():
    profs = [input_profiles(INPUTS[:2], r) for r in bucketed_ranges(ShapeRange(1, 8, 32, 1, 64, 128), (32,))]
    opts = ort_trt_profile_options(profs)
    assert (
        opts["trt_profile_min_shapes"]
        == "input_ids:1x1,attention_mask:1x1,input_ids:1x33,attention_mask:1x33"
    )
    assert opts["trt_profile_max_shapes"].endswith("input_ids:32x128,attention_mask:32x128")
    assert trtexec_shape_flags(profs[0])[1] == "--optShapes=input_ids:8x32,attention_mask:8x32"


def test_calibration_batches_are_full_fixed_shape_real_tokens(onnx_tokenizer):
    texts = [f"the film number {i} is great" for i in range(21)] + ["", "  "]
    batches = calibration_batches(
        texts, onnx_tokenizer, ["input_ids", "attention_mask"], 8, 16, pad_token_id=0
    )
    assert len(batches) == 2  # 21 non-empty texts -> two full batches of 8, the partial one dropped
    for b in batches:
        assert set(b) == {"input_ids", "attention_mask"}
        assert b["input_ids"].shape == (8, 16) and b["input_ids"].dtype == np.int64
        assert (b["attention_mask"].sum(1) > 2).all()  # real tokens, not padding only
        assert ((b["input_ids"] == 0) == (b["attention_mask"] == 0)).all()
    assert len(calibration_batches(texts, onnx_tokenizer, ["input_ids"], 4, 16, max_batches=3)) == 3


def test_calibration_batches_errors(onnx_tokenizer):
    with pytest.raises(EdgepackError, match="at least one full batch: got 2 non-empty texts"):
        calibration_batches(["a", "b", ""], onnx_tokenizer, ["input_ids"], 8, 16)
    with pytest.raises(EdgepackError, match="pixel_values"):
        calibration_batches(["a"] * 8, onnx_tokenizer, ["input_ids", "pixel_values"], 8, 16)


@pytest.fixture(scope="module")
def onnx_tokenizer(tiny_bert, tmp_path_factory):
    """tokenizer.json as the ONNX export writes it (padding/truncation cleared)."""
    from tokenizers import Tokenizer

    p = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    tok = Tokenizer.from_file(str(tiny_bert / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    tok.save(str(p))
    return str(p)
