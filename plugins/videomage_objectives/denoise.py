"""Denoising objectives: the subject loss with prior preservation (VideoMage §3.1, Eq. 1-2).

``L = L_sub + lambda_reg * L_reg``: ``L_sub`` is the usual denoising loss on the subject's images
(one-frame videos) with prompt "A <toy>"; ``L_reg`` is the same loss on auxiliary *videos* with
their captions, computed with the subject LoRA active, so that an adapter learned from still
images does not wreck the model's video prior.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import torch

from videomage import Objective, ObjectiveOutput, TrainingContext
from videomage.kit import from_values, number


def noised(ctx: TrainingContext, latents: torch.Tensor, batch: Mapping[str, Any], prefix: str = ""):
    """Draw (or take from the batch) noise and timesteps; return ``(x_t, t, target)``.

    The draw is explicit so that two passes of one objective can share ``x_t``, ``t`` and the
    noise exactly, as the motion and fusion losses require.
    """
    backbone = ctx.backbone
    noise = batch.get(prefix + "noise")
    if noise is None:
        noise = torch.randn(latents.shape, generator=ctx.generator, dtype=torch.float32).to(latents)
    t = batch.get(prefix + "timesteps")
    if t is None:
        t = backbone.sample_expert_timesteps(latents.shape[0], ctx.experts, ctx.generator)
    t = t.to(latents.device)
    return backbone.add_noise(latents, noise, t), t, backbone.training_target(latents, noise, t)


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    # Computed in float32 so that half-precision training does not lose the small residuals.
    return torch.nn.functional.mse_loss(pred.float(), target.float())


class Denoise(Objective):
    """Denoising loss on ``latents``/``prompts``, plus ``lambda_reg`` x the same on prior videos.

    Batch keys: ``latents`` ``[B, C, F, h, w]``, ``prompts`` (B strings); optional
    ``prior_latents`` and ``prior_prompts`` (the auxiliary videos and captions); optional
    ``noise``/``timesteps`` and ``prior_noise``/``prior_timesteps`` to fix the draws.
    """

    name = "denoise"

    @attrs.frozen(kw_only=True)
    class Options:
        lambda_reg: float = number(0.25, low=0, help="weight of the prior-preservation loss L_reg (0 turns it off: "
                                   "no auxiliary videos are made)")

    def __init__(self, options: Options | None = None, **values: Any) -> None:
        self.options = from_values(self, options, values)
        self.lambda_reg = self.options.lambda_reg

    def reads(self, key: str) -> bool:
        """Whether this objective uses the optional batch key ``key`` (the stages make costly ones on request)."""
        return self.lambda_reg > 0 if key.startswith("prior_") else True

    def loss(self, ctx: TrainingContext, batch: Mapping[str, Any]) -> ObjectiveOutput:
        backbone = ctx.backbone
        x_t, t, target = noised(ctx, batch["latents"], batch)
        l_sub = mse(backbone.predict(x_t, t, backbone.encode_prompt(batch["prompts"])), target)
        logs = {"l_sub": l_sub.item()}
        loss = l_sub
        prior = batch.get("prior_latents")
        if prior is not None and self.lambda_reg > 0:
            px_t, pt, ptarget = noised(ctx, prior, batch, prefix="prior_")
            l_reg = mse(backbone.predict(px_t, pt, backbone.encode_prompt(batch["prior_prompts"])), ptarget)
            loss = loss + self.lambda_reg * l_reg
            logs["l_reg"] = l_reg.item()
        logs["loss"] = loss.item()
        return ObjectiveOutput(loss=loss, logs=logs)
