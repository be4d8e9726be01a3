"""What the stages share: trainable token rows, latent caches and content hashes."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from videomage.artifact import atomic_write
from videomage.components import Backbone
from videomage.trainer import ParamGroup


def content_hash(*parts: Any) -> str:
    """A short stable hash of JSON-able parts and files (by content, not by name)."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path) and part.is_file():
            h.update(part.read_bytes())
        elif isinstance(part, Path) and part.is_dir():
            for f in sorted(p for p in part.rglob("*") if p.is_file()):
                h.update(f.name.encode())
                h.update(f.read_bytes())
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


class TokenRows:
    """Train only the embedding rows of ``tokens``: the rest of the vocabulary stays bit-exact.

    The whole embedding matrix is handed to the optimizer with a gradient mask, because text
    encoders read their input embeddings from one matrix. With zero gradient and no weight
    decay, AdamW leaves a row exactly unchanged.
    """

    def __init__(self, backbone: Backbone, tokens: Sequence[str], lr: float) -> None:
        self.weight = backbone.token_embedding_weight()
        mask = torch.zeros(self.weight.shape[0], 1, dtype=self.weight.dtype, device=self.weight.device)
        mask[backbone.token_ids(tokens)] = 1.0
        self.weight.requires_grad_(True)
        self._hook = self.weight.register_hook(lambda g: g * mask)
        self.group = ParamGroup(name="tokens", params=[self.weight], lr=lr, weight_decay=0.0)

    def close(self) -> None:
        self._hook.remove()
        self.weight.requires_grad_(False)
        self.weight.grad = None


def cached_tensors(path: Path | None, compute: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Load tensors from ``path`` if present, else compute and store them (atomically)."""
    if path is not None and path.exists():
        return load_file(str(path))
    tensors = compute()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        atomic_write(path, lambda tmp: save_file(data, tmp))
    return tensors


@torch.no_grad()
def encode_batched(backbone: Backbone, videos: torch.Tensor, batch: int = 4) -> torch.Tensor:
    """Encode ``[N, F, 3, H, W]`` a few clips at a time (``[N, C, F, h, w]``)."""
    return torch.cat([backbone.encode_video(videos[i : i + batch].to(backbone.device, backbone.dtype)) for i in range(0, len(videos), batch)])


def pick(generator: torch.Generator, n: int) -> int:
    """A uniformly random index in ``range(n)`` drawn from ``generator``."""
    return int(torch.randint(n, (1,), generator=generator))
