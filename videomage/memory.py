"""Counting memory the way an accelerator's allocator counts it, on any device, the meta device included.

:class:`LiveBytes` is a dispatch mode that sees every tensor an operator returns, forward and
backward alike (the autograd engine runs backward under the same mode), and counts each distinct
storage from the moment an operator returns it until the storage is freed. Tensors that exist
when the mode starts (the weights) are not seen: :func:`storage_bytes` counts them once.

Because storages are told apart by their identity, not by their address, the same count works on
the meta device, where nothing is allocated: that is how ``videomage plan`` measures a job before
any weight is loaded (:mod:`videomage.planning`). :func:`meta_kernels` makes the meta device
choose the attention kernel an accelerator would (PyTorch's meta device otherwise decomposes
``scaled_dot_product_attention`` into the math path, which stores the whole attention matrix).

What neither sees: scratch memory a kernel allocates and frees inside itself (a cuDNN or
flash-attention workspace), and the allocator's rounding and caching; the figures are a lower
bound of what ``torch.cuda.max_memory_allocated`` reports for the same program.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

__all__ = ["LiveBytes", "meta_kernels", "moved_off_device", "moved_to_device", "storage_bytes"]


def _key(storage: torch.UntypedStorage) -> int:
    # The address of the storage object itself: unique while it lives, on every device (a meta
    # storage has no data pointer to tell it apart by).
    return storage._cdata


def storage_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of the distinct storages behind ``tensors`` (views and tied weights count once)."""
    seen: dict[int, int] = {}
    for t in tensors:
        if t.layout != torch.strided:
            continue
        s = t.untyped_storage()
        seen[_key(s)] = s.nbytes()
    return sum(seen.values())


class LiveBytes(TorchDispatchMode):
    """``with LiveBytes() as live: ...`` then ``live.peak`` (bytes) and ``live.current``.

    A storage is counted once however many tensors view it, and uncounted when it is freed
    (a weak-reference finaliser on the storage). ``peak`` is the largest ``current`` seen
    after any operator returned.
    """

    def __init__(self) -> None:
        super().__init__()
        self.current = 0
        self.peak = 0
        self.released = 0  # bytes of earlier tensors moved off the device (moved_off_device), now
        self.peak_live = 0  # the largest ``current + released``: live tensors, whatever left the device
        self._live: dict[int, int] = {}  # key of a live storage -> its bytes

    def __enter__(self):
        _ACTIVE.append(self)
        return super().__enter__()

    def __exit__(self, *exc):
        _ACTIVE.remove(self)
        return super().__exit__(*exc)

    def _count(self, tensor: torch.Tensor) -> None:
        if tensor.layout != torch.strided:
            return
        storage = tensor.untyped_storage()
        key = _key(storage)
        if key in self._live:
            return
        size = storage.nbytes()
        self._live[key] = size
        self.current += size
        weakref.finalize(storage, self._free, key)

    def _free(self, key: int) -> None:
        self.current -= self._live.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        outputs = [leaf for leaf in tree_leaves(out) if isinstance(leaf, torch.Tensor) and leaf.layout == torch.strided]
        if outputs:
            # An output on the storage of an input the counter has not seen is a view of (or an
            # in-place change to) a tensor that existed before: no new memory. Without this, the
            # ``t()`` every linear layer takes of its weight counted the weight again, for as long
            # as the weight lived.
            inputs = {_key(t.untyped_storage()) for t in tree_leaves((args, kwargs))
                      if isinstance(t, torch.Tensor) and t.layout == torch.strided}
            for leaf in outputs:
                key = _key(leaf.untyped_storage())
                if key in inputs and key not in self._live:
                    continue
                self._count(leaf)
        self.peak = max(self.peak, self.current)
        self.peak_live = max(self.peak_live, self.current + self.released)
        return out


_ACTIVE: list[LiveBytes] = []  # the counters open now


def moved_off_device(nbytes: int) -> None:
    """Tell the open counters that ``nbytes`` of tensors that existed before them (weights) left the
    accelerator: their ``current`` drops by that much, below zero if need be, since the weights
    were never in it. A released text encoder calls it (:meth:`videomage.text.TokenTable.release`)."""
    for live in _ACTIVE:
        live.current -= nbytes
        live.released += nbytes


def moved_to_device(nbytes: int) -> None:
    """The reverse of :func:`moved_off_device`: the bytes are back on the accelerator."""
    for live in _ACTIVE:
        live.current += nbytes
        live.released -= nbytes
        live.peak = max(live.peak, live.current)


@contextmanager
def meta_kernels() -> Iterator[None]:
    """Inside the block, attention on the meta device costs the memory a fused kernel costs.

    ``scaled_dot_product_attention`` on meta tensors (unmasked, or with a mask that needs no
    gradient, such as T5's position bias) runs the fused kernel's own meta function, which (like
    flash or memory-efficient attention on a GPU) keeps the rows' log-sum-exp for backward
    instead of the attention matrix. The function is replaced for the
    block's duration rather than intercepted by a mode, because activation checkpointing
    recomputes forward passes where a mode's stack may differ, and must see the same kernel.
    """
    original = F.scaled_dot_product_attention

    def fused(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
        # A mask that needs no gradient (T5's position bias) is taken by the fused kernels too
        # (memory-efficient attention on a GPU, flash attention on a CPU).
        frozen_mask = attn_mask is None or not attn_mask.requires_grad
        if query.device.type == "meta" and frozen_mask and not enable_gqa:
            return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
                query, key, value, dropout_p, is_causal, attn_mask=attn_mask, scale=scale)[0]
        return original(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal,
                        scale=scale, enable_gqa=enable_gqa)

    F.scaled_dot_product_attention = fused
    try:
        yield
    finally:
        F.scaled_dot_product_attention = original


def cast_as_loaded(module: torch.nn.Module, dtype: torch.dtype, *, keep_float32_for: Iterable[torch.dtype] = ()) -> torch.nn.Module:
    """Cast ``module`` built from a config to ``dtype`` the way ``from_pretrained(..., torch_dtype=dtype)``
    leaves it: the submodules its class lists in ``_keep_in_fp32_modules`` stay float32 when ``dtype`` is
    one of ``keep_float32_for`` (diffusers keeps them for both half types, transformers for float16 only).

    A backbone's meta-device builder calls it so that a plan counts the bytes a real load holds.
    """
    torch.nn.Module.to(module, dtype)  # not diffusers' override, which warns about exactly what follows
    keep = set(getattr(module, "_keep_in_fp32_modules", None) or ())
    if keep and dtype in tuple(keep_float32_for):
        for name, tensor in (*module.named_parameters(), *module.named_buffers()):
            if keep & set(name.split(".")) and tensor.is_floating_point():
                tensor.data = tensor.data.to(torch.float32)
    return module
