"""The pass-config contract: every stage config checks itself with a one-line message naming the field,
and the dict converter names the key path of a nested error. No torch needed."""

import json

import pytest
from edgepack.distill.configs import DistillConfig, FinetuneConfig, LoraSettings
from edgepack.distill.layer_map import LayerMatch
from edgepack.distill.student import StudentConfig
from edgepack.export.fusion import FusionConfig
from edgepack.export.onnx_export import OnnxExportConfig
from edgepack.export.triton_repo import TritonConfig
from edgepack.export.trt_engine import TrtBuildConfig
from edgepack.prune.config import PruneConfig, RecoveryConfig
from edgepack.quantize.config import (
    CalibrationConfig,
    DynamicInt8Config,
    Exclusions,
    Fp16Config,
    MixedInt8Config,
    QuantizeConfig,
    StaticInt8Config,
)
from edgepack.quantize.torch_quant import TorchQuantConfig

from edgepack.config import ConfigError, config_from_dict, config_to_dict
from edgepack.contract import ShapeRange
from edgepack.errors import EdgepackError
from edgepack.train import TrainConfig

# (config class, bad keyword arguments, the exact message)
BAD_VALUES = [
    (TrainConfig, {"lr": 0.0}, "lr must be > 0, got 0.0"),
    (TrainConfig, {"lr": "fast"}, "lr must be a number, got str 'fast'"),
    (TrainConfig, {"epochs": -1}, "epochs must be >= 0, got -1"),
    (TrainConfig, {"epochs": 2.5}, "epochs must be an integer, got float 2.5"),
    (TrainConfig, {"batch_size": 0}, "batch_size must be >= 1, got 0"),
    (TrainConfig, {"warmup_ratio": 1.0}, "warmup_ratio must be in [0, 1), got 1.0"),
    (TrainConfig, {"mixed_precision": "fp8"}, "mixed_precision must be one of auto, no, fp16, bf16, got 'fp8'"),
    (TrainConfig, {"progress": "yes"}, "progress must be true or false, got str 'yes'"),
    (TrainConfig, {"max_steps": 0}, "max_steps must be >= 1, got 0"),
    (LoraSettings, {"r": 0}, "r must be >= 1, got 0"),
    (LoraSettings, {"quantize_base": "2bit"}, "quantize_base must be one of 8bit, 4bit, got '2bit'"),
    (LoraSettings, {"target_modules": "query"}, "target_modules must be a list, got str 'query'"),
    (FinetuneConfig, {"merge_tolerance": -1.0}, "merge_tolerance must be > 0, got -1.0"),
    (StudentConfig, {"init": "copy"}, "init must be one of teacher-layers, truncated, random, pretrained, got 'copy'"),
    (StudentConfig, {"num_layers": 0}, "num_layers must be >= 1, got 0"),
    (StudentConfig, {"num_layers": 2, "layers": (1,)}, "layers must name num_layers (2) teacher blocks, got [1]"),
    (StudentConfig, {"layers": (0, -1, 2)}, "layers must be teacher block indices >= 0, got [0, -1, 2]"),
    (DistillConfig, {"alpha_kd": 1.5}, "alpha_kd must be in [0, 1], got 1.5"),
    (DistillConfig, {"temperature": 0}, "temperature must be > 0, got 0"),
    (DistillConfig, {"features": ("logits",)}, "features must be one of hidden, attention, embedding, got 'logits'"),
    (DistillConfig, {"cache": "gpu"}, "cache must be one of memory, disk, none, got 'gpu'"),
    (DistillConfig, {"student": {"init": "copy"}}, "student must be StudentConfig, got dict {'init': 'copy'}"),
    (LayerMatch, {"layer_T": 1, "layer_S": -1}, "layer_S must be >= 0, got -1"),
    (PruneConfig, {"ffn_fraction": -0.5}, "ffn_fraction must be in [0, 1), got -0.5"),
    (PruneConfig, {"head_fraction": 1.0}, "head_fraction must be in [0, 1), got 1.0"),
    (PruneConfig, {"sparsity": "half"}, "sparsity must be a number, got str 'half'"),
    (PruneConfig, {"head_scope": "model"}, "head_scope must be one of global, layer, got 'model'"),
    (PruneConfig, {"importance": "random"}, "importance must be one of auto, taylor, activation, got 'random'"),
    (PruneConfig, {"drop_layers": (1, 1)}, "drop_layers has duplicates: [1, 1]"),
    (PruneConfig, {"drop_layers": ("1",)}, "drop_layers[0] must be an integer, got str '1'"),
    (PruneConfig, {"sparsity": 0.5, "semi_structured_24": True},
     ("semi_structured_24 cannot be combined with sparsity: choose either sparsity (unstructured) or "
     "semi_structured_24, not both")),
    (PruneConfig, {"eval_examples": 0}, "eval_examples must be >= 1, got 0"),
    (RecoveryConfig, {"steps": -3}, "steps must be >= 0, got -3"),
    (RecoveryConfig, {"alpha_kd": 2.0}, "alpha_kd must be in [0, 1], got 2.0"),
    (RecoveryConfig, {"max_length": 1}, "max_length must be >= 2, got 1"),
    (Exclusions, {"nodes": "classifier"}, "nodes must be a list, got str 'classifier'"),
    (DynamicInt8Config, {"weight_type": "int4"}, "weight_type must be one of qint8, quint8, got 'int4'"),
    (DynamicInt8Config, {"target_cpu": "x86"}, "target_cpu must be one of auto, avx2, avx512-vnni, arm64, got 'x86'"),
    (CalibrationConfig, {"num_samples": 0}, "num_samples must be >= 1, got 0"),
    (StaticInt8Config, {"method": "kl"}, "method must be one of minmax, entropy, percentile, got 'kl'"),
    (StaticInt8Config, {"percentile": 20.0}, "percentile must be in (50, 100], got 20.0"),
    (StaticInt8Config, {"smooth_alpha": 1.5}, "smooth_alpha must be in [0, 1], got 1.5"),
    (StaticInt8Config, {"symmetric_activations": True}, "symmetric_activations needs activation_type 'qint8'"),
    (MixedInt8Config, {"max_float_fraction": 0.0}, "max_float_fraction must be in (0, 1], got 0.0"),
    (MixedInt8Config, {"max_trials": 1}, "max_trials must be >= 2, got 1"),
    (MixedInt8Config, {"target_cpu": "x86"}, "target_cpu must be one of auto, avx2, avx512-vnni, arm64, got 'x86'"),
    (Fp16Config, {"keep_io_types": 1}, "keep_io_types must be true or false, got int 1"),
    (QuantizeConfig, {"methods": ("int3",)},
     ("methods has unknown quantization method(s) 'int3'; known: dynamic-int8, dynamic-int8-per-tensor, "
     "dynamic-int8-mixed, static-int8-minmax, static-int8-entropy, static-int8-percentile, static-int8-smooth, "
     "static-int8-trt, fp16")),
    (QuantizeConfig, {"methods": ()}, "methods must name at least one quantization method"),
    (QuantizeConfig, {"max_accuracy_drop": -1}, "max_accuracy_drop must be >= 0, got -1"),
    (QuantizeConfig, {"latency_rounds": 0}, "latency_rounds must be >= 1, got 0"),
    (QuantizeConfig, {"overrides": {"int3": {}}},
     ("overrides names unknown quantization method 'int3'; known: dynamic-int8, dynamic-int8-per-tensor, "
     "dynamic-int8-mixed, static-int8-minmax, static-int8-entropy, static-int8-percentile, static-int8-smooth, "
     "static-int8-trt, fp16")),
    (QuantizeConfig, {"overrides": {"static-int8-minmax": {"method": "kl"}}},
     "overrides.static-int8-minmax.method must be one of minmax, entropy, percentile, got 'kl'"),
    (TorchQuantConfig, {"method": "int2"}, "method must be one of torch-dynamic-int8, bnb-int8, bnb-nf4, got 'int2'"),
    (OnnxExportConfig, {"opset": 9}, "opset must be >= 11, got 9"),
    (OnnxExportConfig, {"task": "ner"}, "task must be one of text-classification, feature-extraction, got 'ner'"),
    (OnnxExportConfig, {"atol": 0.0}, "atol must be > 0, got 0.0"),
    (FusionConfig, {"opt_level": 3}, "opt_level must be one of 0, 1, 2, 99, got 3"),
    (TritonConfig, {"instance_kind": "tpu"}, "instance_kind must be one of gpu, cpu, auto, got 'tpu'"),
    (TritonConfig, {"instance_count": 0}, "instance_count must be >= 1, got 0"),
    (TritonConfig, {"gpus": (0, -1)}, "gpus must be GPU ids >= 0, got [0, -1]"),
    (TritonConfig, {"ort_trt_accelerator": "INT8"}, "ort_trt_accelerator must be one of FP32, FP16, got 'INT8'"),
    (TrtBuildConfig, {"precision": "int4"}, "precision must be one of fp32, fp16, int8, got 'int4'"),
    (TrtBuildConfig, {"optimization_level": 7}, "optimization_level must be in 0..5, got 7"),
    (TrtBuildConfig, {"workspace_mb": 8}, "workspace_mb must be >= 16, got 8"),
    (TrtBuildConfig, {"seq_buckets": (0, 64)}, "seq_buckets must be sequence lengths >= 1, got [0, 64]"),
    (ShapeRange, {"min_batch": 8, "opt_batch": 1}, ("batch lengths must satisfy 1 <= min <= opt <= max; "
                                                   "got min=8 opt=1 max=32")),
]


@pytest.mark.parametrize("cls,kwargs,message", BAD_VALUES, ids=[f"{c.__name__}-{'-'.join(k)}" for c, k, _ in BAD_VALUES])
def test_bad_value_is_one_line_naming_the_field(cls, kwargs, message):
    with pytest.raises(EdgepackError) as e:
        cls(**kwargs)
    assert str(e.value) == message


def test_every_stage_config_is_frozen_and_builds_with_defaults():
    import dataclasses

    for cls in {c for c, _, _ in BAD_VALUES} - {LayerMatch}:
        cfg = cls()
        name = dataclasses.fields(cfg)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(cfg, name, getattr(cfg, name))


@pytest.mark.parametrize("cls,data,message", [
    (DistillConfig, {"student": {"bogus": 1}},
     ("unknown DistillConfig option(s) student.bogus; valid: hidden_size, init, intermediate_size, layers, model, "
     "num_heads, num_layers")),
    (DistillConfig, {"student": {"init": "copy"}},
     "student.init must be one of teacher-layers, truncated, random, pretrained, got 'copy'"),
    (DistillConfig, {"train": {"lr": "fast"}}, "train.lr must be a number, got str 'fast'"),
    (DistillConfig, {"train": 3}, "train: TrainConfig needs a mapping, got int"),
    (DistillConfig, {"layer_map": [{"layer_T": 1}]}, "layer_map[0]: missing required option(s) layer_S"),
    (DistillConfig, {"layer_map": [{"layer_T": 1, "layer_S": 0, "feature": "logits"}]},
     "layer_map[0].feature must be one of hidden, attention, embedding, got 'logits'"),
    (PruneConfig, {"recovery": {"lr": -1.0}}, "recovery.lr must be > 0, got -1.0"),
    (PruneConfig, {"recovery": {"stepz": 3}},
     ("unknown PruneConfig option(s) recovery.stepz; valid: alpha_kd, batch_size, checkpoint_every, "
     "freeze_embeddings, lr, max_length, seed, steps, temperature, warmup_ratio, weight_decay")),
    (FinetuneConfig, {"lora": {"r": 0}}, "lora.r must be >= 1, got 0"),
    (QuantizeConfig, {"exclude": {"nodes": "classifier"}}, "exclude.nodes must be a list, got str 'classifier'"),
    (TrtBuildConfig, {"shapes": {"min_seq": 9, "opt_seq": 4}},
     "shapes: sequence lengths must satisfy 1 <= min <= opt <= max; got min=9 opt=4 max=128"),
])
def test_converter_names_the_key_path(cls, data, message):
    with pytest.raises(ConfigError) as e:
        config_from_dict(cls, data)
    assert str(e.value) == message


def test_converter_round_trips_and_reads_yaml_style_floats():
    cfgs = [DistillConfig(student=StudentConfig(num_layers=2, layers=(1, 4)), features=("hidden",),
                          layer_map=(LayerMatch(5, 1, "hidden", 0.5),)),
            FinetuneConfig(lora=LoraSettings(r=4, target_modules=("query", "value"))),
            PruneConfig(drop_layers=(1, -1), recovery=RecoveryConfig(steps=3)),
            QuantizeConfig(overrides={"dynamic-int8": {"per_channel": False}}),
            QuantizeConfig(target_cpu="avx2", overrides={"dynamic-int8-mixed": {"max_trials": 4},
                                                         "static-int8-trt": {"smooth_alpha": 0.5}}),
            MixedInt8Config(base=DynamicInt8Config(reduce_range=True), calibration=CalibrationConfig(num_samples=8)),
            TrtBuildConfig(shapes=ShapeRange(1, 4, 8, 1, 32, 64), seq_buckets=(32,)),
            TritonConfig(gpus=(0, 1)), OnnxExportConfig(task="feature-extraction"), FusionConfig(use_gpu=True),
            TorchQuantConfig(skip_modules=())]
    for cfg in cfgs:
        assert config_from_dict(type(cfg), json.loads(json.dumps(config_to_dict(cfg)))) == cfg
    # PyYAML reads 1e-4 (no dot) as a string
    assert config_from_dict(DistillConfig, {"train": {"lr": "1e-4"}}).train.lr == 1e-4
    assert PruneConfig(drop_layers=[2, 3]).drop_layers == (2, 3)  # lists become tuples (hashable, equal)


def test_distill_trains_the_student_at_the_cli_rate():
    """The CLI no longer restates a different learning rate: the dataclass holds the student's default."""
    assert DistillConfig().train.lr == 1e-4 and FinetuneConfig().train.lr == TrainConfig().lr == 5e-5
