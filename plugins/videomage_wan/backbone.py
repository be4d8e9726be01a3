"""The Wan 2.1 text-to-video backbone: a diffusion transformer with full 3D attention.

Components, loaded one by one from a diffusers-layout folder or a Hub id
(``Wan-AI/Wan2.1-T2V-1.3B-Diffusers``): ``WanTransformer3DModel`` (the denoiser),
``AutoencoderKLWan`` (a causal video VAE, 8x down in space and 4x in time: ``1 + 4k`` frames
make ``1 + k`` latent frames), a UMT5 text encoder with a T5 tokenizer, and a flow-matching
scheduler config. Predictions are velocities (:mod:`videomage_wan.flow`).

Roles. Wan has no separate spatial and temporal layers: each block has a 3D self-attention
(``attn1``, every frame and location attends to every other), a cross-attention to the text
(``attn2``) and a feed-forward network (``ffn``). The mapping:

* ``spatial`` = ``attn2`` q, k, v, out and the ``ffn`` linears of every block. Appearance enters
  through the text (cross-attention) and is rendered per token (the feed-forward acts on each
  token alone), and neither mixes frames: a subject adapter trained on still images has no layer
  here in which to learn dynamics.
* ``temporal`` = ``attn1`` q, k, v, out of every block: the only place where frames exchange
  information, hence the only place a motion adapter can carry motion. The temporal attention
  maps of SCS are read from the same layers (:mod:`videomage_wan.attention`).

The roles are disjoint and cover every adaptable linear of the blocks; the time and text
embedders and the output projection belong to no role.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanTransformer3DModel
from transformers import AutoTokenizer, UMT5EncoderModel

from videomage import AttentionStore, Backbone, ConfigError
from videomage.kit import (TextMethods, capturing, check_model_request, checkpoint_call,
                           checkpointed, config_fingerprint, read_config, use_safetensors)
from videomage_wan import attention, flow, names
from videomage_wan.files import check_folder, is_family, video_spec
from videomage_wan.text import T5Text


#: Role -> the linear layers of each block (relative to ``blocks.<i>``).
ROLE_LAYERS: dict[str, tuple[str, ...]] = {
    "spatial": ("attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0", "ffn.net.0.proj", "ffn.net.2"),
    "temporal": ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0"),
}


def load_parts(model: str, torch_dtype: torch.dtype, transformers: Sequence[str]) -> dict[str, Any]:
    """Every component of a Wan folder or Hub id, the transformers named by subfolder."""
    try:
        parts: dict[str, Any] = {
            sub: WanTransformer3DModel.from_pretrained(model, subfolder=sub, torch_dtype=torch_dtype,
                                                       use_safetensors=use_safetensors(model, sub))
            for sub in transformers
        }
        # The VAE stays in float32 whatever the dtype: Wan's VAE loses detail in half precision.
        parts["vae"] = AutoencoderKLWan.from_pretrained(model, subfolder="vae", torch_dtype=torch.float32,
                                                        use_safetensors=use_safetensors(model, "vae"))
        parts["text_encoder"] = UMT5EncoderModel.from_pretrained(model, subfolder="text_encoder", dtype=torch_dtype,
                                                                 use_safetensors=use_safetensors(model, "text_encoder"))
        parts["tokenizer"] = AutoTokenizer.from_pretrained(model, subfolder="tokenizer")
        parts["scheduler_config"] = UniPCMultistepScheduler.load_config(model, subfolder="scheduler")
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"could not load Wan model {model!r}: {exc}. Pass a local folder in the diffusers layout "
            f"({'/, '.join((*transformers, 'vae', 'text_encoder', 'tokenizer', 'scheduler'))}/), or download the "
            f"model once with `hf download {model}`"
        ) from None
    return parts


def _shared(parts: dict[str, Any], device: str) -> dict[str, Any]:
    """The constructor arguments every Wan backbone takes, moved to ``device``."""
    return {"vae": parts["vae"].to(device), "text_encoder": parts["text_encoder"].to(device),
            "tokenizer": parts["tokenizer"], "scheduler_config": parts["scheduler_config"]}


class WanBackbone(TextMethods, Backbone):
    """Wan 2.1 text-to-video: full-attention transformer, causal video VAE, UMT5, flow matching."""

    name = "wan"
    roles = ("spatial", "temporal")
    prediction_type = "flow"
    diffusers_component = "transformer"

    #: Blocks whose maps a capture records (``None``: every block). Fewer blocks, less time and memory.
    capture_blocks: Sequence[int] | None = None
    #: Bound on one chunk of attention probabilities during a capture (see ``attention``).
    attention_chunk_elements: int = attention.CHUNK_ELEMENTS

    def __init__(self, *, transformer: WanTransformer3DModel, vae: AutoencoderKLWan, text_encoder: UMT5EncoderModel,
                 tokenizer: Any, scheduler_config: Mapping[str, Any], model_ref: str, spec,
                 expand_timesteps: bool = False) -> None:
        for module in (transformer, vae, text_encoder):
            module.requires_grad_(False).eval()
        self.denoiser = transformer
        self.vae = vae
        self.text = T5Text(tokenizer, text_encoder)
        self.scheduler_config = dict(scheduler_config)
        self.model_ref = model_ref
        self.video_spec = spec
        # Wan 2.1's VAE is 8x in space; Wan 2.2's (TI2V-5B) adds a 2x2 pixel patchify: 16x.
        self.time_scale = int(vae.config.get("scale_factor_temporal") or 2 ** sum(bool(x) for x in vae.config.temperal_downsample))
        self.space_scale = int(vae.config.get("scale_factor_spatial") or 2 ** len(vae.config.temperal_downsample))
        # TI2V-5B embeds the timestep per token (diffusers' ``expand_timesteps``); text-to-video
        # gives every token the same one, as the pipeline does with no image.
        self.expand_timesteps = bool(expand_timesteps)
        self.default_scheduler: str | None = None
        self._state: attention.CaptureState | None = None
        self._roles = {role: [f"blocks.{i}.{layer}" for i in range(len(transformer.blocks)) for layer in layers]
                       for role, layers in ROLE_LAYERS.items()}

    # -- loading ---------------------------------------------------------------------------
    @classmethod
    def detect(cls, model: str) -> bool:
        return is_family(model)

    @classmethod
    def from_pretrained(cls, model: str, *, device: str = "cpu", dtype: str = "float32",
                        scheduler: str | None = None) -> WanBackbone:
        torch_dtype = check_model_request(model, dtype, check_folder)
        parts = load_parts(model, torch_dtype, ("transformer",))
        index = read_config(model, "model_index.json") or {}
        backbone = cls(transformer=parts.pop("transformer").to(device), **_shared(parts, device), model_ref=model,
                       spec=video_spec(model), expand_timesteps=bool(index.get("expand_timesteps")))
        return backbone.with_scheduler(scheduler)

    def with_scheduler(self, scheduler: str | None):
        """Make ``scheduler`` (a class name) the default, refused now rather than after training."""
        if scheduler is not None:
            self.make_scheduler(scheduler)
            self.default_scheduler = scheduler
        return self

    @classmethod
    def tiny(cls, folder: str) -> str:
        """A tiny random Wan 2.1 model (:mod:`videomage_wan.tiny`)."""
        from videomage_wan.tiny import save_tiny_wan

        return str(save_tiny_wan(folder))

    @classmethod
    def on_meta(cls, model: str, *, dtype: str = "bfloat16") -> WanBackbone:
        """Built from the folder's configs, or a published model's (:mod:`videomage_wan.meta`), on the meta device."""
        from videomage_wan.meta import build_on_meta

        return build_on_meta(cls, model, dtype)

    def fingerprint(self) -> str:
        return config_fingerprint(self.denoiser.config, text_width=self.text.encoder.config.d_model)

    def transformers(self) -> list[WanTransformer3DModel]:
        """The transformers of the denoiser: one here, one per expert for Wan 2.2 A14B."""
        return [self.denoiser]

    @classmethod
    def original_layer_name(cls, name: str) -> str | None:
        """Wan's own checkpoint names (:mod:`videomage_wan.names`): ``blocks.0.attn1.to_q`` -> ``blocks.0.self_attn.q``."""
        return names.original_name(name)

    @property
    def dtype(self) -> torch.dtype:
        # The input layer's: diffusers keeps some of Wan's parameters in float32 (norms, the
        # time embedder, ``scale_shift_table``, which comes first) whatever the load dtype.
        return self.denoiser.patch_embedding.weight.dtype

    def enable_gradient_checkpointing(self) -> None:
        """Recompute block activations in the backward pass: much less memory, about a third more compute."""
        # Our checkpoint function: a recomputation knows which attention capture was open.
        self.denoiser.enable_gradient_checkpointing(lambda block, *args: checkpoint_call(block.__call__, *args))

    @contextmanager
    def activation_checkpointing(self) -> Iterator[bool]:
        """Checkpoint (non-reentrant) each transformer block inside the block: SCS guidance then
        holds the blocks' inputs, and one block's activations at a time in the backward pass."""
        with checkpointed([b for blocks in self.transformers() for b in blocks.blocks]):
            yield True

    # -- roles -----------------------------------------------------------------------------
    def role_modules(self, role: str) -> dict[str, torch.nn.Module]:
        if role not in self._roles:
            raise ConfigError(f"backbone {self.name!r} has no role {role!r}; its roles are {', '.join(self.roles)}")
        return {name: self.denoiser.get_submodule(name) for name in self._roles[role]}

    # -- pixels <-> latents ----------------------------------------------------------------
    def latent_frames(self, frames: int) -> int:
        """Latent frames of a ``frames``-frame video; refuses counts the causal VAE cannot take whole."""
        if frames < 1 or (frames - 1) % self.time_scale:
            below = (frames - 1) // self.time_scale * self.time_scale + 1
            raise ConfigError(
                f"Wan's VAE encodes 1 + {self.time_scale}k frames (1, {1 + self.time_scale}, {1 + 2 * self.time_scale}, "
                f"...), got {frames}; use {max(below, 1)} or {below + self.time_scale} frames (--frames)"
            )
        return 1 + (frames - 1) // self.time_scale

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        step = self.space_scale * self.transformers()[0].config.patch_size[1]
        if height % step or width % step:
            raise ConfigError(f"Wan needs height and width in multiples of {step} (VAE x patch), got {height}x{width}")
        return self.vae.config.z_dim, self.latent_frames(frames), height // self.space_scale, width // self.space_scale

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (1, -1, 1, 1, 1)
        mean = torch.tensor(self.vae.config.latents_mean, device=like.device, dtype=like.dtype).reshape(shape)
        std = torch.tensor(self.vae.config.latents_std, device=like.device, dtype=like.dtype).reshape(shape)
        return mean, std

    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """One clip at a time (the VAE already runs through time in 4-frame chunks with a causal cache)."""
        self.latent_frames(video.shape[1])
        out = []
        for clip in video:
            x = clip.permute(1, 0, 2, 3)[None].to(self.device, self.vae.dtype) * 2 - 1  # [1, 3, F, H, W]
            z = self.vae.encode(x).latent_dist.mode()
            mean, std = self._stats(z)
            out.append((z - mean) / std)
        return torch.cat(out).to(self.dtype)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        out = []
        for z in latents:
            z = z[None].to(self.device, self.vae.dtype)
            mean, std = self._stats(z)
            frames = self.vae.decode(z * std + mean).sample  # [1, 3, F, H, W]
            out.append(((frames[0] + 1) / 2).clamp(0, 1).permute(1, 0, 2, 3))
        return torch.stack(out)

    # -- diffusion -------------------------------------------------------------------------
    def predict(self, latents: torch.Tensor, timesteps: torch.Tensor, prompt_embeds: torch.Tensor) -> torch.Tensor:
        timesteps, prompt_embeds = self._per_sample(latents, timesteps, prompt_embeds)
        return self._forward(self.denoiser, latents, timesteps, prompt_embeds)

    @staticmethod
    def _per_sample(latents: torch.Tensor, timesteps: torch.Tensor, prompt_embeds: torch.Tensor):
        """One timestep and one prompt per sample (a single one is repeated for the batch)."""
        b = latents.shape[0]
        timesteps = torch.as_tensor(timesteps, device=latents.device)
        if timesteps.numel() == 1:
            timesteps = timesteps.reshape(1).expand(b)
        if prompt_embeds.shape[0] == 1 and b > 1:
            prompt_embeds = prompt_embeds.expand(b, *prompt_embeds.shape[1:])
        return timesteps, prompt_embeds

    def _forward(self, transformer: WanTransformer3DModel, latents: torch.Tensor, timesteps: torch.Tensor,
                 prompt_embeds: torch.Tensor) -> torch.Tensor:
        b, _, f, h, w = latents.shape
        pt, ph, pw = transformer.config.patch_size
        if self._state is not None:
            self._state.grid = (b, f // pt, h // ph, w // pw)
        if self.expand_timesteps:  # one timestep per token, [B, tokens], as WanPipeline does for TI2V
            timesteps = timesteps[:, None].expand(b, (f // pt) * (h // ph) * (w // pw))
        dtype = transformer.patch_embedding.weight.dtype
        return transformer(hidden_states=latents.to(dtype), timestep=timesteps,
                           encoder_hidden_states=prompt_embeds.to(dtype), return_dict=False)[0]

    def make_scheduler(self, name: str | None = None) -> Any:
        return flow.make_scheduler(self.scheduler_config, name or self.default_scheduler)

    def sample_timesteps(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return flow.sample_timesteps(batch, self.scheduler_config, generator).to(self.device)

    def add_noise(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        return flow.add_noise(latents, noise, timesteps, self.scheduler_config)

    def training_target(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        return flow.velocity(latents, noise)

    # -- attention -------------------------------------------------------------------------
    @contextmanager
    def capture_attention(self, *, cross_tokens: Sequence[int] | None = None, temporal: bool = False) -> Iterator[AttentionStore]:
        """Maps as documented in :mod:`videomage_wan.attention`: cross ``[B, T, F, h/2, w/2]``,
        temporal ``[B, (h/2)*(w/2), F, F]`` with ``F`` latent frames and ``h, w`` the latent size."""
        if not cross_tokens and not temporal:
            yield AttentionStore()  # nothing requested: the default processors stay
            return
        if self._state is not None:
            raise RuntimeError("attention captures cannot be nested; close the outer capture first")
        blocks = []
        for transformer in self.transformers():  # of each expert, where there are several
            every = list(transformer.blocks)
            try:
                blocks += every if self.capture_blocks is None else [every[i] for i in self.capture_blocks]
            except IndexError:
                raise ConfigError(f"capture_blocks {list(self.capture_blocks)} names a block past the last ({len(every) - 1})") from None
        with attention.capture(blocks, cross_tokens=cross_tokens, temporal=temporal,
                               chunk_elements=self.attention_chunk_elements) as (store, state), capturing(state):
            self._state = state
            try:
                yield store
            finally:
                self._state = None
