"""An example third-party videomage plugin: a Huber denoising objective and a rescaled-CFG sampler.

* ``huber_denoise``: the squared error of the paper's losses lets a few badly-predicted pixels
  dominate a small batch; the Huber loss is quadratic near zero and linear beyond ``delta``, so
  outliers pull less. Use it in place of ``denoise`` when subject images are few and noisy.
* ``rescaled_cfg``: classifier-free guidance whose guided prediction is rescaled towards the
  standard deviation of the conditional one (Lin et al. 2024, "Common Diffusion Noise Schedules
  and Sample Steps are Flawed", Eq. 15-16), which tames the over-exposure of large guidance scales.
"""

from __future__ import annotations

import attrs
import torch

import videomage
from videomage.options import from_values, number


class HuberDenoise(videomage.Objective):
    """Denoising loss with a Huber penalty instead of the squared error.

    Batch keys: ``latents`` ``[B, C, F, h, w]`` (clean latents) and ``prompts`` (B strings);
    optional ``noise`` and ``timesteps`` to fix the draw.
    """

    name = "huber_denoise"

    @attrs.frozen(kw_only=True)
    class Options:
        delta: float = number(0.1, above=0, help="where the penalty turns from quadratic to linear")

    def __init__(self, options=None, **values) -> None:
        self.options = from_values(self, options, values)

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
        loss = torch.nn.functional.huber_loss(pred.float(), target.float(), delta=self.options.delta)
        return videomage.ObjectiveOutput(loss=loss, logs={"huber": loss.item()})


def rescale(guided: torch.Tensor, cond: torch.Tensor, phi: float) -> torch.Tensor:
    """``phi * guided * std(cond) / std(guided) + (1 - phi) * guided``, stds per sample."""
    dims = tuple(range(1, guided.ndim))
    ratio = cond.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True).clamp_min(1e-12)
    return phi * guided * ratio + (1 - phi) * guided


class RescaledCFG(videomage.Sampler):
    """Classifier-free guidance with the guided prediction rescaled; every concept is active."""

    name = "rescaled_cfg"

    @attrs.frozen(kw_only=True)
    class Options:
        phi: float = number(0.7, low=0, help="how far the guided prediction is rescaled (0: plain CFG)")

    def __init__(self, options=None, **values) -> None:
        self.options = from_values(self, options, values)

    def sample(self, backbone, adapter, request: videomage.SamplingRequest) -> torch.Tensor:
        if adapter is not None:
            adapter.activate(backbone, request.adapter_weights())  # every subject and the motion
        scheduler = backbone.make_scheduler(request.scheduler)
        scheduler.set_timesteps(request.steps)
        spec = backbone.video_spec
        shape = backbone.latent_shape(request.frames or spec.frames, request.height or spec.height,
                                      request.width or spec.width)
        generator = torch.Generator().manual_seed(request.seed)
        noise = request.latents if request.latents is not None else torch.randn((1, *shape), generator=generator)
        latents = (noise.float() * getattr(scheduler, "init_noise_sigma", 1.0)).to(backbone.device)
        with torch.no_grad():
            embeds = backbone.encode_prompt([request.negative_prompt, request.prompt])
            for t in scheduler.timesteps:
                x = torch.cat([latents, latents])
                if hasattr(scheduler, "scale_model_input"):
                    x = scheduler.scale_model_input(x, t)
                uncond, cond = backbone.predict(x.to(backbone.dtype), t.reshape(1).expand(2).to(x.device), embeds).float().chunk(2)
                guided = uncond + request.guidance_scale * (cond - uncond)
                latents = scheduler.step(rescale(guided, cond, self.options.phi), t, latents).prev_sample
        return latents


@videomage.hookimpl
def register_objectives():
    return [HuberDenoise]


@videomage.hookimpl
def register_samplers():
    return [RescaledCFG]
