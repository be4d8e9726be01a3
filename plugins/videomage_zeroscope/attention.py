"""Capturing attention maps from a UNet3D, only when asked and only where asked.

Spatial cross-attention (``attn2`` of the spatial transformers) sees hidden states shaped
``[B*F, h*w, C]`` (frames folded into the batch, batch-major) and text keys; temporal
self-attention sees ``[B*h*w, F, C]`` (locations folded into the batch). To read the maps we
must compute the softmax explicitly, which SDPA does not expose; so while a capture is active
the requested layers get a processor that does ``softmax(q k^T * scale) v`` by hand and keeps
the (head-averaged) probabilities. Every other layer, and every layer outside a capture, keeps
its original processor: nothing is paid when nothing is requested.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import attrs
import torch

from videomage import AttentionStore
from videomage.kit import recomputing, replays


class CaptureProcessor:
    """Attention written out so its probabilities can be kept; otherwise identical to diffusers'.

    ``kind`` is ``"cross"`` (keep the maps of ``tokens``, reshaped ``[B, T, F, h, w]``) or
    ``"temporal"`` (keep ``[B, h*w, F, F]``). ``frames`` and ``grid`` come from the capture
    (the forward pass sets them), because an attention layer cannot see them itself.
    """

    def __init__(self, kind: str, store: AttentionStore, capture: _Capture, tokens: Sequence[int] = (), inner=None) -> None:
        self.kind = kind
        self.store = store
        self.capture = capture
        self.tokens = list(tokens)
        self.inner = inner  # the layer's own processor

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs):
        if self.inner is not None and recomputing() and not replays(self.capture):
            # Recomputing a forward pass that ran outside this capture: run it as it ran.
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        if hidden_states.ndim != 3 or attn.spatial_norm is not None or attn.group_norm is not None:
            raise NotImplementedError("videomage attention capture expects the UNet3D transformer blocks' attention")
        residual = hidden_states
        batch, queries, _ = hidden_states.shape
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        if encoder_hidden_states is not None and attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        q, k, v = attn.to_q(hidden_states), attn.to_k(context), attn.to_v(context)
        heads, dim = attn.heads, k.shape[-1] // attn.heads
        q, k, v = (x.view(batch, -1, heads, dim).transpose(1, 2) for x in (q, k, v))
        scores = (q @ k.transpose(-1, -2)).float() * attn.scale
        if attention_mask is not None:
            mask = attn.prepare_attention_mask(attention_mask, k.shape[2], batch)
            scores = scores + mask.view(batch, heads, -1, mask.shape[-1]).float()
        probs = scores.softmax(-1)
        self._keep(probs.mean(1))
        out = (probs.to(v.dtype) @ v).transpose(1, 2).reshape(batch, queries, heads * dim)
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor

    def _keep(self, probs: torch.Tensor) -> None:
        # Computed in either case: activation checkpointing requires a recomputation to save the
        # same tensors as the forward pass did. Kept only once.
        state = self.capture
        if self.kind == "cross":
            # [B*F, h*w, L] -> the requested tokens -> [B, T, F, h, w]
            h, w = state.grid(probs.shape[1])
            kept = probs[..., self.tokens].reshape(state.batch, state.frames, h, w, len(self.tokens))
            maps, kept_in = kept.permute(0, 4, 1, 2, 3), self.store.cross
        else:
            # [B*h*w, F, F] -> [B, h*w, F, F]
            maps, kept_in = probs.reshape(state.batch, -1, state.frames, state.frames), self.store.temporal
        if not recomputing():  # in the backward pass, a checkpointed layer run again: kept already
            kept_in.append(maps)


@attrs.define
class _Capture:
    """What a capture's processors need to know of the current forward pass."""

    batch: int = 1
    frames: int = 1
    size: tuple[int, int] = (1, 1)  # the latent grid

    def grid(self, cells: int) -> tuple[int, int]:
        """The (h, w) of a UNet level with ``cells`` positions: each level halves both sides (rounding up)."""
        h, w = self.size
        while h * w > cells and h > 1:
            h, w = (h + 1) // 2, (w + 1) // 2
        if h * w != cells:
            raise RuntimeError(f"no UNet level of latents {self.size} has {cells} positions")
        return h, w


@contextmanager
def capture(
    unet: torch.nn.Module,
    cross_layers: Sequence[str],
    temporal_layers: Sequence[str],
    *,
    cross_tokens: Sequence[int] | None,
    temporal: bool,
) -> Iterator[tuple[AttentionStore, _Capture]]:
    """Swap capturing processors into the named attention modules for the duration of the block.

    ``cross_layers``/``temporal_layers`` are qualified names of ``Attention`` modules. The
    caller sets ``state.batch``/``state.frames``/``state.size`` before each forward pass.
    """
    store, state = AttentionStore(), _Capture()
    wanted: dict[str, CaptureProcessor] = {}
    modules = dict(unet.named_modules())
    if cross_tokens:
        for name in cross_layers:
            wanted[name] = CaptureProcessor("cross", store, state, cross_tokens, inner=modules[name].processor)
    if temporal:
        for name in temporal_layers:
            wanted[name] = CaptureProcessor("temporal", store, state, inner=modules[name].processor)
    originals = {name: modules[name].processor for name in wanted}
    try:
        for name, processor in wanted.items():
            modules[name].processor = processor  # direct assignment: no module-tree walk
        yield store, state
    finally:
        for name, processor in originals.items():
            modules[name].processor = processor
