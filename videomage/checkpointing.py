"""Activation checkpointing for backbones, and what attention capture must do under it.

[`checkpointed`][videomage.checkpointing.checkpointed] is what a backbone's ``activation_checkpointing()`` needs: while it is
open, each given module keeps only its inputs when run with gradients, and runs again in the
backward pass (non-reentrant ``torch.utils.checkpoint``). [`recomputing`][videomage.checkpointing.recomputing] tells code that
runs inside such a module (an attention-capture processor) that it is being run again.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch.utils.checkpoint import checkpoint


def recomputing() -> bool:
    """True while the autograd engine runs a backward pass.

    Activation checkpointing runs forward code again there, to rebuild what it did not keep.
    A capture processor must not keep that second copy of its maps: the store already holds
    them from the forward pass, and each duplicate would pin the recomputed activations it was
    built from until the capture ends, undoing the checkpointing. It must still compute them:
    a non-reentrant recomputation has to save the tensors the forward pass saved.
    """
    return torch._C._current_graph_task_id() != -1


def _wrap(forward):
    def run(*args, **kwargs):
        if torch.is_grad_enabled():
            return checkpoint(forward, *args, use_reentrant=False, **kwargs)
        return forward(*args, **kwargs)

    return run


@contextmanager
def checkpointed(modules: Sequence[torch.nn.Module]) -> Iterator[None]:
    """Inside the block, ``modules`` run checkpointed when gradients are on (else as usual).

    Each module's ``forward`` is shadowed by an instance attribute and restored on exit, so
    hooks, adapters and processors installed on the modules keep working. The backward pass
    must run inside the block too, with the same adapters and processors as the forward pass.
    """
    modules = list(dict.fromkeys(modules))  # each once
    for module in modules:
        module.forward = _wrap(type(module).forward.__get__(module))
    try:
        yield
    finally:
        for module in modules:
            del module.forward
