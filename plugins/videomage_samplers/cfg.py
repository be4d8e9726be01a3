"""Plain classifier-free guidance sampling: the denoising loop written out.

``eps = eps(x_t, c_neg) + s * (eps(x_t, c) - eps(x_t, c_neg))`` with the unconditional and
conditional passes batched into one forward. Any active adapters (with weights) apply to both.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch
from tqdm.auto import tqdm

from videomage import Adapter, Backbone, ConfigError, Sampler

#: Request keys every bundled sampler understands, with their defaults.
DEFAULTS: dict[str, Any] = {
    "prompt": None,
    "negative_prompt": "",
    "steps": 50,
    "guidance_scale": 9.0,
    "scheduler": None,
    "seed": 0,
    "frames": None,
    "height": None,
    "width": None,
    "adapters": {},
    "timestep_spacing": None,
    "progress": True,
}

#: Timestep spacings a diffusers scheduler config may name.
SPACINGS = ("leading", "trailing", "linspace")


def resolve(request: Mapping[str, Any], defaults: Mapping[str, Any], sampler: str) -> dict[str, Any]:
    """Fill defaults and refuse unknown keys, so a typo never silently does nothing."""
    unknown = sorted(set(request) - set(defaults))
    if unknown:
        raise ConfigError(f"sampler {sampler!r}: unknown request key {unknown[0]!r}; valid keys: {sorted(defaults)}")
    out = {**defaults, **request}
    if not out["prompt"]:
        raise ConfigError(f"sampler {sampler!r}: a non-empty 'prompt' is required")
    if int(out["steps"]) < 1:
        raise ConfigError(f"sampler {sampler!r}: steps must be >= 1, got {out['steps']!r}")
    if out["timestep_spacing"] not in (None, *SPACINGS):
        raise ConfigError(f"sampler {sampler!r}: timestep_spacing must be one of {', '.join(SPACINGS)} (or None for the "
                          f"model's own), got {out['timestep_spacing']!r}")
    return out


def make_scheduler(backbone: Backbone, req: Mapping[str, Any]) -> Any:
    """The requested scheduler with its timesteps set.

    ``timestep_spacing`` (None: the model's config) overrides the config's spacing, where the
    scheduler has one. A few-step sample needs ``"trailing"``: ZeroScope's ``"leading"`` with 25
    steps starts at t = 961 of 999, from noise the model never saw at that level. Flow-matching
    schedulers start at pure noise whatever the spacing.
    """
    scheduler = backbone.make_scheduler(req["scheduler"])
    spacing = req.get("timestep_spacing")
    if spacing is not None and "timestep_spacing" in scheduler.config:
        scheduler = type(scheduler).from_config(scheduler.config, timestep_spacing=spacing)
    scheduler.set_timesteps(int(req["steps"]))
    return scheduler


def initial_latents(backbone: Backbone, req: Mapping[str, Any], scheduler: Any) -> tuple[torch.Tensor, torch.Generator]:
    """Seeded starting noise at the requested (or native) size, and the generator to go on with."""
    spec = backbone.video_spec
    frames, height, width = (req["frames"] or spec.frames), (req["height"] or spec.height), (req["width"] or spec.width)
    generator = torch.Generator().manual_seed(int(req["seed"]))
    shape = (1, *backbone.latent_shape(frames, height, width))
    noise = torch.randn(shape, generator=generator, dtype=torch.float32)
    # Flow-matching schedulers start from unit noise and have no ``init_noise_sigma``.
    sigma = getattr(scheduler, "init_noise_sigma", 1.0)
    # float32 whatever the model's dtype: in bf16 a step's change (or an SCS refinement) below
    # 1/128 of the latent's size would round away. Only the model's input is cast (``predict``).
    return (noise * sigma).to(backbone.device), generator


def scale_input(scheduler: Any, latents: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``scheduler.scale_model_input``, or the latents unchanged for schedulers without one (flow matching)."""
    scale = getattr(scheduler, "scale_model_input", None)
    return latents if scale is None else scale(latents, t)


def predict(backbone: Backbone, latents: torch.Tensor, t: torch.Tensor, embeds: torch.Tensor) -> torch.Tensor:
    """``backbone.predict`` on latents cast to the model's dtype; the prediction back in float32.

    The cast is differentiable, so SCS gradients reach its float32 latents through it.
    """
    out = backbone.predict(latents.to(backbone.dtype), t.reshape(-1).expand(latents.shape[0]).to(latents.device), embeds)
    return out.float()


def guided(backbone: Backbone, latents: torch.Tensor, t: torch.Tensor, embeds: torch.Tensor, scale: float, scheduler: Any) -> torch.Tensor:
    """One batched CFG prediction for ``B`` latents: ``embeds`` holds ``B`` negative then ``B``
    positive prompt states (one of each for one video)."""
    inp = scale_input(scheduler, torch.cat([latents, latents]), t)
    uncond, cond = predict(backbone, inp, t, embeds).chunk(2)
    return uncond + scale * (cond - uncond)


def scheduler_step(scheduler: Any, eps: torch.Tensor, t: torch.Tensor, latents: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``scheduler.step`` passing the generator to schedulers that draw noise (DDIM with eta > 0...)."""
    if "generator" in inspect.signature(scheduler.step).parameters:
        return scheduler.step(eps, t, latents, generator=generator).prev_sample
    return scheduler.step(eps, t, latents).prev_sample


class CFGSampler(Sampler):
    """Classifier-free guidance with the cond/uncond passes batched.

    Request keys: ``prompt``, ``negative_prompt`` (""), ``steps`` (50), ``guidance_scale`` (9),
    ``scheduler`` (the backbone's default, or a diffusers scheduler class name), ``seed`` (0),
    ``frames``/``height``/``width`` (the backbone's native size), ``adapters`` (name -> weight,
    all others off), ``timestep_spacing`` (None: the model's; "trailing" for few-step samples),
    ``progress`` (True). Latents stay float32 whatever the model's dtype.
    """

    name = "cfg"

    def sample(self, backbone: Backbone, adapter: Adapter | None, request: Mapping[str, Any]) -> torch.Tensor:
        req = resolve(request, DEFAULTS, self.name)
        if adapter is not None:
            adapter.activate(backbone, dict(req["adapters"]))
        elif req["adapters"]:
            raise ConfigError("sampler 'cfg': adapters were requested but no adapter plugin was given")
        scheduler = make_scheduler(backbone, req)
        latents, generator = initial_latents(backbone, req, scheduler)
        with torch.no_grad():
            embeds = backbone.encode_prompt([req["negative_prompt"], req["prompt"]])
            for t in tqdm(scheduler.timesteps, desc="sampling", disable=not req["progress"]):
                eps = guided(backbone, latents, t, embeds, float(req["guidance_scale"]), scheduler)
                latents = scheduler_step(scheduler, eps, t, latents, generator)
        return latents
