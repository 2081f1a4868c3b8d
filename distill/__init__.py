"""Teacher fine-tuning (full or LoRA) and knowledge distillation into a small student.

>>> from edgepack.data import example_spec
>>> from edgepack.distill import distill, finetune, DistillConfig, StudentConfig
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
)
from edgepack.distill.finetune import finetune
from edgepack.distill.layer_map import LayerMatch, default_layer_map
from edgepack.distill.student import StudentConfig

__all__ = [
    "DistillConfig", "FinetuneConfig", "LayerMatch", "LoraSettings", "StudentConfig",
    "default_layer_map", "distill", "finetune",
]
