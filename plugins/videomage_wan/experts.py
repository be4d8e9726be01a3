"""Wan 2.2 A14B: two experts, one for high noise and one for low noise, that take turns.

In diffusers the pipeline holds ``transformer`` (the high-noise expert) and ``transformer_2``
(the low-noise expert), two ``WanTransformer3DModel`` of the same shape, and ``boundary_ratio``
in ``model_index.json``: a step at timestep ``t >= boundary_ratio * num_train_timesteps`` runs
the high-noise expert, a later one the low-noise expert. The VAE, UMT5 text encoder and
scheduler are Wan 2.1's.

Here the denoiser is one module holding both experts (``high_noise.*`` and ``low_noise.*``), so
adapters attach to it by name as to any backbone; :meth:`Wan22Backbone.predict` routes each
sample of a batch to its expert by timestep, so samplers and objectives need not know.

Roles: ``spatial`` and ``temporal`` are Wan's (:mod:`videomage_wan.backbone`) in *both* experts;
``high_noise.spatial``, ``low_noise.temporal`` etc. are one expert's. Default experts, by role:

* ``temporal`` (the motion adapter) lives in the **high-noise** expert: the early, noisy steps
  decide the layout and the motion of a video; the late steps only refine it, so a motion adapter
  in the low-noise expert would have little motion left to shape.
* ``spatial`` (subject adapters) lives in the **low-noise** expert: the identity and details of a
  subject (texture, colour, face) are resolved in the late steps, and subject adapters trained
  on still images then meddle least with the motion decided earlier.

A stage can put its adapter in other experts (``experts = [...]`` in its config).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from diffusers import WanTransformer3DModel

from videomage import ConfigError
from videomage.kit import check_model_request, config_fingerprint, read_config
from videomage_wan import flow
from videomage_wan.backbone import ROLE_LAYERS, WanBackbone, _shared, load_parts
from videomage_wan.files import COMPONENTS, check_folder, is_expert_family, video_spec

HIGH, LOW = "high_noise", "low_noise"
#: Expert -> its diffusers pipeline component.
SUBFOLDERS = {HIGH: "transformer", LOW: "transformer_2"}
#: Role -> the experts an adapter of that role lives in by default (reasons above).
DEFAULT_EXPERTS = {"temporal": (HIGH,), "spatial": (LOW,)}
#: Wan 2.2 A14B text-to-video's boundary when a folder does not say.
DEFAULT_BOUNDARY_RATIO = 0.875


class ExpertPair(torch.nn.Module):
    """The two experts as one module, so that their layers have one name space (``high_noise.blocks.0...``)."""

    def __init__(self, high_noise: WanTransformer3DModel, low_noise: WanTransformer3DModel) -> None:
        super().__init__()
        self.high_noise = high_noise
        self.low_noise = low_noise

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("call one expert (high_noise or low_noise); Wan22Backbone.predict chooses by timestep")


class Wan22Backbone(WanBackbone):
    """Wan 2.2 A14B text-to-video: a high-noise and a low-noise expert, switched at a boundary timestep."""

    name = "wan22"
    experts = (HIGH, LOW)
    diffusers_component = None  # a two-expert LoRA has no one-file diffusers layout yet

    def __init__(self, *, high_noise: WanTransformer3DModel, low_noise: WanTransformer3DModel,
                 boundary_ratio: float | None, **kwargs: Any) -> None:
        super().__init__(transformer=high_noise, **kwargs)
        if high_noise.config.patch_size != low_noise.config.patch_size or len(high_noise.blocks) != len(low_noise.blocks):
            raise ConfigError("Wan 2.2's two experts must have the same shape (patch size and blocks); got two different transformers")
        low_noise.requires_grad_(False).eval()
        ratio = DEFAULT_BOUNDARY_RATIO if boundary_ratio is None else float(boundary_ratio)
        if not 0.0 < ratio < 1.0:
            raise ConfigError(f"Wan 2.2 boundary_ratio must be between 0 and 1 (exclusive), got {boundary_ratio!r}")
        self.boundary_ratio = ratio
        self.denoiser = ExpertPair(high_noise, low_noise)
        self._roles = {}
        for role, layers in ROLE_LAYERS.items():
            per_expert = {e: [f"{e}.blocks.{i}.{layer}" for i in range(len(high_noise.blocks)) for layer in layers]
                          for e in self.experts}
            self._roles[role] = per_expert[HIGH] + per_expert[LOW]
            for expert, names in per_expert.items():
                self._roles[f"{expert}.{role}"] = names

    # -- loading ---------------------------------------------------------------------------
    @classmethod
    def detect(cls, model: str) -> bool:
        return is_expert_family(model)

    @classmethod
    def from_pretrained(cls, model: str, *, device: str = "cpu", dtype: str = "float32",
                        scheduler: str | None = None) -> Wan22Backbone:
        components = (*COMPONENTS, SUBFOLDERS[LOW])
        torch_dtype = check_model_request(model, dtype, lambda f: check_folder(f, components, is_expert_family))
        parts = load_parts(model, torch_dtype, tuple(SUBFOLDERS.values()))
        index = read_config(model, "model_index.json") or {}
        backbone = cls(high_noise=parts.pop(SUBFOLDERS[HIGH]).to(device), low_noise=parts.pop(SUBFOLDERS[LOW]).to(device),
                       boundary_ratio=index.get("boundary_ratio"), **_shared(parts, device), model_ref=model,
                       spec=video_spec(model), expand_timesteps=bool(index.get("expand_timesteps")))
        return backbone.with_scheduler(scheduler)

    def fingerprint(self) -> str:
        return config_fingerprint(self.denoiser.high_noise.config, text_width=self.text.encoder.config.d_model,
                                  low_noise=config_fingerprint(self.denoiser.low_noise.config),
                                  boundary_ratio=self.boundary_ratio)

    def transformers(self) -> list[WanTransformer3DModel]:
        return [self.denoiser.high_noise, self.denoiser.low_noise]

    @classmethod
    def tiny(cls, folder: str) -> str:
        """A tiny random two-expert Wan 2.2 A14B-shaped model (:mod:`videomage_wan.tiny`)."""
        from videomage_wan.tiny import save_tiny_wan22

        return str(save_tiny_wan22(folder, kind="a14b"))

    @classmethod
    def original_layer_name(cls, name: str) -> str | None:
        return None  # each expert has its own file in Wan's original layout; no one name fits both

    @property
    def dtype(self) -> torch.dtype:
        return self.denoiser.high_noise.patch_embedding.weight.dtype

    def enable_gradient_checkpointing(self) -> None:
        for transformer in self.transformers():
            transformer.enable_gradient_checkpointing()

    # -- roles -----------------------------------------------------------------------------
    def role_modules(self, role: str) -> dict[str, torch.nn.Module]:
        if role not in self._roles:
            raise ConfigError(f"backbone {self.name!r} has no role {role!r}; its roles are {', '.join(self._roles)}")
        return {name: self.denoiser.get_submodule(name) for name in self._roles[role]}

    def default_experts(self, role: str) -> tuple[str, ...]:
        return DEFAULT_EXPERTS.get(role, self.experts)

    # -- experts ---------------------------------------------------------------------------
    @property
    def boundary_timestep(self) -> float:
        """``boundary_ratio * num_train_timesteps``: the high-noise expert denoises at and above it."""
        return self.boundary_ratio * flow.train_steps(self.scheduler_config)

    def expert_at(self, timestep: float) -> str:
        return HIGH if float(timestep) >= self.boundary_timestep else LOW

    def sample_expert_timesteps(self, batch: int, experts: Sequence[str],
                                generator: torch.Generator | None = None) -> torch.Tensor:
        chosen = set(experts)
        if chosen - set(self.experts):
            raise ConfigError(f"backbone {self.name!r} has experts {', '.join(self.experts)}; got {sorted(chosen)}")
        low = self.boundary_timestep if chosen == {HIGH} else 0.0
        high = self.boundary_timestep if chosen == {LOW} else None
        return flow.sample_timesteps(batch, self.scheduler_config, generator, low=low, high=high).to(self.device)

    # -- diffusion -------------------------------------------------------------------------
    def predict(self, latents: torch.Tensor, timesteps: torch.Tensor, prompt_embeds: torch.Tensor) -> torch.Tensor:
        """Each sample runs the expert of its timestep (a batch may hold both, as in training)."""
        timesteps, prompt_embeds = self._per_sample(latents, timesteps, prompt_embeds)
        high = timesteps >= self.boundary_timestep
        if bool(high.all()) or not bool(high.any()):
            expert = self.denoiser.high_noise if bool(high.all()) else self.denoiser.low_noise
            return self._forward(expert, latents, timesteps, prompt_embeds)
        parts, order = [], []
        for mask, expert in ((high, self.denoiser.high_noise), (~high, self.denoiser.low_noise)):
            index = mask.nonzero().flatten()
            parts.append(self._forward(expert, latents[index], timesteps[index], prompt_embeds[index]))
            order.append(index)
        return torch.cat(parts)[torch.argsort(torch.cat(order))]
