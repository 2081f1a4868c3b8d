"""Importance of attention heads and FFN neurons, measured on real batches.

A gate of ones is multiplied into the input of each layer's attention output projection (one gate
per head, over that head's ``head_size`` channels) and of the FFN down projection (one per neuron).
Removing a unit is setting its gate to 0, so:

* ``taylor``: |dL/dgate| is the first-order Taylor estimate of the loss change from removing the unit
  (Michel et al., "Are Sixteen Heads Really Better than One?", 2019; Molchanov et al., 2019), summed
  over batches of |per-batch gradient|. L is cross-entropy on the gold labels (or on the model's own
  predictions when the data is unlabelled).
* ``activation``: mean |unit output| x the norm of its weights in the output projection: how much
  the unit writes into the residual stream (needs no labels; used for embedding models).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from edgepack.prune import arch

from edgepack.batching import batches
from edgepack.errors import EdgepackError


@dataclass
class Importance:
    """Per-layer scores: ``heads[i]`` (current heads of layer i,), ``ffn[i]`` (current neurons of layer i,)."""

    heads: list[Any]  # list of torch.Tensor, shape (n_heads_i,)
    ffn: list[Any]  # list of torch.Tensor, shape (intermediate_i,)
    method: str
    examples: int


def compute_importance(model: Any, tokenizer: Any, texts: Sequence[str], labels: Sequence[int] | None = None,
                       method: str = "taylor", batch_size: int = 16, max_length: int = 128) -> Importance:
    """Score every current head and FFN neuron of ``model`` on ``texts`` (higher = more important).

    ``taylor`` needs a classifier (labels optional); ``activation`` works for any encoder.
    The model's parameters are left untouched (no parameter gradients are computed).
    """
    import torch

    if not texts:
        raise EdgepackError("importance scoring needs at least one text")
    if method not in ("taylor", "activation"):
        raise EdgepackError(f"unknown importance method {method!r}: use 'taylor' or 'activation'")
    is_classifier = type(model).__name__.endswith("ForSequenceClassification")
    if method == "taylor" and not is_classifier:
        raise EdgepackError("taylor importance needs a classification model; use importance='activation' "
                            "for embedding (feature-extraction) models")
    fam, layer_list, dh = arch.family(model), arch.layers(model), arch.head_size(model)
    head_gates = [torch.ones(arch.heads_in_layer(model, i), requires_grad=True) for i in range(len(layer_list))]
    ffn_gates = [torch.ones(arch.ffn_size(model, i), requires_grad=True) for i in range(len(layer_list))]
    head_scores = [torch.zeros_like(g) for g in head_gates]
    ffn_scores = [torch.zeros_like(g) for g in ffn_gates]
    state: dict[str, Any] = {"mask": None}

    def gate_hook(gate, width, scores):
        def hook(module, inputs):
            x = inputs[0]  # (B, T, units * width)
            if method == "activation":
                with torch.no_grad():
                    B, T, _ = x.shape
                    mag = x.detach().view(B, T, -1, width).norm(dim=-1)  # (B, T, units)
                    m = state["mask"].unsqueeze(-1).to(mag.dtype)  # (B, T, 1)
                    w = module.weight.detach().view(module.out_features, -1, width).norm(dim=(0, 2))  # (units,)
                    scores.add_((mag * m).sum(dim=(0, 1)) / m.sum() * w)
                return None
            return (x * gate.repeat_interleave(width),) + tuple(inputs[1:])
        return hook

    handles = []
    for i, layer in enumerate(layer_list):
        handles.append(arch.get_path(layer, fam.attn_out).register_forward_pre_hook(
            gate_hook(head_gates[i], dh, head_scores[i])))
        handles.append(arch.get_path(layer, fam.ffn_down).register_forward_pre_hook(
            gate_hook(ffn_gates[i], 1, ffn_scores[i])))
    was_training = model.training
    grad_flags = [p.requires_grad for p in model.parameters()]
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        for enc, y in batches(tokenizer, texts, labels, batch_size, max_length):
            state["mask"] = enc["attention_mask"]
            if method == "activation":
                with torch.no_grad():
                    model(**enc)
                continue
            logits = model(**enc).logits
            target = y if y is not None else logits.argmax(-1).detach()
            loss = torch.nn.functional.cross_entropy(logits, target)
            grads = torch.autograd.grad(loss, head_gates + ffn_gates)
            for s, g in zip(head_scores + ffn_scores, grads):
                s.add_(g.abs())
    finally:
        for h in handles:
            h.remove()
        for p, flag in zip(model.parameters(), grad_flags):
            p.requires_grad_(flag)
        model.train(was_training)
    return Importance([s.detach() for s in head_scores], [s.detach() for s in ffn_scores], method, len(texts))
