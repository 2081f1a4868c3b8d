"""Distillation end to end on tiny random models: loss falls, resume is exact, cache modes agree."""


import pytest

torch = pytest.importorskip("torch")

from edgepack.distill.api import distill
from edgepack.distill.configs import DistillConfig
from edgepack.distill.student import StudentConfig

from edgepack.artifact import Artifact
from edgepack.data import DataSpec
from edgepack.errors import EdgepackError
from edgepack.testing import make_tiny_model, write_labelled_csv
from edgepack.train import TrainConfig


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("kd")
    teacher = make_tiny_model(d / "teacher", layers=4, labels=["neg", "pos"], seed=3)
    write_labelled_csv(d / "data.csv", 64)
    return teacher, DataSpec(path=str(d / "data.csv"), val_fraction=0.2)


def _weights(art: Artifact) -> dict:
    from safetensors.torch import load_file

    return load_file(art.file("weights"))


def test_distill_artifact_and_loss_falls(setup, tmp_path):
    teacher, data = setup
    student = StudentConfig(num_layers=2, hidden_size=16, num_heads=2, intermediate_size=32, init="random")
    cfg = DistillConfig(student=student, features=("hidden", "attention", "embedding"),
                        train=TrainConfig(epochs=4, batch_size=8, lr=3e-3, progress=False))
    art = distill(teacher, data, cfg, tmp_path / "s")
    m = art.metrics
    losses = [h["train_loss"] for h in m["history"]]
    assert losses[-1] < 0.7 * losses[0], losses
    assert m["params"] < m["teacher_params"] and m["size_bytes"] < m["teacher_size_bytes"]
    assert 0 <= m["accuracy"] <= 1 and "teacher_accuracy" in m and "agreement" in m
    assert art.stage == "distill" and art.format == "hf" and art.labels == ["neg", "pos"]
    assert art.extra["student_layers_from_teacher"] == []  # random init
    assert [(x["layer_T"], x["layer_S"]) for x in art.extra["layer_map"] if x["feature"] == "hidden"] == [(1, 0), (3, 1)]
    assert not (tmp_path / ".s.work").exists()  # work dir removed after success
    from edgepack.hf import load_model

    lm = load_model(art.path)
    assert lm.model.config.num_hidden_layers == 2 and lm.labels == ["neg", "pos"]


class Killed(Exception):
    pass


def _kill_at(n):
    def hook(step):
        if step == n:
            raise Killed(f"simulated kill at step {n}")
    return hook


@pytest.mark.parametrize("grad_accum", [1, 2])
def test_resume_after_interrupt_matches_uninterrupted(setup, tmp_path, grad_accum):
    teacher, data = setup
    cfg = DistillConfig(student=StudentConfig(num_layers=2, hidden_size=16, num_heads=2, init="truncated"),
                        features=("hidden",), train=TrainConfig(epochs=2, batch_size=8, lr=1e-3, grad_accum=grad_accum,
                                                                checkpoint_every=2, progress=False))
    ref = distill(teacher, data, cfg, tmp_path / "ref")
    # kill mid-epoch-2 (epoch 1 has 7 batches = 7 or 4 steps): the last checkpoint is an earlier step
    kill = 9 if grad_accum == 1 else 7
    with pytest.raises(Killed):
        distill(teacher, data, cfg, tmp_path / "run", on_step=_kill_at(kill))
    assert (tmp_path / ".run.work" / "checkpoint" / "state.json").is_file()
    assert not (tmp_path / "run").exists()
    got = distill(teacher, data, cfg, tmp_path / "run")
    w_ref, w_got = _weights(ref), _weights(got)
    assert w_ref.keys() == w_got.keys()
    for k in w_ref:
        torch.testing.assert_close(w_got[k], w_ref[k], atol=1e-6, rtol=0)
    assert got.metrics["history"] == ref.metrics["history"]
    assert got.metrics["resumed_from_step"] == (8 if grad_accum == 1 else 6) and ref.metrics["resumed_from_step"] == 0


def test_checkpoint_of_another_run_is_refused(setup, tmp_path):
    teacher, data = setup
    cfg = DistillConfig(student=StudentConfig(num_layers=1), train=TrainConfig(epochs=1, batch_size=8,
                                                                               checkpoint_every=1, progress=False))
    with pytest.raises(Killed):
        distill(teacher, data, cfg, tmp_path / "x", on_step=_kill_at(2))
    other = DistillConfig(student=StudentConfig(num_layers=1), temperature=4.0, train=cfg.train)
    with pytest.raises(EdgepackError, match="holds a checkpoint of a different run"):
        distill(teacher, data, other, tmp_path / "x")


def test_disk_cache_gives_the_same_student(setup, tmp_path):
    teacher, data = setup
    base = DistillConfig(student=StudentConfig(num_layers=1), features=("hidden", "attention"),
                         train=TrainConfig(epochs=1, batch_size=8, max_steps=4, progress=False))
    a = distill(teacher, data, base, tmp_path / "mem")
    b = distill(teacher, data, DistillConfig(**{**base.__dict__, "cache": "disk"}), tmp_path / "disk")
    shared = tmp_path / "shared"
    c1 = distill(teacher, data, base, tmp_path / "c1", cache_dir=shared)
    stamp = {p.name: p.stat().st_mtime_ns for p in shared.iterdir()}
    c2 = distill(teacher, data, base, tmp_path / "c2", cache_dir=shared)  # reuses the file
    assert len(stamp) == 1 and {p.name: p.stat().st_mtime_ns for p in shared.iterdir()} == stamp
    for other in (b, c1, c2):
        for k, v in _weights(a).items():
            torch.testing.assert_close(_weights(other)[k], v, atol=1e-6, rtol=0)


def test_distill_errors(setup, tmp_path, tiny_encoder):
    teacher, data = setup
    with pytest.raises(EdgepackError, match="'alpha_kd' applies to text-classification teachers"):
        distill(tiny_encoder, data, DistillConfig(alpha_kd=0.5), tmp_path / "e")  # embedding teacher
    with pytest.raises(EdgepackError, match="unknown label"):
        distill(teacher, DataSpec(path=data.path, labels=("a", "b")), DistillConfig(), tmp_path / "e")
    with pytest.raises(EdgepackError, match="out of range"):
        from edgepack.distill.layer_map import LayerMatch

        distill(teacher, data, DistillConfig(student=StudentConfig(num_layers=2), layer_map=(LayerMatch(7, 0),)),
                tmp_path / "e")


def test_unlabeled_data_is_labelled_by_the_teacher(setup, tmp_path):
    teacher, data = setup
    cfg = DistillConfig(student=StudentConfig(num_layers=1), train=TrainConfig(epochs=1, batch_size=8, progress=False))
    art = distill(teacher, DataSpec(path=data.path, label_column=None), cfg, tmp_path / "u")
    assert art.labels == ["neg", "pos"]
    # with no gold labels the validation "accuracy" is agreement with the teacher (teacher scores 1.0)
    assert art.metrics["teacher_accuracy"] == 1.0 and art.metrics["accuracy"] == art.metrics["agreement"]
