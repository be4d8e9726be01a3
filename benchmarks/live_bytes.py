"""Peak bytes of live tensors on the CPU, counted the way ``torch.cuda.max_memory_allocated`` counts.

The CPU has no allocator statistics, and the process's peak resident set mixes the model, the
Python heap and memory the C allocator keeps after a free. :class:`LiveBytes` is a dispatch
mode that sees every tensor an operator returns, forward and backward alike (the autograd engine
runs backward under the same mode), and counts each distinct storage from the moment an
operator returns it until the storage is freed. Tensors that exist when the mode starts (the
weights) are not seen: :func:`storage_bytes` counts them once, as ``base``.

What it cannot see: scratch memory an operator allocates and frees inside its own kernel (a
GPU's cuDNN or flash-attention workspace, say). So its figures are a lower bound of what a GPU
allocator would report for the same program, and the figure to compare between programs is
the ratio of two peaks measured the same way.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


def storage_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of the distinct storages behind ``tensors`` (views and tied weights count once)."""
    seen: dict[int, int] = {}
    for t in tensors:
        if t.device.type == "meta" or t.layout != torch.strided:
            continue
        s = t.untyped_storage()
        if s.data_ptr():
            seen[s.data_ptr()] = s.nbytes()
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
        self._live: dict[int, int] = {}  # data_ptr of a live storage -> its bytes (a pointer is reused only after its finaliser ran)

    def _count(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        ptr = storage.data_ptr()
        if ptr == 0 or ptr in self._live:
            return
        size = storage.nbytes()
        self._live[ptr] = size
        self.current += size
        weakref.finalize(storage, self._free, ptr)

    def _free(self, ptr: int) -> None:
        self.current -= self._live.pop(ptr, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for leaf in tree_leaves(out):
            if isinstance(leaf, torch.Tensor) and leaf.device.type != "meta":
                self._count(leaf)
        self.peak = max(self.peak, self.current)
        return out
