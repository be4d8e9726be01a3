"""Test-time fusion of N subject LoRAs into one student (VideoMage §3.3, Eq. 5-6).

``L_fusion = 1/N sum_n || student(x_{n,t}, c_n, t) - teacher_n(x_{n,t}, c_n, t) ||^2``: each
teacher is the model with subject adapter ``n`` alone active; the student is the model with the
fused adapter alone active. Teachers and student live in one model: switching adapters costs no
copy.

``L_attn = 1/N sum_i || M_SCA,i - M_i ||^2``: on a composite clip with the subjects side by side,
the student's spatial cross-attention map of token ``i`` (mean over heads and layers, each frame
scaled to a maximum of one) should match subject ``i``'s mask.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from typing import Any

import torch

from videomage import Objective, ObjectiveOutput, TrainingContext
from videomage.kit import backward_scope
from videomage_objectives.denoise import mse, noised


def student_name(ctx: TrainingContext) -> str:
    if len(ctx.trained) != 1:
        raise ValueError(f"fusion objectives train exactly one student adapter, got {ctx.trained!r}")
    return ctx.trained[0]


class FusionDistill(Objective):
    """Distil every teacher into the student on the teachers' own videos.

    Batch key ``subjects``: a list with, per subject, ``latents``, ``prompts`` and ``teacher``
    (the teacher adapter's name); optional ``noise``/``timesteps``.
    """

    name = "fusion_distill"

    def loss(self, ctx: TrainingContext, batch: Mapping[str, Any]) -> ObjectiveOutput:
        backbone, adapter, student = ctx.backbone, ctx.adapter, student_name(ctx)
        terms = []
        for item in batch["subjects"]:
            x_t, t, _ = noised(ctx, item["latents"], item)
            embeds = backbone.encode_prompt(item["prompts"])
            with torch.no_grad():
                adapter.activate(backbone, {item["teacher"]: 1.0})
                teacher = backbone.predict(x_t, t, embeds)
            adapter.activate(backbone, {student: 1.0})
            terms.append(mse(backbone.predict(x_t, t, embeds), teacher))
        loss = torch.stack(terms).mean()
        return ObjectiveOutput(loss=loss, logs={"l_fusion": loss.item()})


def attention_loss(maps: torch.Tensor, masks: torch.Tensor, token_groups: Sequence[Sequence[int]]) -> torch.Tensor:
    """``1/N sum_i mean((M_SCA,i - M_i)^2)``.

    ``maps``: ``[B, T, F, h, w]`` normalised cross-attention maps of the requested tokens, in the
    order of the flattened ``token_groups``; ``masks``: ``[B, N, F, h, w]``; subject ``i``'s map is
    the mean over its group's tokens (a token the tokenizer splits spans several positions).
    """
    terms, start = [], 0
    for i, group in enumerate(token_groups):
        m = maps[:, start : start + len(group)].mean(1)
        start += len(group)
        terms.append(((m - masks[:, i].to(m)) ** 2).mean())
    return torch.stack(terms).mean()


class AttentionRegularization(Objective):
    """Match each subject token's cross-attention to its mask on a CutMix composite.

    Batch keys: ``latents`` (composite clip), ``prompts`` ("A <toy> and a <dog>"), ``masks``
    ``[B, N, F, H, W]`` in ``[0, 1]`` (resized to the latent grid here), ``token_positions``
    (per subject, its positions in the prompt); optional ``noise``/``timesteps``.
    """

    name = "attention_reg"

    def loss(self, ctx: TrainingContext, batch: Mapping[str, Any]) -> ObjectiveOutput:
        backbone = ctx.backbone
        groups = [list(g) for g in batch["token_positions"]]
        x_t, t, _ = noised(ctx, batch["latents"], batch)
        embeds = backbone.encode_prompt(batch["prompts"])
        with ExitStack() as local:
            # Inside a trainer step the capture stays open until the loss is backpropagated: with
            # gradient checkpointing the backward pass runs the captured layers again.
            store = (backward_scope() or local).enter_context(backbone.capture_attention(cross_tokens=[p for g in groups for p in g]))
            backbone.predict(x_t, t, embeds)
        frames, h, w = x_t.shape[-3:]
        maps = store.cross_maps((h, w))
        masks = batch["masks"]
        b, n, f = masks.shape[:3]
        # Area-resize to the latent grid, in time too: a VAE that compresses time has fewer
        # latent frames than the video has (each latent frame then averages its span of masks).
        masks = masks.reshape(b * n, 1, f, *masks.shape[-2:]).float()
        masks = torch.nn.functional.interpolate(masks, size=(frames, h, w), mode="area")
        loss = attention_loss(maps, masks.reshape(b, n, frames, h, w), groups)
        return ObjectiveOutput(loss=loss, logs={"l_attn": loss.item()})
