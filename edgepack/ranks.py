"""Which process of a multi-process launch this is (``accelerate launch``, ``torchrun``), and waiting for the rest.

Under such a launcher every process runs the whole command: the training loop shares the batches out and
all-reduces the gradients, while everything that must happen once (an artifact swapped into place, results
printed) happens on the main process, the others waiting for it (:class:`edgepack.artifact.ArtifactWriter`
does this on ``commit``). A plain run is a world of one: nothing here imports torch or accelerate then.

The launcher's process group is used once it exists (the training loop's ``Accelerator`` creates it); before
that, its environment (``WORLD_SIZE`` and ``RANK``, which torchrun and ``accelerate launch`` set) says the same.
"""

from __future__ import annotations

import os
import sys


def _group():
    """torch.distributed when a process group is up, else None (never imports torch: a group needs it loaded)."""
    dist = sys.modules.get("torch.distributed")
    if dist is None:
        return None
    return dist if dist.is_available() and dist.is_initialized() else None


def world_size() -> int:
    """How many processes run this command (1 without a launcher)."""
    g = _group()
    return g.get_world_size() if g is not None else max(1, int(os.environ.get("WORLD_SIZE", "1") or 1))


def rank() -> int:
    """This process's index among them (0: the main process)."""
    g = _group()
    return g.get_rank() if g is not None else int(os.environ.get("RANK", "0") or 0)


def is_main() -> bool:
    return rank() == 0


def wait_for_everyone() -> None:
    """Block until every process of the launch gets here (at once without a launcher).

    Before any training loop has brought the launcher's process group up (a stage that does not train), it is
    brought up here the way the training loop's ``Accelerator`` would (``cpu`` without CUDA: accelerate's
    default state would otherwise see one CPU process alone, and later training would not be distributed).
    """
    if world_size() < 2:
        return
    group = _group()
    if group is None:
        import torch
        from accelerate import PartialState

        PartialState(cpu=not torch.cuda.is_available())
        group = _group()
    group.barrier()
