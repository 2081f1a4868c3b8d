"""The one training loop (fine-tuning, distillation, pruning recovery), on one CPU/GPU or many through accelerate.

``train(objective, lengths, collate, eval_fn, cfg, work_dir)`` runs AdamW with linear warm-up/decay,
gradient accumulation, gradient clipping, mixed precision on CUDA, evaluation every epoch (accuracy and
macro-F1; optional), best-checkpoint selection, early stopping, and a tqdm bar (loss, examples/s, ETA).
``cfg.max_steps`` makes the run step-based (it overrides ``epochs``, as in transformers' Trainer).

Resume: every ``checkpoint_every`` optimizer steps (and at each epoch end) ``work_dir/checkpoint``
is replaced atomically with the objective's weights (safetensors), the optimizer state
(``torch.load(weights_only=True)``-safe), the torch RNG state and a JSON state (step, epoch, batch,
scheduler, history, best). Batch order is a pure function of (seed, epoch), so a run killed at any
point and restarted with the same arguments skips the batches already done and reaches the same
weights as an uninterrupted run.

Multi-GPU (data parallel): run the same script or CLI under accelerate, e.g.
``accelerate launch --multi_gpu --num_processes 4 -m edgepack distill TEACHER OUT --epochs 3``;
each process takes a shard of every epoch's batches, gradients are all-reduced, evaluation runs on
every process over the whole validation set, and only the main process writes checkpoints (and, through
``ArtifactWriter``, the stage's artifact: ``edgepack.ranks``).

Importing this module is lean (torch, accelerate and transformers are imported by ``train``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgepack.batching import batch_plan
from edgepack.config import (
    check_choice,
    check_fields,
    check_fraction,
    check_min,
    check_positive,
    config_to_dict,
)
from edgepack.errors import EdgepackError

MIXED_PRECISION = ("auto", "no", "fp16", "bf16")


@dataclass(frozen=True)
class TrainConfig:
    """Settings of the training loop (fine-tuning, distillation and pruning recovery share it).

    batch_size is per optimizer micro-step; the effective batch is batch_size * grad_accum * processes.
    warmup_ratio: fraction of optimizer steps with linear warm-up, then linear decay to 0.
    max_steps: train exactly this many optimizer steps, as many epochs as that takes (overrides epochs).
    checkpoint_every: save a resumable checkpoint every N optimizer steps (0 = only at epoch ends).
    patience: stop after this many epochs without a better validation accuracy (0 = never).
    mixed_precision: "auto" (bf16/fp16 on CUDA, none on CPU), "no", "fp16" or "bf16".
    """

    epochs: int = 3
    batch_size: int = 32
    eval_batch_size: int = 64
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    grad_accum: int = 1
    max_grad_norm: float = 1.0
    max_length: int = 128
    seed: int = 0
    checkpoint_every: int = 0
    patience: int = 0
    mixed_precision: str = "auto"
    max_steps: int | None = None
    freeze_embeddings: bool = False  # keep word embeddings fixed (faster on CPU, little accuracy cost)
    progress: bool = True

    def __post_init__(self) -> None:
        check_fields(self)
        check_min(self, 0, "epochs", "seed", "checkpoint_every", "patience", "weight_decay")
        check_min(self, 1, "batch_size", "eval_batch_size", "grad_accum", "max_steps")
        check_min(self, 2, "max_length")
        check_positive(self, "lr", "max_grad_norm")
        check_fraction(self, "warmup_ratio")
        check_choice(self, "mixed_precision", MIXED_PRECISION)


@dataclass
class TrainResult:
    history: list[dict] = field(default_factory=list)  # one dict per epoch: train_loss, accuracy, macro_f1, ...
    best: dict = field(default_factory=dict)
    steps: int = 0
    seconds: float = 0.0
    examples_per_s: float = 0.0
    resumed_from_step: int = 0


def work_dir_for(out: Path) -> Path:
    """Checkpoints live beside a stage's output (``.NAME.work``) so a re-run with the same out resumes."""
    return out.parent / f".{out.name}.work"


def _mixed_precision(mode: str) -> str:
    import torch

    if mode == "auto":
        if not torch.cuda.is_available():
            return "no"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return mode


def train(objective: Any, lengths: list[int], collate: Callable[[list[int]], dict],
          eval_fn: Callable[[Any], dict] | None, cfg: TrainConfig, work_dir: Path,
          fingerprint: dict | None = None, on_step: Callable[[int], None] | None = None,
          desc: str = "train") -> TrainResult:
    """Train ``objective`` (an nn.Module whose ``forward(**batch)`` returns ``(loss, parts)``).

    lengths: token count per training example (for length-pooled batches); collate(indices) -> batch
    dict of tensors; eval_fn(objective) -> metrics with "accuracy", run after every epoch; the best
    epoch's weights are loaded back into ``objective`` at the end (eval_fn None: no evaluation, the
    objective keeps its final weights). Resumes from ``work_dir/checkpoint`` when its fingerprint
    matches; a mismatching checkpoint raises EdgepackError. on_step(step) is called after every
    optimizer step (progress hooks; tests raise from it to simulate a kill).
    """
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from safetensors.torch import load_file, save_file
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    work_dir = Path(work_dir)
    fp = {"train": config_to_dict(cfg), **(fingerprint or {})}
    fp["train"].pop("progress", None)
    acc = Accelerator(mixed_precision=_mixed_precision(cfg.mixed_precision), cpu=not torch.cuda.is_available())
    set_seed(cfg.seed)
    if not lengths:
        raise EdgepackError("no training examples")
    n_batches = len(batch_plan(lengths, cfg.batch_size, cfg.seed, 0))
    per_proc = math.ceil(n_batches / acc.num_processes)
    steps_per_epoch = math.ceil(per_proc / cfg.grad_accum)
    if cfg.max_steps is None:
        epochs, total = cfg.epochs, steps_per_epoch * cfg.epochs
    else:
        epochs, total = math.ceil(cfg.max_steps / steps_per_epoch), cfg.max_steps
    decay, no_decay = [], []
    for n, p in objective.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "LayerNorm" in n or n.endswith(".bias") else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    sched = get_linear_schedule_with_warmup(opt, int(cfg.warmup_ratio * total), max(total, 1))
    model, opt = acc.prepare(objective, opt)

    ck = work_dir / "checkpoint"
    state = {"step": 0, "epoch": 0, "batch": 0, "history": [], "best": {}, "bad_epochs": 0, "fingerprint": fp}
    resumed = 0
    if (ck / "state.json").is_file():
        saved = json.loads((ck / "state.json").read_text())
        if saved.get("fingerprint") != fp:
            raise EdgepackError(f"{ck} holds a checkpoint of a different run (other data, model or settings); "
                                "remove it or use another output/work directory")
        acc.unwrap_model(model).load_state_dict(load_file(ck / "model.safetensors"))
        opt.optimizer.load_state_dict(torch.load(ck / "optimizer.pt", weights_only=True))
        sched.load_state_dict(saved.pop("scheduler"))
        rng = load_file(ck / "rng.safetensors")
        torch.set_rng_state(rng["cpu"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state(rng["cuda"])
        state, resumed = saved, saved["step"]
        acc.print(f"resuming {desc} from step {resumed} (epoch {saved['epoch'] + 1}, batch {saved['batch']})")

    def save_checkpoint() -> None:
        if not acc.is_main_process:
            return
        tmp = work_dir / "checkpoint.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        sd = {k: v.detach().cpu().contiguous() for k, v in acc.unwrap_model(model).state_dict().items()}
        save_file(sd, tmp / "model.safetensors")
        torch.save(opt.optimizer.state_dict(), tmp / "optimizer.pt")
        rng = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state()
        save_file(rng, tmp / "rng.safetensors")
        (tmp / "state.json").write_text(json.dumps({**state, "scheduler": sched.state_dict()}, indent=1))
        old = work_dir / "checkpoint.old"
        shutil.rmtree(old, ignore_errors=True)
        if ck.exists():
            os.replace(ck, old)
        os.replace(tmp, ck)
        shutil.rmtree(old, ignore_errors=True)

    def save_best() -> None:
        if acc.is_main_process:
            sd = {k: v.detach().cpu().contiguous() for k, v in acc.unwrap_model(model).state_dict().items()}
            save_file(sd, work_dir / "best.tmp.safetensors")
            os.replace(work_dir / "best.tmp.safetensors", work_dir / "best.safetensors")

    work_dir.mkdir(parents=True, exist_ok=True)
    t0, seen = time.perf_counter(), 0
    bar = tqdm(total=total, initial=state["step"], desc=desc, unit="step",
               disable=not (cfg.progress and acc.is_main_process), dynamic_ncols=True)  # one bar per launch
    if not resumed:
        (work_dir / "best.safetensors").unlink(missing_ok=True)  # left over from another run
    done = state["step"] >= total and state["batch"] == 0
    while not done and state["epoch"] < epochs:
        epoch = state["epoch"]
        plan = batch_plan(lengths, cfg.batch_size, cfg.seed, epoch)
        # An own generator: creating a DataLoader iterator draws a seed from it, which would otherwise
        # advance the global RNG (dropout) differently in a resumed run.
        loader = DataLoader(range(len(lengths)), batch_sampler=plan, collate_fn=collate,
                            generator=torch.Generator().manual_seed(cfg.seed))
        dl = acc.prepare_data_loader(loader)
        if state["batch"]:
            dl = acc.skip_first_batches(dl, state["batch"])
        if state["step"] >= total:  # interrupted after the last step, before this epoch's evaluation
            dl = []
        model.train()
        loss_sum, loss_n = state.get("loss_sum", 0.0), state.get("loss_n", 0)
        for batch in dl:
            state["batch"] += 1
            last = state["batch"] % cfg.grad_accum == 0 or state["batch"] == per_proc
            ctx = acc.no_sync(model) if not last else contextlib.nullcontext()
            with ctx, acc.autocast():
                loss, _parts = model(**batch)
                acc.backward(loss / cfg.grad_accum)
            loss_sum, loss_n = loss_sum + float(loss.detach()), loss_n + 1
            seen += int(batch["input_ids"].shape[0])
            if not last:
                continue
            if cfg.max_grad_norm:
                acc.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            state["step"] += 1
            state["loss_sum"], state["loss_n"] = loss_sum, loss_n
            bar.update(1)
            rate = seen / max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix(loss=f"{loss_sum / loss_n:.4f}", ex_s=f"{rate:.0f}", epoch=epoch + 1)
            if cfg.checkpoint_every and state["step"] % cfg.checkpoint_every == 0:
                save_checkpoint()
            if on_step is not None:
                on_step(state["step"])
            if state["step"] >= total:
                break
        metrics = eval_fn(acc.unwrap_model(model)) if eval_fn is not None else {}
        record = {"epoch": epoch + 1, "step": state["step"], "train_loss": loss_sum / max(loss_n, 1), **metrics}
        state["history"].append(record)
        acc.print(f"{desc} epoch {epoch + 1}: " + ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                                                          for k, v in record.items()))
        if eval_fn is None:  # nothing to select by: the last epoch is the result
            state["best"] = record
        elif not state["best"] or metrics["accuracy"] > state["best"]["accuracy"]:
            state["best"], state["bad_epochs"] = record, 0
            save_best()
        else:
            state["bad_epochs"] += 1
        state.update(epoch=epoch + 1, batch=0, loss_sum=0.0, loss_n=0)
        save_checkpoint()
        done = state["step"] >= total
        if cfg.patience and state["bad_epochs"] >= cfg.patience:
            acc.print(f"{desc}: early stop after {state['bad_epochs']} epochs without improvement")
            break
    bar.close()
    acc.wait_for_everyone()
    if (work_dir / "best.safetensors").is_file():
        acc.unwrap_model(model).load_state_dict(load_file(work_dir / "best.safetensors"))
    elapsed = time.perf_counter() - t0
    return TrainResult(state["history"], state["best"], state["step"], elapsed, seen / max(elapsed, 1e-9), resumed)
