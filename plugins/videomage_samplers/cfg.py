"""Plain classifier-free guidance sampling: the denoising loop written out.

``eps = eps(x_t, c_neg) + s * (eps(x_t, c) - eps(x_t, c_neg))`` with the unconditional and
conditional passes batched into one forward. Any active adapters (with weights) apply to both.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import attrs
import torch
from tqdm.auto import tqdm

from videomage import Adapter, Backbone, ConfigError, Sampler, SamplingRequest
from videomage.kit import FIELDS, SPACINGS, as_dict, build, coerce, did_you_mean, format_choices, from_values

#: Request keys of videomage 0.1's request dicts, with their defaults (kept for old callers).
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


def as_request(request: SamplingRequest | Mapping[str, Any]) -> SamplingRequest:
    """A typed request; a 0.1 request dict is converted (its sampler options are ignored here).

    The scheduler and starting-noise helpers read no prompt, and 0.1 callers gave them none."""
    if isinstance(request, Mapping) and not request.get("prompt"):
        request = {**request, "prompt": "(none)"}
    return coerce(request)[0]


def resolve(request: Mapping[str, Any], defaults: Mapping[str, Any], sampler: str) -> dict[str, Any]:
    """videomage 0.1's request dict with defaults filled and unknown keys refused (kept for old callers)."""
    unknown = sorted(set(request) - set(defaults))
    if unknown:
        raise ConfigError(f"sampler {sampler!r}: unknown request key {unknown[0]!r}; valid keys: {sorted(defaults)}")
    return {**defaults, **request}


def with_request_options(sampler: Any, extra: Mapping[str, Any]) -> Any:
    """The sampler's options with those a 0.1 request dict carried; a key that is neither a request
    field nor an option is refused with the closest of both."""
    if not extra:
        return sampler.options
    valid = [f.name for f in attrs.fields(type(sampler.options))]
    for key in extra:
        if key not in valid:
            raise ConfigError(f"sampler {sampler.name!r}: unknown request key {key!r}.{did_you_mean(key, [*FIELDS, *valid])} "
                              f"Request fields: {format_choices(FIELDS)}; options: {format_choices(valid)}.")
    return build(type(sampler), {**as_dict(sampler.options), **extra}, where=f"sampler {sampler.name!r}")


def make_scheduler(backbone: Backbone, req: SamplingRequest | Mapping[str, Any]) -> Any:
    """The requested scheduler with its timesteps set.

    ``timestep_spacing`` (None: the model's config) overrides the config's spacing, where the
    scheduler has one. A few-step sample needs ``"trailing"``: ZeroScope's ``"leading"`` with 25
    steps starts at t = 961 of 999, from noise the model never saw at that level. Flow-matching
    schedulers start at pure noise whatever the spacing.
    """
    req = as_request(req)
    scheduler = backbone.make_scheduler(req.scheduler)
    spacing = req.timestep_spacing
    if spacing is not None and "timestep_spacing" in scheduler.config:
        scheduler = type(scheduler).from_config(scheduler.config, timestep_spacing=spacing)
    scheduler.set_timesteps(int(req.steps))
    return scheduler


def initial_latents(backbone: Backbone, req: SamplingRequest | Mapping[str, Any], scheduler: Any) -> tuple[torch.Tensor, torch.Generator]:
    """Seeded starting noise at the requested (or native) size, or the request's own starting
    latents, and the generator to go on with."""
    req = as_request(req)
    spec = backbone.video_spec
    frames, height, width = (req.frames or spec.frames), (req.height or spec.height), (req.width or spec.width)
    generator = torch.Generator().manual_seed(int(req.seed))
    if req.latents is not None:
        noise = req.latents.detach().to("cpu", torch.float32)
    else:
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

    Every concept of the request (its subjects and its motion) is active, each adapter at its
    concept's weight; all other adapters are off. CFG has no options of its own: the request's
    ``guidance_scale``, ``steps``, ``scheduler`` and ``timestep_spacing`` are all it needs.
    Latents stay float32 whatever the model's dtype.
    """

    name = "cfg"

    @attrs.frozen(kw_only=True)
    class Options:
        """CFG takes no options."""

    def __init__(self, options: Options | None = None, **values: Any) -> None:
        self.options = from_values(self, options, values)

    def sample(self, backbone: Backbone, adapter: Adapter | None, request: SamplingRequest | Mapping[str, Any]) -> torch.Tensor:
        req, extra = coerce(request)
        with_request_options(self, extra)  # refuses an unknown key by name
        weights = req.adapter_weights()
        if adapter is not None:
            adapter.activate(backbone, weights)
        elif weights:
            raise ConfigError(f"sampler 'cfg': concepts {sorted(weights)} were requested but no adapter plugin was given")
        scheduler = make_scheduler(backbone, req)
        latents, generator = initial_latents(backbone, req, scheduler)
        with torch.no_grad():
            embeds = backbone.encode_prompt([req.negative_prompt, req.prompt])
            for t in tqdm(scheduler.timesteps, desc="sampling", disable=not req.progress):
                eps = guided(backbone, latents, t, embeds, float(req.guidance_scale), scheduler)
                latents = scheduler_step(scheduler, eps, t, latents, generator)
        return latents
