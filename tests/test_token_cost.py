"""The token-cost benchmark times every shape within the token limit and reports the cheapest one."""

import json

import pytest
from edgepack.benchmarks.token_cost import main, measure_token_cost

from edgepack.errors import EdgepackError


@pytest.fixture(scope="module")
def tiny_onnx(tiny_bert, tmp_path_factory):
    from edgepack.export.onnx_export import OnnxExportConfig, export_onnx

    return export_onnx(tiny_bert, tmp_path_factory.mktemp("tc") / "onnx", OnnxExportConfig()).path


def test_shapes_within_the_limit_and_the_floor(tiny_onnx):
    r = measure_token_cost(str(tiny_onnx), threads=1, lengths=(8, 16), batches=(1, 2, 4), max_tokens=32,
                           seconds=0.1)
    shapes = [(c["batch"], c["length"]) for c in r["cells"]]
    assert shapes == [(1, 8), (2, 8), (4, 8), (1, 16), (2, 16)]  # 4 x 16 = 64 tokens is over the limit
    for c in r["cells"]:
        assert c["p50_ms"] > 0
        assert c["us_per_token"] == pytest.approx(c["p50_ms"] * 1000 / (c["batch"] * c["length"]))
    assert r["floor"] == min(r["cells"], key=lambda c: c["us_per_token"])


def test_cli_json_and_errors(tiny_onnx, capsys, tmp_path):
    assert main([str(tiny_onnx), "--threads", "1", "--lengths", "8", "--batches", "1,2", "--seconds", "0.1",
                 "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["cells"]) == 2
    with pytest.raises(EdgepackError, match="no shape fits"):
        measure_token_cost(str(tiny_onnx), threads=1, lengths=(64,), batches=(4,), max_tokens=16)
    with pytest.raises(SystemExit):
        main([str(tiny_onnx), "--batches", "0,2"])


def test_a_missing_artifact_is_one_line(tmp_path, capsys):
    assert main([str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"token_cost: error: artifact directory not found: {tmp_path / 'nope'}"


def test_texts_give_their_mean_tokens_and_the_ceiling(tiny_onnx, tmp_path, capsys):
    from tokenizers import Tokenizer

    texts = ["a short one", "a somewhat longer text with more words in it than the first", "x"]
    r = measure_token_cost(str(tiny_onnx), threads=1, lengths=(8,), batches=(1, 2), seconds=0.1, texts=texts)
    tok = Tokenizer.from_file(str(tiny_onnx / "tokenizer.json"))  # the library's own count, specials included
    want = sum(len(tok.encode(t).ids) for t in texts) / len(texts)
    assert r["mean_tokens"] == pytest.approx(want, abs=0.01) and r["texts"] == 3
    assert r["ceiling_texts_per_s"] == pytest.approx(1e6 / (r["floor"]["us_per_token"] * want), rel=1e-3)
    order = [len(tok.encode(t).ids) for t in texts]  # 2 at a time: the first pair padded to its longest
    assert r["padding_in_order"] == {"1": 1.0, "2": round((2 * max(order[:2]) + order[2]) / sum(order), 3)}
    (tmp_path / "t.json").write_text(json.dumps(texts))
    (tmp_path / "t.txt").write_text("\n".join(texts) + "\n\n")
    for f in ("t.json", "t.txt"):
        assert main([str(tiny_onnx), "--threads", "1", "--lengths", "8", "--batches", "1", "--seconds", "0.1",
                     "--texts", str(tmp_path / f)]) == 0
        out = capsys.readouterr().out
        assert f"your 3 texts average {want:.1f} tokens: at most " in out
        assert "padded / real tokens when they go in their order, each batch padded to its longest: 1 at a time " \
               "1.00x" in out


@pytest.mark.parametrize("content,name,message", [
    (None, "gone.json", "texts file not found: {p}"),
    ("{not json", "bad.json", "{p}: not JSON (Expecting property name enclosed in double quotes at line 1)"),
    ('{"a": 1}', "obj.json", "{p}: expected a JSON list of strings"),
    ("\n  \n", "empty.txt", "{p}: no texts"),
])
def test_a_bad_texts_file_is_one_line(tiny_onnx, tmp_path, capsys, content, name, message):
    p = tmp_path / name
    if content is not None:
        p.write_text(content)
    assert main([str(tiny_onnx), "--seconds", "0.1", "--lengths", "8", "--batches", "1", "--texts", str(p)]) == 2
    assert capsys.readouterr().err.strip() == "token_cost: error: " + message.format(p=p)
