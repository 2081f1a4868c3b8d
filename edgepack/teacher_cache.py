"""Teacher outputs computed once per training run (distillation, pruning recovery), in memory or on disk.

The head output is always cached: logits (N, C), or for embedding models (``Needs(pooled=True)``) the
pooled last hidden state (N, H), mean or CLS (``Needs.pooling``), before any normalization. Hidden states, the embedding output and attention maps are cached
only for the layers the layer map uses, unpadded and in float16 (variable-length examples are stored
as one flat tensor plus offsets), then re-padded to each student batch's length. ``mode="disk"`` writes
``teacher_cache.safetensors`` and reads slices lazily, for runs whose features do not fit in RAM.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgepack import ranks
from edgepack.batching import Encoded, pad_batch, sorted_batches


@dataclass(frozen=True)
class Needs:
    """Which teacher outputs to keep: features by block index (0-based), and which head output.

    pooled: keep the pooled last hidden state (embedding models) instead of the logits, pooled as
    ``pooling`` says ("mean" or "cls", ``edgepack.losses.pool``; not normalized).
    """

    hidden: tuple[int, ...] = ()
    attention: tuple[int, ...] = ()
    embedding: bool = False
    pooled: bool = False
    pooling: str = "mean"

    @property
    def head(self) -> str:
        return "pooled" if self.pooled else "logits"

    @classmethod
    def from_matches(cls, matches: tuple) -> Needs:
        """What a layer map (``LayerMatch``-like objects: feature, layer_T) needs from a classifier teacher."""
        return cls(tuple(sorted({m.layer_T for m in matches if m.feature == "hidden"})),
                   tuple(sorted({m.layer_T for m in matches if m.feature == "attention"})),
                   any(m.feature == "embedding" for m in matches))


class TeacherCache:
    """Per-example teacher targets; ``targets(idx, L)`` returns padded float32 tensors for a batch:
    ``logits_T`` (B, C) or ``pooled_T`` (B, H), ``hidden_T_{l}`` (B, L, H), ``emb_T`` (B, L, H),
    ``attn_T_{l}`` (B, A, L, L)."""

    def __init__(self, tensors: dict[str, Any], needs: Needs, lengths: list[int], heads: int, reader: Any = None):
        self._t, self.needs, self.lengths, self.heads, self._reader = tensors, needs, lengths, heads, reader

    def _get(self, name: str, a: int, b: int) -> Any:
        if self._reader is not None:
            return self._reader.get_slice(name)[a:b]
        return self._t[name][a:b]

    def head_rows(self, idx: list[int]) -> Any:
        """The head output alone (``logits_T`` or ``pooled_T``) of examples ``idx``: (B, C) or (B, H) float32."""
        import torch

        return torch.stack([self._get(self.needs.head, i, i + 1)[0] for i in idx]).float()

    def targets(self, idx: list[int], L: int) -> dict:
        import torch

        out = {f"{self.needs.head}_T": self.head_rows(idx)}
        names = [f"hidden_{l}" for l in self.needs.hidden] + (["emb"] if self.needs.embedding else [])
        for name in names:
            off = self._offsets(name)
            rows = [self._get(name, int(off[i]), int(off[i + 1])) for i in idx]  # (l_i, H)
            pad = torch.zeros((len(idx), L, rows[0].shape[-1]))
            for r, x in enumerate(rows):
                pad[r, : x.shape[0]] = x.float()
            out[name.replace("hidden_", "hidden_T_") if name != "emb" else "emb_T"] = pad
        for l in self.needs.attention:
            off = self._offsets(f"attn_{l}")
            pad = torch.zeros((len(idx), self.heads, L, L))
            for r, i in enumerate(idx):
                n = self.lengths[i]
                pad[r, :, :n, :n] = self._get(f"attn_{l}", int(off[i]), int(off[i + 1])).float().view(self.heads, n, n)
            out[f"attn_T_{l}"] = pad
        return out

    def _offsets(self, name: str) -> Any:
        key = f"{name}_offsets"
        if key not in self._t:
            self._t[key] = self._reader.get_tensor(key)
        return self._t[key]


class ConcatCache:
    """Several caches as one: example ``i`` of the whole is example ``i - offset`` of the part holding it.

    Distillation keeps its training set's cache (shared by every student of the teacher) and caches a
    transfer set on its own, so adding or changing a transfer set never recomputes the training set's.
    """

    def __init__(self, parts: list[TeacherCache]):
        self.parts = parts
        self.starts = [0]
        for p in parts:
            self.starts.append(self.starts[-1] + len(p.lengths))
        self.needs, self.heads = parts[0].needs, parts[0].heads
        self.lengths = [n for p in parts for n in p.lengths]

    def targets(self, idx: list[int], L: int) -> dict:
        import torch

        by_part: dict[int, list[int]] = {}
        for r, i in enumerate(idx):
            k = next(k for k in range(len(self.parts)) if i < self.starts[k + 1])
            by_part.setdefault(k, []).append(r)
        out: dict = {}
        for k, rows in by_part.items():
            got = self.parts[k].targets([idx[r] - self.starts[k] for r in rows], L)
            for name, t in got.items():
                if name not in out:
                    out[name] = torch.zeros((len(idx), *t.shape[1:]), dtype=t.dtype)
                out[name][rows] = t
        return out


def build_cache(teacher: Any, enc: Encoded, needs: Needs, batch_size: int = 64, mode: str = "memory",
                path: Path | None = None, device: Any = None, progress: bool = True) -> TeacherCache:
    """Run ``teacher`` once over ``enc`` (eval mode, no grad) and keep what ``needs`` asks for.

    ``mode="disk"``: in the file ``path`` (``_on_disk``: written once, by the main process of a multi-process
    launch, read by every process); otherwise in memory, every process keeping its own copy."""
    if mode == "disk":
        if path is None:
            raise ValueError("mode='disk' needs a path")
        return _on_disk(teacher, enc, needs, batch_size, Path(path), device, progress, reuse=False)
    return TeacherCache(_teacher_outputs(teacher, enc, needs, batch_size, device, progress), needs, enc.lengths,
                        _num_heads(teacher))


def _on_disk(teacher: Any, enc: Encoded, needs: Needs, batch_size: int, path: Path, device: Any, progress: bool,
             reuse: bool) -> TeacherCache:
    """The teacher outputs in the file ``path``: written through a temp file of this process (concurrent runs
    never share one), by the main process alone under a multi-process launch (``edgepack.ranks``) while the
    others wait; ``reuse``: an existing file is kept. Every process then reads it."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    if ranks.is_main() and not (reuse and path.is_file()):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        save_file(_teacher_outputs(teacher, enc, needs, batch_size, device, progress), str(tmp))
        tmp.replace(path)
    ranks.wait_for_everyone()
    return TeacherCache({}, needs, enc.lengths, _num_heads(teacher), safe_open(str(path), framework="pt"))


def _teacher_outputs(teacher: Any, enc: Encoded, needs: Needs, batch_size: int, device: Any,
                     progress: bool) -> dict[str, Any]:
    """The tensors a TeacherCache reads: the head rows, and each feature's rows concatenated with offsets."""
    import torch
    from tqdm.auto import tqdm

    from edgepack.losses import pool

    teacher.eval()
    n = len(enc)
    head_rows = [None] * n
    feats: dict[str, list] = {f"hidden_{l}": [None] * n for l in needs.hidden}
    if needs.embedding:
        feats["emb"] = [None] * n
    for l in needs.attention:
        feats[f"attn_{l}"] = [None] * n
    want_h, want_a = bool(needs.hidden or needs.embedding), bool(needs.attention)
    with torch.inference_mode():
        for idx in tqdm(sorted_batches(enc.lengths, batch_size), desc="teacher cache", unit="batch",
                        disable=not (progress and ranks.is_main())):  # one bar per multi-process launch
            b = {k: v.to(device) if device is not None else v for k, v in pad_batch(enc, idx).items()}
            out = teacher(**b, output_hidden_states=want_h, output_attentions=want_a)
            head = pool(out.last_hidden_state, b["attention_mask"], needs.pooling) if needs.pooled else out.logits
            for r, i in enumerate(idx):
                k = enc.lengths[i]
                head_rows[i] = head[r].float().cpu()
                for l in needs.hidden:
                    feats[f"hidden_{l}"][i] = out.hidden_states[l + 1][r, :k].half().cpu()
                if needs.embedding:
                    feats["emb"][i] = out.hidden_states[0][r, :k].half().cpu()
                for l in needs.attention:
                    feats[f"attn_{l}"][i] = out.attentions[l][r, :, :k, :k].half().cpu().reshape(-1)
    tensors = {needs.head: torch.stack(head_rows)}
    for name, rows in feats.items():
        sizes = torch.tensor([0] + [x.shape[0] for x in rows])
        tensors[name] = torch.cat(rows).contiguous()
        tensors[f"{name}_offsets"] = torch.cumsum(sizes, 0)
    return tensors


def load_or_build_cache(teacher: Any, enc: Encoded, needs: Needs, cache_dir: Path, source: Any, cfg: Any,
                        device: Any = None) -> TeacherCache:
    """A disk cache in ``cache_dir`` keyed by the teacher's weights, the token ids and ``needs``."""
    import hashlib
    import json

    h = hashlib.sha256()
    weights = Path(source) / "model.safetensors"
    h.update(json.dumps([str(source), weights.stat().st_mtime_ns if weights.is_file() else 0,
                         needs.hidden, needs.attention, needs.embedding, needs.pooled, needs.pooling]).encode())
    for ids in enc.input_ids:
        h.update(bytes(str(ids), "ascii"))
    path = Path(cache_dir) / f"teacher_cache-{h.hexdigest()[:16]}.safetensors"
    return _on_disk(teacher, enc, needs, cfg.eval_batch_size, path, device, cfg.progress, reuse=True)


def _num_heads(teacher: Any) -> int:
    return int(getattr(teacher.config, "num_attention_heads", 0) or getattr(teacher.config, "n_heads", 0))
