"""The appearance-agnostic motion objective (VideoMage §3.2, Eq. 3-4).

The motion LoRA (temporal roles) is trained towards a *negative-guidance* target that removes
what the base model attributes to the actors' appearance:

    target_apfree = (1 + omega) * target - omega * base(x_t, c_ap, t)
    L_mot = || model_motion(x_t, c_m, t) - target_apfree ||^2

``base`` is the backbone with every adapter off and no gradient; ``c_ap`` is the appearance
prompt ("A static video of <person> and <horse>"), ``c_m`` the motion prompt. Both passes share
``x_t``, ``t`` and the noise. With ``omega = 0`` this is exactly the plain denoising loss.
``target`` is the backbone's training target (noise for epsilon models, velocity for flow
models), so the same formula holds for either prediction type.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import torch

from videomage import Objective, ObjectiveOutput, TrainingContext
from videomage.kit import from_values, number
from videomage_objectives.denoise import mse, noised


def appearance_free_target(target: torch.Tensor, base_pred: torch.Tensor, omega: float) -> torch.Tensor:
    """``(1 + omega) * target - omega * base_pred``."""
    return (1.0 + omega) * target - omega * base_pred


class NegativeCFGMotion(Objective):
    """Motion loss against the appearance-free target.

    Batch keys: ``latents`` (reference clip), ``prompts`` (motion prompts ``c_m``),
    ``appearance_prompts`` (``c_ap``); optional ``noise``/``timesteps``.
    """

    name = "negative_cfg_motion"

    @attrs.frozen(kw_only=True)
    class Options:
        omega: float = number(0.5, low=0, help="negative-guidance strength of the appearance-free target (0: the plain "
                              "denoising loss)")

    def __init__(self, options: Options | None = None, **values: Any) -> None:
        self.options = from_values(self, options, values)
        self.omega = self.options.omega

    def loss(self, ctx: TrainingContext, batch: Mapping[str, Any]) -> ObjectiveOutput:
        backbone = ctx.backbone
        x_t, t, target = noised(ctx, batch["latents"], batch)
        if self.omega > 0:
            # The base pass: every adapter off, no graph kept (it is a constant of the target).
            with torch.no_grad(), ctx.adapter.disabled(backbone):
                base = backbone.predict(x_t, t, backbone.encode_prompt(batch["appearance_prompts"]))
            target = appearance_free_target(target, base, self.omega)
        pred = backbone.predict(x_t, t, backbone.encode_prompt(batch["prompts"]))
        loss = mse(pred, target)
        return ObjectiveOutput(loss=loss, logs={"l_mot": loss.item()})
