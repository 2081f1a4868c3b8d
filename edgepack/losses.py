"""Training losses: pure functions of tensors (TextBrewer style), combined by ``edgepack.objectives``.

Shapes: B batch, L sequence, C classes, H hidden size, A attention heads. ``mask`` is the attention
mask (B, L) with 1 for real tokens. Suffixes ``_S`` / ``_T`` mark student / teacher tensors. Every loss
returns a scalar tensor; weights are applied by the objective. torch is imported inside the functions.
"""

from __future__ import annotations

from typing import Any

_EPS = 1e-12


def kd_kl(logits_S: Any, logits_T: Any, temperature: float = 2.0) -> Any:
    """Soft-target KL(p_T || p_S) at temperature T, scaled by T^2 (Hinton et al. 2015).

    logits_S, logits_T: (B, C). Returns the batch mean of sum_c p_T,c (log p_T,c - log p_S,c) * T^2,
    so the gradient magnitude does not shrink as T grows.
    """
    import torch.nn.functional as F

    t = float(temperature)
    log_p_S = F.log_softmax(logits_S.float() / t, dim=-1)  # (B, C)
    log_p_T = F.log_softmax(logits_T.float() / t, dim=-1)  # (B, C)
    return F.kl_div(log_p_S, log_p_T, reduction="batchmean", log_target=True) * (t * t)


def hard_ce(logits_S: Any, labels: Any) -> Any:
    """Cross-entropy with the gold labels. logits_S: (B, C), labels: (B,) int64."""
    import torch.nn.functional as F

    return F.cross_entropy(logits_S.float(), labels)


def hidden_mse(h_S: Any, h_T: Any, mask: Any, proj: Any = None) -> Any:
    """Mean squared error between hidden states over real tokens (TinyBERT).

    h_S: (B, L, H_S), h_T: (B, L, H_T), mask: (B, L). ``proj`` (a learned ``nn.Linear(H_S, H_T)``)
    maps the student into the teacher's space when H_S != H_T. The mean is over real tokens and H_T.
    """
    if proj is not None:
        h_S = proj(h_S)  # (B, L, H_T)
    if h_S.shape[-1] != h_T.shape[-1]:
        raise ValueError(f"hidden sizes differ ({h_S.shape[-1]} vs {h_T.shape[-1]}) and no projection was given")
    m = mask.to(h_S.dtype).unsqueeze(-1)  # (B, L, 1)
    sq = (h_S.float() - h_T.float()) ** 2 * m  # (B, L, H_T)
    return sq.sum() / (m.sum() * h_T.shape[-1]).clamp_min(1.0)


def embedding_mse(e_S: Any, e_T: Any, mask: Any, proj: Any = None) -> Any:
    """MSE between embedding-layer outputs (hidden_states[0]); same shapes and rules as ``hidden_mse``."""
    return hidden_mse(e_S, e_T, mask, proj)


def attention_kl(a_S: Any, a_T: Any, mask: Any) -> Any:
    """KL(a_T || a_S) between attention distributions, averaged over heads and real query tokens (MiniLM).

    a_S: (B, A_S, L, L), a_T: (B, A_T, L, L): softmax attention probabilities. When head counts differ,
    both are averaged over heads first (one distribution per query token). mask: (B, L).
    """
    import torch

    if a_S.shape[1] != a_T.shape[1]:
        a_S, a_T = a_S.mean(1, keepdim=True), a_T.mean(1, keepdim=True)
    a_S, a_T = a_S.float(), a_T.float()
    kl = (a_T * (torch.log(a_T.clamp_min(_EPS)) - torch.log(a_S.clamp_min(_EPS)))).sum(-1)  # (B, A, L)
    q = mask.to(kl.dtype).unsqueeze(1)  # (B, 1, L): only rows of real query tokens count
    return (kl * q).sum() / (q.sum() * kl.shape[1]).clamp_min(1.0)


def mean_pool(hidden: Any, mask: Any) -> Any:
    """Mean of the hidden states over real tokens: hidden (B, L, H), mask (B, L) -> (B, H)."""
    m = mask.unsqueeze(-1).to(hidden.dtype)  # (B, L, 1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


def pool(hidden: Any, mask: Any, pooling: str = "mean") -> Any:
    """Sentence embedding as the runtime computes it before normalization: hidden (B, L, H) -> (B, H).

    pooling: "mean" (over real tokens, ``mean_pool``) or "cls" (the first token's hidden state).
    """
    if pooling == "cls":
        return hidden[:, 0]
    if pooling != "mean":
        raise ValueError(f"pooling must be 'mean' or 'cls', got {pooling!r}")
    return mean_pool(hidden, mask)


def pooled_mse(e_S: Any, e_T: Any) -> Any:
    """Mean squared error per element between sentence embeddings e_S, e_T: (B, H) (unnormalized, so the
    student also learns the teacher's embedding norms, which dot-product scores read)."""
    import torch.nn.functional as F

    return F.mse_loss(e_S.float(), e_T.float())


def cosine_distance(e_S: Any, e_T: Any) -> Any:
    """Batch mean of 1 - cos(e_S, e_T) between sentence embeddings e_S, e_T: (B, H)."""
    import torch.nn.functional as F

    return (1.0 - F.cosine_similarity(e_S.float(), e_T.float(), dim=-1)).mean()
