"""Several processes (``accelerate launch``, ``torchrun``): which device each one uses, and
the averaging of gradients across them, through accelerate's process state.

accelerate's :class:`~accelerate.PartialState` (the state an ``Accelerator`` is built on) joins
the process group the launcher describes, knows each process's rank and local rank, and
reduces tensors across processes. We use it for exactly that:

* :func:`process_device`: under a launcher, ``--device cuda`` means the local rank's GPU, so
  process ``k`` of a machine trains on ``cuda:k``;
* :func:`average_gradients`: the trained tensors' gradients are averaged across processes in
  one flat bucket before every optimizer step, so every process takes the same step;
* checkpoints and artifacts are written by the main process only.

What we do not take from ``Accelerator``, and why (accelerate 1.15):

* **mixed precision**: ``AcceleratorState`` fixes ``mixed_precision`` once per process; a
  second ``Accelerator(mixed_precision=...)`` with another value raises ``ValueError``. A recipe
  runs several stages in one process (and a test suite many trainers), each with its own
  settings, so the trainer keeps its own autocast and ``torch.amp.GradScaler``.
* **RNG and checkpoint state**: ``Accelerator.save_state`` writes RNG, scaler and optimizer
  states with ``torch.save`` (pickles); videomage writes safetensors only, and its trainer
  checkpoints its generator, scaler and optimizer moments itself.
* **DDP wrapping** (``prepare(model)``): the trained tensors are adapters inside a frozen
  denoiser that one objective runs several times per step with different adapters active
  (teacher and student, base model and motion adapter); DDP's reducer assumes one forward per
  backward over a fixed set of used parameters. Averaging the trained gradients is the same
  arithmetic, and a test checks two processes against one process on the combined batch.
"""

from __future__ import annotations

import os

import torch

from videomage.errors import ConfigError

__all__ = ["average_gradients", "is_main_process", "process_device", "rank_and_world"]


def _launched() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _state():
    from accelerate import PartialState

    # Joins the launcher's process group: NCCL on GPUs; without GPUs accelerate needs ``cpu=True``
    # to see the processes (a multi-CPU group over Gloo) rather than one process each.
    return PartialState(cpu=not torch.cuda.is_available())


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes (``(0, 1)`` when nothing launched several)."""
    if not _launched():
        return 0, 1
    state = _state()
    return state.process_index, state.num_processes


def is_main_process() -> bool:
    return rank_and_world()[0] == 0


def process_device(device: str) -> str:
    """The device this process should load its model on, for a requested ``device``.

    Under a launcher, ``cuda`` (without an index) becomes ``cuda:<local rank>``; an explicit
    index would put every process on one GPU and is refused.
    """
    if not _launched() or not device.startswith("cuda"):
        return device
    local = _state().local_process_index
    if device == "cuda":
        return f"cuda:{local}"
    if device != f"cuda:{local}":
        raise ConfigError(
            f"--device {device!r} under a multi-process launch would put every process on the same GPU; "
            f"pass --device cuda and each process takes its own (process {local} of this machine: cuda:{local})"
        )
    return device


def average_gradients(params: list[torch.Tensor]) -> None:
    """Replace each gradient by its mean over the processes (nothing to do in one process)."""
    if not _launched() or not params:
        return
    from accelerate.utils import reduce

    grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in params]
    flat = reduce(torch.cat([g.reshape(-1) for g in grads]), reduction="mean")
    start = 0
    for p, g in zip(params, grads):
        p.grad = flat[start : start + g.numel()].view_as(g).to(g.dtype)
        start += g.numel()
