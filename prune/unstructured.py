"""Unstructured global magnitude pruning and 2:4 semi-structured masks (``torch.nn.utils.prune``).

The masks are applied with torch's pruning reparametrisation (``weight = weight_orig * weight_mask``),
so a recovery fine-tune keeps pruned weights at zero; ``make_permanent`` then folds the masks in.
Dense storage does not shrink by itself: ``sparse_bytes`` reports what a bitmask + non-zero-values
encoding needs, and the api measures the gzip size of the saved weights.
"""

from __future__ import annotations

from typing import Any

from edgepack.prune import arch

from edgepack.errors import EdgepackError


def target_weights(model: Any, include_embeddings: bool = False) -> list[tuple[Any, str]]:
    """The (module, "weight") pairs pruned by default: every nn.Linear inside the encoder layers
    (not the pooler or classifier head); optionally the word embedding matrix too."""
    import torch

    params = [(m, "weight") for layer in arch.layers(model) for m in layer.modules() if isinstance(m, torch.nn.Linear)]
    if include_embeddings:
        params.append((model.get_input_embeddings(), "weight"))
    return params


def magnitude_prune(model: Any, sparsity: float, include_embeddings: bool = False) -> float:
    """Zero the ``sparsity`` share of smallest-|w| weights across all target weights (one global
    threshold, ``prune.global_unstructured`` with L1Unstructured). Masks stay attached; returns the
    sparsity reached over the target weights."""
    from torch.nn.utils import prune

    if not 0.0 <= sparsity < 1.0:
        raise EdgepackError(f"sparsity must be in [0, 1), got {sparsity}")
    params = target_weights(model, include_embeddings)
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=float(sparsity))
    return target_sparsity(model, include_embeddings)


def mask_2to4(weight: Any) -> Any:
    """Boolean mask keeping the 2 largest-|w| of every 4 consecutive weights along the input dimension.

    weight: (out, in) with in % 4 == 0. Returns a bool tensor of the same shape.
    """
    import torch

    if weight.dim() != 2 or weight.shape[1] % 4:
        raise EdgepackError(f"2:4 sparsity needs a 2-D weight whose input size is a multiple of 4, got "
                            f"{tuple(weight.shape)}")
    groups = weight.detach().abs().reshape(weight.shape[0], -1, 4)  # (out, in/4, 4)
    top = groups.topk(2, dim=-1).indices
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, top, True)
    return mask.reshape(weight.shape)


def semi_structured_24(model: Any) -> float:
    """Apply a 2:4 mask to every target Linear weight (``prune.custom_from_mask``); returns sparsity (0.5)."""
    from torch.nn.utils import prune

    for module, name in target_weights(model):
        prune.custom_from_mask(module, name, mask_2to4(getattr(module, name)))
    return target_sparsity(model)


def make_permanent(model: Any) -> int:
    """Fold every pruning mask into its weight (``prune.remove``); returns how many were folded."""
    from torch.nn.utils import prune

    n = 0
    for module in model.modules():
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, prune.BasePruningMethod):
                prune.remove(module, hook._tensor_name)
                n += 1
    return n


def target_sparsity(model: Any, include_embeddings: bool = False) -> float:
    """Share of exactly-zero values over the target weights."""
    ws = [getattr(m, n) for m, n in target_weights(model, include_embeddings)]
    total = sum(w.numel() for w in ws)
    return float(sum(int((w == 0).sum()) for w in ws) / total) if total else 0.0


def sparsity_report(model: Any, include_embeddings: bool = False) -> dict:
    """Sparsity of the target weights and of the whole model, and the bytes of a sparse encoding.

    ``sparse_bytes``: fp32 non-zeros + a 1-bit-per-weight mask for the target weights, dense for the rest.
    """
    import math

    targets = {id(getattr(m, n)) for m, n in target_weights(model, include_embeddings)}
    total = zeros = sparse_bytes = 0
    for p in model.parameters():
        nz = int((p != 0).sum())
        total += p.numel()
        zeros += p.numel() - nz
        item = p.element_size()
        sparse_bytes += nz * item + math.ceil(p.numel() / 8) if id(p) in targets else p.numel() * item
    return {"target_sparsity": target_sparsity(model, include_embeddings),
            "model_sparsity": zeros / total if total else 0.0, "nonzero_params": total - zeros,
            "sparse_bytes": sparse_bytes}
