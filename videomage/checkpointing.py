"""Activation checkpointing for backbones, and what attention capture must do under it.

[`checkpointed`][videomage.checkpointing.checkpointed] is what a backbone's ``activation_checkpointing()`` needs: while it is
open, each given module keeps only its inputs when run with gradients, and runs again in the
backward pass (non-reentrant ``torch.utils.checkpoint``). [`recomputing`][videomage.checkpointing.recomputing] tells code that
runs inside such a module (an attention-capture processor) that it is being run again.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar

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


_OPEN: ContextVar[object | None] = ContextVar("videomage_open_capture", default=None)
_REPLAYED: ContextVar[object | None] = ContextVar("videomage_replayed_capture", default=None)


@contextmanager
def capturing(capture: object) -> Iterator[None]:
    """Mark ``capture`` (an attention capture's state) as open for the block.

    A checkpointed region remembers which capture was open when it first ran, and its
    recomputation in the backward pass sees that one through [`replays`][videomage.checkpointing.replays], whatever is open then.
    """
    token = _OPEN.set(capture)
    try:
        yield
    finally:
        _OPEN.reset(token)


def replays(capture: object) -> bool:
    """Whether the recomputation running now first ran while ``capture`` was open.

    A capture processor that finds itself recomputing a region that ran before its capture
    opened (a forward pass of the same training step, outside the capture) must run as the
    layer's own processor did, to save the same tensors.
    """
    return _REPLAYED.get() is capture


@contextmanager
def _replaying(capture: object | None) -> Iterator[None]:
    token = _REPLAYED.set(capture)
    try:
        yield
    finally:
        _REPLAYED.reset(token)


def _contexts():
    return nullcontext(), _replaying(_OPEN.get())


def checkpoint_call(function, *args, **kwargs):
    """Non-reentrant ``torch.utils.checkpoint`` that tells the recomputation which capture was open.

    Also the ``gradient_checkpointing_func`` a backbone hands diffusers' ``enable_gradient_checkpointing``.
    """
    return checkpoint(function, *args, use_reentrant=False, context_fn=_contexts, **kwargs)


def _wrap(forward):
    def run(*args, **kwargs):
        if torch.is_grad_enabled():
            return checkpoint_call(forward, *args, **kwargs)
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
    previous = {module: module.__dict__.get("forward") for module in modules}  # e.g. checkpoint_always's
    for module in modules:
        module.forward = _wrap(type(module).forward.__get__(module))
    try:
        yield
    finally:
        for module in modules:
            if previous[module] is None:
                del module.forward
            else:
                module.forward = previous[module]


def checkpoint_always(modules: Sequence[torch.nn.Module]) -> None:
    """From now on, ``modules`` run checkpointed when gradients are on (a training stage's
    ``enable_gradient_checkpointing``); [`checkpointed`][videomage.checkpointing.checkpointed] blocks opened later keep it on exit."""
    for module in dict.fromkeys(modules):
        module.forward = _wrap(type(module).forward.__get__(module))
