"""Stage command lines derived from the config dataclasses: defaults equal the dataclass defaults, every
field has an option (or is file-only), ``--config FILE`` (YAML or JSON) is used and flags override it."""

import argparse
import json

import pytest
from edgepack.pipeline.cli import build_parser, main

from edgepack.cli_config import config_from_args, config_leaves, show_default

# command -> its positional arguments; every stage command takes --config
STAGES = {
    ("finetune",): ["base", "out"],
    ("distill",): ["teacher", "out"],
    ("prune",): ["src", "out"],
    ("quantize",): ["src", "out"],
    ("quantize-torch",): ["src", "out"],
    ("export", "onnx"): ["src", "out"],
    ("export", "optimize"): ["src", "out"],
    ("export", "tensorrt"): ["src", "out"],
    ("export", "triton"): ["src", "out"],
}
# Options a stage adds beside its config (data, paths, devices): their defaults are the command's own.
NOT_CONFIG = {"help", "config", "data", "text_column", "text_pair_column", "label_column", "labels",
              "val_fraction", "max_examples", "lora", "teacher", "base_model", "batch", "seq", "calib_data", "device",
              "overwrite"}


def _parser(cmd: tuple[str, ...]) -> argparse.ArgumentParser:
    p = build_parser()
    for name in cmd:
        sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
        p = sub.choices[name]
    return p


def _args(cmd: tuple[str, ...], *extra: str) -> argparse.Namespace:
    return build_parser().parse_args([*cmd, *STAGES[cmd], *extra])


def _config(cmd: tuple[str, ...], args: argparse.Namespace):
    if cmd == ("export", "tensorrt"):
        from edgepack.export.gpu_cli import tensorrt_config

        return tensorrt_config(args, max_length=128)
    if cmd == ("finetune",):
        from edgepack.distill.cli import finetune_config

        return finetune_config(args)
    return config_from_args(args)


def _dataclass_default(cls, path: str):
    """The default of field ``path``, read off the dataclasses (a None nested config: its own defaults)."""
    import dataclasses
    import typing

    obj = cls()
    for name in path.split("."):
        value = getattr(obj, name)
        if value is None and name != path.rsplit(".", 1)[-1]:
            tp = next(a for a in typing.get_args(typing.get_type_hints(type(obj))[name]) if dataclasses.is_dataclass(a))
            value = tp()
        obj = value
    return obj


def _default_at(cfg, path: str):
    for name in path.split("."):
        cfg = getattr(cfg, name)
    return cfg


@pytest.mark.parametrize("cmd", list(STAGES), ids=" ".join)
def test_cli_defaults_are_the_dataclass_defaults(cmd):
    parser = _parser(cmd)
    spec = parser.get_default("_config")
    cls = spec.cls
    by_dest = {a.dest: a for a in parser._actions}
    for leaf in spec.leaves:
        action = by_dest[leaf.dest]
        assert action.default is None, f"{leaf.flag} restates a default"
        want = _dataclass_default(cls, leaf.path)
        assert leaf.default == want
        shown = action.help.replace("%%", "%")
        assert (f"default: {show_default(want)})" in shown or shown.endswith(f"default: {show_default(want)}")
                if want is not None else "default: " in shown), (leaf.flag, shown)
    # every option that is not a config field defaults to nothing the config holds
    for action in parser._actions:
        if action.option_strings and not action.dest.startswith("cfg__"):
            assert action.dest in NOT_CONFIG, f"{cmd}: {action.option_strings} is neither a config field nor listed"
    # nothing given: the stage runs the dataclass defaults
    cfg = _config(cmd, _args(cmd))
    if cmd == ("export", "tensorrt"):
        assert cfg.shapes.max_seq == 128  # the one default the command works out (the model's max_length)
    else:
        assert cfg == cls()


@pytest.mark.parametrize("cmd", list(STAGES), ids=" ".join)
def test_every_config_field_has_an_option(cmd):
    spec = _parser(cmd).get_default("_config")
    covered = {leaf.path for leaf in spec.leaves}
    file_only = {p for p, _, _ in config_leaves(spec.cls)} - covered
    assert file_only <= {"shapes.min_batch", "shapes.opt_batch", "shapes.max_batch", "shapes.min_seq",
                         "shapes.opt_seq", "shapes.max_seq"}  # export tensorrt: --batch / --seq


def test_help_shows_dataclass_defaults_and_keeps_examples(capsys):
    with pytest.raises(SystemExit):
        main(["distill", "--help"])
    out = capsys.readouterr().out
    assert "peak learning rate (default: 0.0001)" in out and "--config FILE" in out
    assert "edgepack distill runs/teacher runs/student3 --layers 3" in out  # the epilog still teaches
    with pytest.raises(SystemExit):
        main(["finetune", "--help"])
    assert "peak learning rate (default: 5e-05)" in capsys.readouterr().out


# (command, file contents, flags, {dotted path: expected value}) -- the file's values are used, flags win
ROUND_TRIPS = [
    (("finetune",), {"train": {"epochs": 1, "lr": 1e-3}, "lora": {"r": 4}}, ["--epochs", "2"],
     {"train.epochs": 2, "train.lr": 1e-3, "lora.r": 4}),
    (("distill",), {"student": {"num_layers": 2, "init": "truncated"}, "temperature": 3.0}, ["--layers", "1"],
     {"student.num_layers": 1, "student.init": "truncated", "temperature": 3.0}),
    (("prune",), {"ffn_fraction": 0.25, "recovery": {"steps": 5, "lr": 2e-5}},
     ["--heads", "0.5", "--drop-layers", "1,-1", "--recovery-steps", "9"],
     {"ffn_fraction": 0.25, "head_fraction": 0.5, "drop_layers": (1, -1), "recovery.steps": 9, "recovery.lr": 2e-5}),
    (("quantize",), {"methods": ["fp16"], "max_accuracy_drop": 0.5, "overrides": {"fp16": {"keep_io_types": False}}},
     ["--max-accuracy-drop", "2", "--exclude", "classifier"],
     {"methods": ("fp16",), "max_accuracy_drop": 2.0, "exclude.nodes": ("classifier",)}),
    (("quantize-torch",), {"method": "bnb-int8", "per_channel": False}, ["--method", "bnb-nf4"],
     {"method": "bnb-nf4", "per_channel": False}),
    (("export", "onnx"), {"opset": 17, "atol": 1e-3}, ["--opset", "18"], {"opset": 18, "atol": 1e-3}),
    (("export", "optimize"), {"opt_level": 2, "use_gpu": True}, ["--no-gpu"], {"opt_level": 2, "use_gpu": False}),
    (("export", "tensorrt"), {"precision": "int8", "shapes": {"max_batch": 64}, "seq_buckets": [32]},
     ["--batch", "1,4,16"], {"precision": "int8", "shapes.max_batch": 16, "shapes.max_seq": 128,
                             "seq_buckets": (32,)}),
    (("export", "triton"), {"model_name": "stu", "gpus": [0, 1], "max_batch_size": 16}, ["--preferred-batch", "2,8"],
     {"model_name": "stu", "gpus": (0, 1), "preferred_batch_sizes": (2, 8)}),
]


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
@pytest.mark.parametrize("cmd,data,flags,want", ROUND_TRIPS, ids=[" ".join(r[0]) for r in ROUND_TRIPS])
def test_config_file_is_used_and_flags_override(tmp_path, suffix, cmd, data, flags, want):
    f = tmp_path / f"cfg{suffix}"
    if suffix == ".yaml":
        yaml = pytest.importorskip("yaml")
        f.write_text(yaml.safe_dump(data))
    else:
        f.write_text(json.dumps(data))
    cfg = _config(cmd, _args(cmd, "--config", str(f), *flags))
    for path, value in want.items():
        assert _default_at(cfg, path) == value, path


def test_config_errors_are_one_line(tmp_path, capsys):
    f = tmp_path / "p.yaml"
    f.write_text("recovery:\n  stepz: 3\n")
    assert main(["prune", "a", "b", "--config", str(f)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgepack: error: unknown PruneConfig option(s) recovery.stepz; valid: ") and err.count("\n") == 1
    assert main(["prune", "a", "b", "--ffn", "-0.5"]) == 2
    assert capsys.readouterr().err == "edgepack: error: ffn_fraction must be in [0, 1), got -0.5\n"
    with pytest.raises(SystemExit):  # argparse's own choice check
        main(["distill", "a", "b", "--init", "copy"])
    assert "invalid choice: 'copy'" in capsys.readouterr().err
    assert main(["distill", "a", "b", "--layer-map", "[{"]) == 2
    assert capsys.readouterr().err.startswith("edgepack: error: --layer-map: cannot read '[{'")
    assert main(["export", "triton", "a", "b", "--gpus", "0,x"]) == 2
    assert capsys.readouterr().err == "edgepack: error: --gpus takes comma-separated integers, got '0,x'\n"
    f.write_text("- not a mapping\n")
    assert main(["export", "onnx", "a", "b", "--config", str(f)]) == 2
    assert "must hold a mapping of options, got list" in capsys.readouterr().err
    assert main(["quantize", "a", "b", "--config", str(tmp_path / "missing.json")]) == 2
    assert "cannot read config file" in capsys.readouterr().err
