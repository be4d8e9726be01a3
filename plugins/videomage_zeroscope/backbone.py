"""The ZeroScope / ModelScope text-to-video backbone (diffusers ``UNet3DConditionModel``).

This is the worked example of the backbone contract (:class:`videomage.Backbone`): loading
component by component from a diffusers-layout folder or a Hub id, roles found from the model's
structure, a CLIP text encoder with learned tokens, a per-frame VAE run in chunks, epsilon
prediction with a DDIM sampling scheduler, and attention capture on request.

Roles, found by module *type* so that every UNet3D config works:

* ``spatial``: the linear layers of every ``Transformer2DModel``'s transformer blocks (self-
  and cross-attention q, k, v, out; feed-forward);
* ``temporal``: the same inside every ``TransformerTemporalModel`` (``transformer_in`` and the
  ``temp_attentions``): temporal self-attention and its feed-forward.

The projections in and out of each transformer belong to no role: the paper adapts the
attention and feed-forward layers only.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import diffusers
import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet3DConditionModel
from diffusers.models.attention_processor import Attention
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from diffusers.models.transformers.transformer_temporal import TransformerTemporalModel
from transformers import CLIPTextModel, CLIPTokenizer

from videomage import AttentionStore, Backbone, ConfigError, VideoSpec
from videomage.kit import (TextMethods, capturing, check_model_request, checkpoint_always,
                           checkpointed, config_fingerprint, use_safetensors)
from videomage_zeroscope import attention
from videomage_zeroscope.files import check_folder, is_family, video_spec
from videomage_zeroscope.tokens import CLIPText

ROLE_CONTAINERS = {"spatial": Transformer2DModel, "temporal": TransformerTemporalModel}


def find_roles(unet: torch.nn.Module) -> dict[str, list[str]]:
    """Role -> qualified names of the linear layers inside that role's transformer blocks."""
    roles: dict[str, list[str]] = {role: [] for role in ROLE_CONTAINERS}
    for name, module in unet.named_modules():
        for role, container in ROLE_CONTAINERS.items():
            if isinstance(module, container):
                for sub, leaf in module.transformer_blocks.named_modules():
                    if isinstance(leaf, torch.nn.Linear):
                        roles[role].append(f"{name}.transformer_blocks.{sub}")
    return roles


def find_attention(unet: torch.nn.Module) -> tuple[list[str], list[str]]:
    """Names of the spatial cross-attention modules and of the temporal self-attention modules."""
    cross, temporal = [], []
    for name, module in unet.named_modules():
        if isinstance(module, Transformer2DModel):
            cross += [f"{name}.{s}" for s, m in module.named_modules() if isinstance(m, Attention) and m.is_cross_attention]
        elif isinstance(module, TransformerTemporalModel):
            temporal += [f"{name}.{s}" for s, m in module.named_modules() if isinstance(m, Attention)]
    return cross, temporal


class ZeroScopeBackbone(TextMethods, Backbone):
    """ZeroScope / ModelScope text-to-video: UNet3D denoiser, per-frame VAE, CLIP text encoder."""

    name = "zeroscope"
    roles = ("spatial", "temporal")
    diffusers_component = "unet"
    textual_inversion = True  # CLIP: learned tokens load through diffusers' load_textual_inversion
    # No original_layer_name: ComfyUI has no model class for ModelScope/ZeroScope UNet3D
    # checkpoints, so no ComfyUI LoRA key would map to a layer (`export --format comfyui` refuses).

    def __init__(self, *, unet: UNet3DConditionModel, vae: AutoencoderKL, text_encoder: CLIPTextModel,
                 tokenizer: CLIPTokenizer, scheduler_config: Mapping[str, Any], model_ref: str, spec: VideoSpec,
                 vae_chunk: int = 8) -> None:
        for module in (unet, vae, text_encoder):
            module.requires_grad_(False).eval()
        self.denoiser = unet
        self.vae = vae
        self.text = CLIPText(tokenizer, text_encoder)
        self.scheduler_config = dict(scheduler_config)
        self.noise_scheduler = DDPMScheduler.from_config(self.scheduler_config)
        self.prediction_type = self.scheduler_config.get("prediction_type", "epsilon")
        self.model_ref = model_ref
        self.video_spec = spec
        self.vae_chunk = vae_chunk
        self.vae_scale = 2 ** (len(vae.config.block_out_channels) - 1)
        self._roles = find_roles(unet)
        self._cross_layers, self._temporal_layers = find_attention(unet)
        self._capture: attention._Capture | None = None
        self.default_scheduler: str | None = None  # a scheduler class name chosen at load time

    # -- loading ---------------------------------------------------------------------------
    @classmethod
    def detect(cls, model: str) -> bool:
        return is_family(model)

    @classmethod
    def from_pretrained(cls, model: str, *, device: str = "cpu", dtype: str = "float32",
                        scheduler: str | None = None) -> ZeroScopeBackbone:
        torch_dtype = check_model_request(model, dtype, check_folder)
        try:
            # A .bin-only component is read through torch.load(weights_only=True) (videomage.weightfiles).
            unet = UNet3DConditionModel.from_pretrained(model, subfolder="unet", torch_dtype=torch_dtype,
                                                        use_safetensors=use_safetensors(model, "unet"))
            vae = AutoencoderKL.from_pretrained(model, subfolder="vae", torch_dtype=torch_dtype,
                                                use_safetensors=use_safetensors(model, "vae"))
            text_encoder = CLIPTextModel.from_pretrained(model, subfolder="text_encoder", dtype=torch_dtype,
                                                         use_safetensors=use_safetensors(model, "text_encoder"))
            tokenizer = CLIPTokenizer.from_pretrained(model, subfolder="tokenizer")
            scheduler_config = DDPMScheduler.load_config(model, subfolder="scheduler")
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"could not load model {model!r}: {exc}. Pass a local folder in the diffusers layout with "
                f"safetensors weights, or download the model once with `hf download {model}`"
            ) from None
        spec = video_spec(model, unet.config.sample_size, 2 ** (len(vae.config.block_out_channels) - 1))
        backbone = cls(unet=unet.to(device), vae=vae.to(device), text_encoder=text_encoder.to(device), tokenizer=tokenizer,
                       scheduler_config=scheduler_config, model_ref=model, spec=spec)
        if scheduler is not None:
            backbone.make_scheduler(scheduler)  # fail now, not after training
            backbone.default_scheduler = scheduler
        return backbone

    @classmethod
    def tiny(cls, folder: str) -> str:
        """A tiny random ZeroScope model (:mod:`videomage_zeroscope.tiny`)."""
        from videomage_zeroscope.tiny import save_tiny_zeroscope

        return str(save_tiny_zeroscope(folder))

    @classmethod
    def on_meta(cls, model: str, *, dtype: str = "bfloat16") -> ZeroScopeBackbone:
        """Built from the folder's configs, or the published model's (:mod:`videomage_zeroscope.meta`), on the meta device."""
        from videomage_zeroscope.meta import build_on_meta

        return build_on_meta(cls, model, dtype)

    def fingerprint(self) -> str:
        return config_fingerprint(self.denoiser.config, text_width=self.text.encoder.config.hidden_size)

    def enable_gradient_checkpointing(self) -> None:
        """Recompute every layer's activations in the backward pass of training.

        The layers are those :meth:`activation_checkpointing` lists (resnets, temporal
        convolutions, spatial and temporal transformers, resamplers, ``transformer_in``), so each
        keeps only its input: a subject step, a motion step (whose adapter lives in the temporal
        transformers) and each fusion term hold one layer's activations at a time in the backward
        pass. ``UNet3DConditionModel`` itself refuses diffusers' gradient checkpointing; the
        layers are wrapped here instead, with the checkpoint function that tells a recomputation
        which attention capture was open.
        """
        checkpoint_always(self._checkpoint_layers())

    def _checkpoint_layers(self) -> list[torch.nn.Module]:
        unet = self.denoiser
        blocks = [b for b in (*unet.down_blocks, unet.mid_block, *unet.up_blocks) if b is not None]
        layers = [layer for block in blocks for child in block.children() if isinstance(child, torch.nn.ModuleList)
                  for layer in child]
        if getattr(unet, "transformer_in", None) is not None:
            layers.append(unet.transformer_in)
        return layers

    @contextmanager
    def activation_checkpointing(self) -> Iterator[bool]:
        """Checkpoint (non-reentrant) every layer of the UNet's blocks inside the block.

        The layers are the blocks' resnets, temporal convolutions, spatial and temporal
        transformers and resamplers, and the UNet's input temporal transformer. Only their inputs
        are kept; their activations are recomputed in the backward pass, layer by layer, which
        costs about one more forward pass and bounds what backpropagating to the latents (SCS
        guidance) holds at once to one layer's activations.
        """
        with checkpointed(self._checkpoint_layers()):
            yield True

    # -- roles -----------------------------------------------------------------------------
    def role_modules(self, role: str) -> dict[str, torch.nn.Module]:
        if role not in self._roles:
            raise ConfigError(f"backbone {self.name!r} has no role {role!r}; its roles are {', '.join(self.roles)}")
        modules = dict(self.denoiser.named_modules())
        return {name: modules[name] for name in self._roles[role]}

    # -- pixels <-> latents ----------------------------------------------------------------
    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        b, f = video.shape[:2]
        frames = (video.reshape(b * f, *video.shape[2:]).to(self.device, self.vae.dtype) * 2 - 1)
        chunks = [self.vae.encode(frames[i : i + self.vae_chunk]).latent_dist.mode() for i in range(0, b * f, self.vae_chunk)]
        latents = torch.cat(chunks) * self.vae.config.scaling_factor
        return latents.reshape(b, f, *latents.shape[1:]).permute(0, 2, 1, 3, 4).to(self.dtype)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        b, c, f, h, w = latents.shape
        flat = latents.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w).to(self.vae.dtype) / self.vae.config.scaling_factor
        frames = torch.cat([self.vae.decode(flat[i : i + self.vae_chunk]).sample for i in range(0, b * f, self.vae_chunk)])
        return ((frames + 1) / 2).clamp(0, 1).reshape(b, f, *frames.shape[1:])

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        if height % self.vae_scale or width % self.vae_scale:
            raise ConfigError(f"height and width must be multiples of {self.vae_scale} for this VAE, got {height}x{width}")
        return self.vae.config.latent_channels, frames, height // self.vae_scale, width // self.vae_scale

    # -- diffusion -------------------------------------------------------------------------
    def predict(self, latents: torch.Tensor, timesteps: torch.Tensor, prompt_embeds: torch.Tensor) -> torch.Tensor:
        b = latents.shape[0]
        timesteps = torch.as_tensor(timesteps, device=latents.device)
        if timesteps.numel() == 1:
            timesteps = timesteps.reshape(1).expand(b)
        if prompt_embeds.shape[0] == 1 and b > 1:
            prompt_embeds = prompt_embeds.expand(b, *prompt_embeds.shape[1:])
        if self._capture is not None:
            self._capture.batch, self._capture.frames, self._capture.size = b, latents.shape[2], tuple(latents.shape[-2:])
        # Callers may hold float32 latents on a half-precision model (samplers do; fusion's teacher
        # videos are sampled): the UNet takes its own dtype.
        return self.denoiser(latents.to(self.dtype), timesteps, encoder_hidden_states=prompt_embeds.to(self.dtype)).sample

    def make_scheduler(self, name: str | None = None) -> Any:
        name = name or self.default_scheduler or self.scheduler_config.get("_class_name", "DDIMScheduler")
        cls = getattr(diffusers, name, None)
        if not (isinstance(cls, type) and hasattr(cls, "from_config") and name.endswith("Scheduler")):
            choices = sorted(n for n in dir(diffusers) if n.endswith("Scheduler") and not n.startswith("_"))[:12]
            raise ConfigError(f"unknown scheduler {name!r}; use a diffusers scheduler class name such as {', '.join(choices)}")
        return cls.from_config(self.scheduler_config)

    def sample_timesteps(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        n = self.noise_scheduler.config.num_train_timesteps
        return torch.randint(0, n, (batch,), generator=generator).to(self.device)

    def add_noise(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        return self.noise_scheduler.add_noise(latents, noise, timesteps)

    def training_target(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        if self.prediction_type == "epsilon":
            return noise
        if self.prediction_type == "v_prediction":
            return self.noise_scheduler.get_velocity(latents, noise, timesteps)
        raise ConfigError(f"{self.model_ref!r}: unsupported prediction_type {self.prediction_type!r} in its scheduler config")

    # -- attention -------------------------------------------------------------------------
    @contextmanager
    def capture_attention(self, *, cross_tokens: Sequence[int] | None = None, temporal: bool = False) -> Iterator[AttentionStore]:
        if not cross_tokens and not temporal:
            yield AttentionStore()  # nothing requested: the forward pass is untouched
            return
        if self._capture is not None:
            raise RuntimeError("attention captures cannot be nested; close the outer capture first")
        with attention.capture(self.denoiser, self._cross_layers, self._temporal_layers,
                               cross_tokens=cross_tokens, temporal=temporal) as (store, state), capturing(state):
            self._capture = state
            try:
                yield store
            finally:
                self._capture = None
