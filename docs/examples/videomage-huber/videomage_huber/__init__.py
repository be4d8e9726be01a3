"""An example third-party videomage plugin: a Huber denoising objective.

The squared error of the paper's losses lets a few badly-predicted pixels dominate a small
batch; the Huber loss is quadratic near zero and linear beyond ``delta``, so outliers pull
less. Use it in place of ``denoise`` when subject images are few and noisy.
"""

from __future__ import annotations

import torch

import videomage


class HuberDenoise(videomage.Objective):
    """Denoising loss with a Huber penalty instead of the squared error.

    Batch keys: ``latents`` ``[B, C, F, h, w]`` (clean latents) and ``prompts`` (B strings);
    optional ``noise`` and ``timesteps`` to fix the draw.
    """

    name = "huber_denoise"

    def __init__(self, delta: float = 0.1) -> None:
        if delta <= 0:
            raise videomage.ConfigError(f"huber_denoise: delta must be > 0, got {delta!r}")
        self.delta = delta

    def loss(self, ctx, batch):
        backbone = ctx.backbone
        x0 = batch["latents"]
        noise = batch.get("noise")
        if noise is None:
            noise = torch.randn(x0.shape, generator=ctx.generator).to(x0)
        t = batch.get("timesteps")
        if t is None:
            t = backbone.sample_timesteps(x0.shape[0], ctx.generator).to(x0.device)
        x_t = backbone.add_noise(x0, noise, t)
        pred = backbone.predict(x_t, t, backbone.encode_prompt(batch["prompts"]))
        target = backbone.training_target(x0, noise, t)
        loss = torch.nn.functional.huber_loss(pred.float(), target.float(), delta=self.delta)
        return videomage.ObjectiveOutput(loss=loss, logs={"huber": loss.item()})


@videomage.hookimpl
def register_objectives():
    return [HuberDenoise]
