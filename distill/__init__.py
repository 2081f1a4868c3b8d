"""Teacher fine-tuning (full or LoRA) and knowledge distillation into a small student.

>>> from edgepack.distill import distill, finetune, DistillConfig, StudentConfig, example_spec
>>> teacher = finetune(BASE_DIR, example_spec(), FinetuneConfig(), "runs/teacher")
>>> student = distill(teacher.path, example_spec(), DistillConfig(student=StudentConfig(num_layers=3)), "runs/s3")

Training settings are ``edgepack.train.TrainConfig`` (the one training loop, shared with pruning recovery).
Importing this package is lean (no torch); the stage functions import torch when called.
"""

from edgepack.distill.api import distill
from edgepack.distill.configs import (
    DistillConfig,
    FinetuneConfig,
    LoraSettings,
    config_from_dict,
    config_to_dict,
)
from edgepack.distill.data import DataSpec, Dataset, example_spec, load_data
from edgepack.distill.finetune import finetune
from edgepack.distill.layer_map import LayerMatch, default_layer_map
from edgepack.distill.student import StudentConfig

__all__ = [
    "DataSpec", "Dataset", "DistillConfig", "FinetuneConfig", "LayerMatch", "LoraSettings", "StudentConfig",
    "config_from_dict", "config_to_dict", "default_layer_map", "distill", "example_spec",
    "finetune", "load_data",
]
