"""Wan's layer names in its original checkpoints (``Wan-AI/Wan2.1`` ``.pth``), which ComfyUI,
DiffSynth-Studio and musubi-tuner use, against diffusers' names for the same layers.

Per block ``blocks.N.``: ``attn1`` is ``self_attn``, ``attn2`` is ``cross_attn``, with the
projections ``to_q/to_k/to_v/to_out.0`` named ``q/k/v/o``; the feed-forward ``ffn.net.0.proj``
and ``ffn.net.2`` are ``ffn.0`` and ``ffn.2``. Outside the blocks (layers no role adapts, listed
so that an imported LoRA touching them is named, not mistaken for a foreign model): the time and
text embedders, the time projection and the output head.
"""

from __future__ import annotations

import re

#: diffusers name (after ``blocks.N.``) -> original name.
BLOCK_LAYERS: dict[str, str] = {
    **{f"attn1.{d}": f"self_attn.{o}" for d, o in (("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "o"))},
    **{f"attn2.{d}": f"cross_attn.{o}" for d, o in (("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "o"))},
    "ffn.net.0.proj": "ffn.0",
    "ffn.net.2": "ffn.2",
}

#: diffusers name -> original name, for the layers outside the blocks.
OTHER_LAYERS: dict[str, str] = {
    "condition_embedder.time_embedder.linear_1": "time_embedding.0",
    "condition_embedder.time_embedder.linear_2": "time_embedding.2",
    "condition_embedder.text_embedder.linear_1": "text_embedding.0",
    "condition_embedder.text_embedder.linear_2": "text_embedding.2",
    "condition_embedder.time_proj": "time_projection.1",
    "proj_out": "head.head",
}

_BLOCK = re.compile(r"blocks\.(\d+)\.(.+)")


def original_name(name: str) -> str | None:
    """``blocks.3.attn2.to_k`` -> ``blocks.3.cross_attn.k``; None for a name Wan does not rename."""
    if name in OTHER_LAYERS:
        return OTHER_LAYERS[name]
    found = _BLOCK.fullmatch(name)
    if found and found.group(2) in BLOCK_LAYERS:
        return f"blocks.{found.group(1)}.{BLOCK_LAYERS[found.group(2)]}"
    return None
