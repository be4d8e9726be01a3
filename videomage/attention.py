"""Attention maps a backbone captures during a forward pass, for the method's attention losses."""

from __future__ import annotations

import attrs
import torch

__all__ = ["AttentionStore"]


@attrs.define(kw_only=True)
class AttentionStore:
    """Attention maps captured during one forward pass.

    ``cross``: one tensor per captured spatial cross-attention layer, shaped
    ``[B, T, F, h_l, w_l]`` for the ``T`` requested token positions: softmax probabilities over
    the text keys, averaged over heads (so over *all* keys they sum to one).

    ``temporal``: one tensor per captured temporal self-attention layer, shaped
    ``[B, h_l * w_l, F, F]``: for each spatial location, the frame-by-frame attention
    probabilities averaged over heads (each row sums to one).

    ``F`` counts *latent* frames, fewer than the video's when the VAE compresses time.
    Tensors keep their autograd graph when the forward pass ran with gradients enabled.
    """

    cross: list[torch.Tensor] = attrs.field(factory=list)
    temporal: list[torch.Tensor] = attrs.field(factory=list)

    def cross_maps(self, size: tuple[int, int]) -> torch.Tensor:
        """Average the cross-attention layers at ``size`` and normalise each frame to ``[0, 1]``.

        Returns ``[B, T, F, h, w]``. Each token's map in each frame is divided by its maximum,
        which is what the attention losses of the method compare against binary masks.
        """
        if not self.cross:
            raise ValueError("no cross-attention maps were captured; request cross_tokens")
        resized = []
        for m in self.cross:
            b, t, f, h, w = m.shape
            flat = m.reshape(b * t * f, 1, h, w)
            if (h, w) != tuple(size):
                flat = torch.nn.functional.interpolate(flat, size=size, mode="bilinear", align_corners=False)
            resized.append(flat.reshape(b, t, f, *size))
        mean = torch.stack(resized).mean(0)
        peak = mean.flatten(-2).amax(-1).clamp_min(1e-8)[..., None, None]
        return mean / peak
