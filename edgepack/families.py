"""What edgepack knows about each encoder family, in one place (standard library only: no torch here).

For each supported ``config.model_type``: where the encoder blocks live, the config fields that size
them, the submodules pruning cuts (attention output projection, FFN up/down), whether the model reads
``token_type_ids``, what head pruning and ONNX Runtime fusion can do with it, and LoRA's default target
modules. Stages (prune, distill, export, fine-tune) read this table instead of keeping their own.

Attention kinds: ModernBERT alternates global attention (every ``global_attn_every_n_layers``-th block,
counting from 0) with sliding-window ("local") attention, each kind with its own RoPE base. The kind is
fixed by a block's *position* when transformers builds the model from its config, so a model whose blocks
are taken from other positions (a distilled student, a model with dropped layers) keeps its blocks' kinds
only when some ``global_attn_every_n_layers`` reproduces them: :func:`attention_overrides` picks the value
that keeps the most (and names the blocks whose kind changes), :func:`kept_attention_config` insists on all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edgepack.errors import EdgepackError


@dataclass(frozen=True)
class Family:
    """Attribute paths relative to the base model (``model.base_model``) / one encoder block, and config fields."""

    layers: str  # base model -> nn.ModuleList of blocks
    attention: str  # block -> the attention module (its ``pruned_heads`` set where heads can be pruned)
    attn_out: str  # block -> Linear whose input is the concatenated per-head context (B, T, heads*dh)
    ffn_up: str  # block -> Linear hidden -> intermediate (2 * intermediate when ``ffn_gated``)
    ffn_down: str  # block -> Linear intermediate -> hidden
    layers_field: str = "num_hidden_layers"  # config field: number of blocks
    heads_field: str = "num_attention_heads"  # config field: heads per block
    ffn_field: str = "intermediate_size"  # config field: FFN width
    hidden_field: str = "hidden_size"  # config field: model width
    # Whether the model reads token_type_ids: True / False, or None when the config decides
    # (``type_vocab_size > 0``, DeBERTa-v2: v3 checkpoints have none).
    token_type_ids: bool | None = True
    ffn_gated: bool = False  # up projection emits [input | gate] halves (GLU): neuron n is rows n and I + n
    head_pruning: str | None = None  # None: ``model.prune_heads`` works; else why heads cannot be pruned
    # LoRA's default target modules where peft 0.21 has none for the model type (None: peft's default,
    # e.g. query/value for BERT, query_proj/value_proj for DeBERTa-v2); the attention's query and value.
    lora_targets: tuple[str, ...] | None = None
    # Head modules a ...ForSequenceClassification adds besides ``classifier`` (fresh on an encoder base):
    # LoRA trains and saves them with the adapter (peft's modules_to_save), else the adapter alone reloads
    # with a random one.
    head_modules: tuple[str, ...] = ()
    ort_fusion: str | None = "bert"  # onnxruntime.transformers optimizer model_type; None: no fusion
    attention_every_field: str | None = None  # config field of a global/local attention alternation
    block0_without_prenorm: bool = False  # block 0 has no attention pre-norm (the embeddings' norm feeds it)


_BERT = Family("encoder.layer", "attention", "attention.output.dense", "intermediate.dense", "output.dense")

FAMILIES: dict[str, Family] = {
    "bert": _BERT,
    "roberta": _BERT,
    "xlm-roberta": _BERT,
    "electra": _BERT,
    # MPNet: one relative-position bias (all heads) computed once for every layer; transformers' prune_heads
    # slices q/k/v/o but not that bias, so a model with pruned heads fails on its first forward.
    "mpnet": Family("encoder.layer", "attention", "attention.attn.o", "intermediate.dense", "output.dense",
                    token_type_ids=False, lora_targets=("q", "v"),
                    head_pruning="head pruning is not supported for mpnet: its relative position bias is shared "
                                 "by all layers with one head count (prune FFN neurons or layers instead)"),
    "distilbert": Family("transformer.layer", "attention", "attention.out_lin", "ffn.lin1", "ffn.lin2",
                         layers_field="n_layers", heads_field="n_heads", ffn_field="hidden_dim", hidden_field="dim",
                         token_type_ids=False, lora_targets=("q_lin", "v_lin"), head_modules=("pre_classifier",)),
    # DeBERTa-v2/v3: disentangled attention (content + relative-position projections share the head layout);
    # transformers does not implement prune_heads for it, so a pruned model would not reload. ORT's BERT
    # optimizer fuses only its Gelu (no Attention pattern); so for ModernBERT and MPNet.
    "deberta-v2": Family(
        "encoder.layer", "attention", "attention.output.dense", "intermediate.dense", "output.dense",
        token_type_ids=None, head_modules=("pooler",),
        head_pruning="head pruning is not supported for deberta-v2: transformers cannot prune or reload "
                     "pruned heads of its disentangled attention (prune FFN neurons or layers instead)",
        ort_fusion="bert"),
    # ModernBERT: pre-norm blocks in ``model.layers``, fused Wqkv, GLU feed-forward (Wi -> [input | gate]),
    # alternating global/local attention by block index. LoRA default: the fused Wqkv (query, key and value;
    # peft has no default for it).
    "modernbert": Family(
        "layers", "attn", "attn.Wo", "mlp.Wi", "mlp.Wo", token_type_ids=False, ffn_gated=True,
        head_pruning="head pruning is not supported for modernbert: its fused Wqkv and config hold one head "
                     "count for every layer (prune FFN neurons or layers instead)",
        lora_targets=("Wqkv",), head_modules=("head",), ort_fusion="bert",
        attention_every_field="global_attn_every_n_layers", block0_without_prenorm=True),
}
SUPPORTED_MODEL_TYPES = tuple(FAMILIES)


def family_of(model_type: str | None, purpose: str = "edgepack") -> Family:
    """The family of ``model_type``; one EdgepackError line naming the supported ones otherwise."""
    if model_type not in FAMILIES:
        raise EdgepackError(f"unsupported model type '{model_type}': {purpose} supports "
                            f"{', '.join(SUPPORTED_MODEL_TYPES)} encoders")
    return FAMILIES[model_type]


def _get(config: Any, name: str, default: Any = None) -> Any:
    return config.get(name, default) if isinstance(config, Mapping) else getattr(config, name, default)


def uses_token_type_ids(config: Any) -> bool:
    """Whether a model with this config (a transformers config or its dict) reads token_type_ids."""
    fam = family_of(_get(config, "model_type"))
    if fam.token_type_ids is None:
        return int(_get(config, "type_vocab_size", 0) or 0) > 0
    return fam.token_type_ids


def attention_kinds(config: Any) -> list[str] | None:
    """``"global"`` / ``"local"`` per block for families that alternate them; None for the others."""
    fam = family_of(_get(config, "model_type"))
    if fam.attention_every_field is None:
        return None
    every = int(_get(config, fam.attention_every_field))
    n = int(_get(config, fam.layers_field))
    return ["local" if i % every else "global" for i in range(n)]


def alternating_every(kinds: Sequence[str]) -> int | None:
    """The smallest ``every`` with block i global exactly when ``i % every == 0`` (None if no such value).

    A list that starts with a local block, or whose global blocks are not evenly spaced, has none. An
    all-global list gives 1; a global first block followed only by local ones gives ``len(kinds)``.
    """
    kinds = list(kinds)
    for every in range(1, max(len(kinds), 1) + 1):
        if all((k == "global") == (i % every == 0) for i, k in enumerate(kinds)):
            return every
    return None


def attention_overrides(config: Any, blocks: Sequence[int]) -> tuple[dict[str, int], list[int]]:
    """For a model built from the blocks ``blocks`` (in order) of a model with ``config`` (a distilled
    student copying teacher blocks): the config overrides under which the most blocks keep their attention
    kind when transformers builds it, and the new positions whose kind still changes (a block copied into
    such a position runs the other kind: another window and RoPE base). ``({}, [])`` for families without
    alternating attention. Ties go to the smallest ``every``.
    """
    kinds = attention_kinds(config)
    if kinds is None:
        return {}, []
    fam = family_of(_get(config, "model_type"))
    wanted = [kinds[j] for j in blocks]
    best = min(range(1, max(len(wanted), 1) + 1),
               key=lambda e: (sum((k == "global") != (i % e == 0) for i, k in enumerate(wanted)), e))
    changed = [i for i, k in enumerate(wanted) if (k == "global") != (i % best == 0)]
    return {fam.attention_every_field: best}, changed


def kept_attention_config(config: Any, blocks: Sequence[int]) -> dict[str, int]:
    """Config overrides so a model keeping the blocks ``blocks`` (in order) of a model with ``config``
    (layer dropping) reloads from its config exactly as it is: every block keeps its attention kind, and
    in a family whose block 0 has no attention pre-norm, block 0 stays first. ``{}`` for the other families.

    Raises EdgepackError (one line) when that cannot be.
    """
    fam = family_of(_get(config, "model_type"))
    if fam.block0_without_prenorm and list(blocks)[:1] != [0]:
        raise EdgepackError(f"{_get(config, 'model_type')} must keep block 0: it has no attention pre-norm, "
                            "so another block cannot take its place")
    overrides, changed = attention_overrides(config, blocks)
    if changed:
        kinds = attention_kinds(config)
        raise EdgepackError(
            f"blocks {list(blocks)} have attention kinds {[kinds[j] for j in blocks]}, which no "
            f"{fam.attention_every_field} reproduces (global blocks must be evenly spaced from block 0); "
            "keep other blocks")
    return overrides
