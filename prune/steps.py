"""The pruning steps, by name, in the order they run; adding a step is one ``@register_step``.

A step is ``run(ctx)`` over a :class:`PruneContext` (the model being pruned in place, its tokenizer, the
config, the data, and the report it adds to), paired with ``wanted(cfg)`` which says whether the config
asks for it. Structured steps come first (layers, heads, FFN neurons: head and FFN scores are computed
once, on the model after layers are dropped), then the unstructured masks. Recovery and the final
evaluation are not steps: they run after all of them (``edgepack.prune.api.prune``).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgepack.prune.config import PruneConfig

from edgepack.errors import EdgepackError


@dataclass
class PruneContext:
    """What a step works on. ``data`` is the core ``edgepack.data.Dataset`` (``train_texts`` / ``train_labels``,
    labels already aligned to the model; see ``prune.api.resolve_data``)."""

    model: Any
    tokenizer: Any
    cfg: PruneConfig
    data: Any
    classifier: bool
    report: dict = field(default_factory=lambda: {"dropped_layers": [], "removed_heads": {}, "removed_ffn": {}})
    _scores: Any = None

    def scores(self) -> Any:
        """Head and FFN-neuron importance on a seeded sample of the training texts (computed once)."""
        if self._scores is None:
            from edgepack.prune import importance

            cfg, d = self.cfg, self.data
            method = cfg.importance if cfg.importance != "auto" else ("taylor" if self.classifier else "activation")
            # a seeded random subset, so an ordered training file still gives a mix of classes
            pick = random.Random(cfg.seed).sample(range(len(d.train_texts)),
                                                  min(cfg.importance_examples, len(d.train_texts)))
            labels = [d.train_labels[i] for i in pick] if d.train_labels is not None and self.classifier else None
            self._scores = importance.compute_importance(self.model, self.tokenizer, [d.train_texts[i] for i in pick],
                                                         labels, method, cfg.batch_size, cfg.max_length)
            self.report["importance"] = {"method": method, "examples": self._scores.examples}
        return self._scores


@dataclass(frozen=True)
class Step:
    name: str
    wanted: Callable[[PruneConfig], bool]
    run: Callable[[PruneContext], None]


STEPS: dict[str, Step] = {}


def register_step(name: str, wanted: Callable[[PruneConfig], bool]) -> Callable:
    """Decorator: run the function as step ``name`` (after those registered before it) when ``wanted(cfg)``."""
    def deco(fn: Callable[[PruneContext], None]) -> Callable[[PruneContext], None]:
        if name in STEPS:
            raise EdgepackError(f"pruning step {name!r} is already registered")
        STEPS[name] = Step(name, wanted, fn)
        return fn

    return deco


def get_step(name: str) -> Step:
    """The registered step ``name``; EdgepackError listing the known ones otherwise."""
    try:
        return STEPS[name]
    except KeyError:
        raise EdgepackError(f"unknown pruning step {name!r}; known: {', '.join(STEPS)}") from None


def run_steps(ctx: PruneContext) -> list[str]:
    """Run every step the config asks for, in registration order; returns their names."""
    ran = [s.name for s in STEPS.values() if s.wanted(ctx.cfg)]
    for name in ran:
        STEPS[name].run(ctx)
    ctx.report["steps"] = ran
    return ran


@register_step("layers", lambda c: bool(c.drop_layers))
def _drop_layers(ctx: PruneContext) -> None:
    from edgepack.prune import structured

    ctx.report["dropped_layers"] = structured.drop_layers(ctx.model, ctx.cfg.drop_layers)


@register_step("heads", lambda c: bool(c.head_fraction))
def _heads(ctx: PruneContext) -> None:
    from edgepack.prune import arch, structured

    arch.check_head_pruning(ctx.model)
    chosen = structured.select_heads(ctx.model, ctx.scores().heads, ctx.cfg.head_fraction, ctx.cfg.head_scope)
    ctx.report["removed_heads"] = structured.prune_heads(ctx.model, chosen)


@register_step("ffn", lambda c: bool(c.ffn_fraction))
def _ffn(ctx: PruneContext) -> None:
    from edgepack.prune import structured

    chosen = structured.select_ffn(ctx.scores().ffn, ctx.cfg.ffn_fraction, ctx.cfg.ffn_multiple_of)
    structured.prune_ffn(ctx.model, chosen)
    ctx.report["removed_ffn"] = chosen


@register_step("unstructured", lambda c: bool(c.sparsity))
def _magnitude(ctx: PruneContext) -> None:
    from edgepack.prune import unstructured

    unstructured.magnitude_prune(ctx.model, ctx.cfg.sparsity, ctx.cfg.include_embeddings)


@register_step("2:4", lambda c: c.semi_structured_24)
def _two_four(ctx: PruneContext) -> None:
    from edgepack.prune import unstructured

    unstructured.semi_structured_24(ctx.model)
