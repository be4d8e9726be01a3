"""The backbone contract: what a text-to-video model family implements, and its native video size.

A backbone plugin returns a [`Backbone`][videomage.backbone.Backbone] subclass from ``register_backbones``.
Pixel videos are ``[B, F, 3, H, W]`` in ``[0, 1]``; latents are whatever the family's VAE produces
(``[B, C, F, h, w]`` for every bundled backbone) and only the backbone interprets them. Roles name
groups of layers by function (``"spatial"``, ``"temporal"``): the method talks about roles, never
about a model family's module names.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, ClassVar

import attrs
import torch

from videomage.attention import AttentionStore

__all__ = ["Backbone", "VideoSpec"]


@attrs.frozen(kw_only=True)
class VideoSpec:
    """A backbone's native output size."""

    height: int
    width: int
    frames: int
    fps: int


class Backbone(ABC):
    """A text-to-video diffusion model family: the whole contract a new backbone must meet.

    Instances are made by [`from_pretrained`][videomage.backbone.Backbone.from_pretrained]. The denoiser (``self.denoiser``) is the
    ``torch.nn.Module`` adapters attach to; its parameters are frozen by the backbone.
    """

    name: ClassVar[str]
    #: The roles this family declares, in the order the docs list them.
    roles: ClassVar[tuple[str, ...]] = ("spatial", "temporal")
    #: What `predict` returns and `training_target` computes:
    #: ``"epsilon"`` (noise), ``"v_prediction"`` or ``"flow"`` (velocity).
    prediction_type: ClassVar[str] = "epsilon"
    #: Interoperability (optional): the diffusers pipeline component the denoiser is
    #: (``"transformer"``, ``"unet"``); diffusers' LoRA loaders prefix adapter keys with it.
    #: ``None`` when the family has no diffusers pipeline: artifacts then export to no format.
    diffusers_component: ClassVar[str | None] = None
    #: Interoperability (optional): whether the text encoder is a CLIP whose learned tokens
    #: diffusers' ``load_textual_inversion`` reads from a ``{token: vector}`` file.
    textual_inversion: ClassVar[bool] = False

    #: Experts (optional): the names of the denoisers a mixture-of-experts family routes
    #: timesteps to, highest noise first; empty for a family with one denoiser. Module names
    #: of an expert start with ``"<expert>."`` and its roles are also offered as ``"<expert>.<role>"``.
    experts: tuple[str, ...] = ()

    denoiser: torch.nn.Module
    video_spec: VideoSpec
    model_ref: str

    # -- loading ---------------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def detect(cls, model: str) -> bool:
        """Whether ``model`` (a Hub id or a local folder) is a model of this family.

        Must not download anything: look at a local folder's files, or match known Hub ids.
        """

    @classmethod
    @abstractmethod
    def from_pretrained(
        cls, model: str, *, device: str = "cpu", dtype: str = "float32", scheduler: str | None = None
    ) -> Backbone:
        """Load every component from a Hub id or a local folder in the diffusers layout."""

    @classmethod
    def on_meta(cls, model: str, *, dtype: str = "bfloat16") -> Backbone:
        """This family's backbone for ``model`` with every module built from its configs on the
        meta device: the real shapes and dtypes, no weights, nothing downloaded.

        ``videomage plan`` runs a stage on it to count the memory the stage will need. The
        default refuses; a family supports planning by overriding it.
        """
        from videomage.errors import ConfigError

        raise ConfigError(f"backbone {cls.name!r} cannot be planned: it does not build itself on the meta device")

    @classmethod
    def tiny(cls, folder: str) -> str:
        """Testing (optional): build a tiny random model of this family from configs in the empty
        or new folder ``folder`` and return what [`from_pretrained`][videomage.backbone.Backbone.from_pretrained] loads it from.

        Nothing is downloaded; a forward pass should take milliseconds on a CPU. The contract
        tests of `videomage.testing` run on every registered backbone that overrides this; the
        default refuses.
        """
        from videomage.errors import ConfigError

        raise ConfigError(f"backbone {cls.name!r} ships no tiny model builder (Backbone.tiny)")

    @abstractmethod
    def fingerprint(self) -> str:
        """A short stable hash of the denoiser's architecture config.

        Artifacts record it; loading an artifact into a backbone with another fingerprint is refused.
        """

    def enable_gradient_checkpointing(self) -> None:
        """Recompute activations during the backward pass (less memory, more compute).

        The default refuses; backbones whose denoiser supports it override this.
        """
        from videomage.errors import ConfigError

        raise ConfigError(f"backbone {self.name!r} does not support gradient checkpointing; train without it")

    @contextmanager
    def activation_checkpointing(self) -> Iterator[bool]:
        """Inside the block, forward passes with gradients store less and recompute in backward.

        Yields whether checkpointing is in effect; the default yields ``False`` and changes
        nothing. Samplers that backpropagate to the latents (SCS guidance) use it to bound
        memory. A caller must run its backward pass inside the block, with the same adapters
        active and the same attention capture open as in the forward pass it differentiates.
        """
        yield False

    @classmethod
    def original_layer_name(cls, name: str) -> str | None:
        """Interoperability (optional): the name of adaptable layer ``name`` (diffusers' name,
        relative to ``denoiser``) in the family's original checkpoints, which ComfyUI, DiffSynth
        and musubi-tuner use; ``None`` when the family has no other naming or the layer has none.

        Must be a pure function of the name: export runs it without loading the model.
        """
        return None

    @property
    def device(self) -> torch.device:
        return next(self.denoiser.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.denoiser.parameters()).dtype

    # -- roles -----------------------------------------------------------------------------
    @abstractmethod
    def role_modules(self, role: str) -> dict[str, torch.nn.Module]:
        """The adaptable layers of ``role``: qualified names (relative to ``denoiser``) -> modules.

        Raises [`ConfigError`][videomage.errors.ConfigError] for a role the backbone does not declare.
        """

    def default_experts(self, role: str) -> tuple[str, ...]:
        """Experts (optional): the experts an adapter of ``role`` lives in unless told otherwise.

        The default is every expert (none for a family with one denoiser).
        """
        return self.experts

    def expert_at(self, timestep: float) -> str | None:
        """Experts (optional): the expert that denoises at ``timestep``; ``None`` without experts."""
        return None

    def sample_expert_timesteps(self, batch: int, experts: Sequence[str],
                                generator: torch.Generator | None = None) -> torch.Tensor:
        """Experts (optional): training timesteps drawn from the part of the schedule ``experts``
        denoise, with the distribution of [`sample_timesteps`][videomage.backbone.Backbone.sample_timesteps]
        restricted to it. With no experts named this is ``sample_timesteps``."""
        if not experts:
            return self.sample_timesteps(batch, generator)
        from videomage.errors import ConfigError

        raise ConfigError(f"backbone {self.name!r} has one denoiser, no experts; got experts {list(experts)}")

    # -- text ------------------------------------------------------------------------------
    @abstractmethod
    def add_tokens(self, tokens: Sequence[str], init_words: Sequence[str]) -> list[int]:
        """Add learned tokens, each embedding initialised from its init word; return their ids.

        Adding a token that exists already keeps its current embedding.
        """

    @abstractmethod
    def token_embeddings(self, tokens: Sequence[str]) -> dict[str, torch.Tensor]:
        """The current embedding vector of each learned token."""

    @abstractmethod
    def set_token_embeddings(self, embeddings: Mapping[str, torch.Tensor]) -> None:
        """Set (adding tokens where missing) the embedding vector of each token."""

    @abstractmethod
    def token_embedding_weight(self) -> torch.nn.Parameter:
        """The text encoder's frozen input embedding matrix (the base vocabulary's rows, by id)."""

    @abstractmethod
    def token_parameters(self, tokens: Sequence[str]) -> dict[str, torch.nn.Parameter]:
        """The trainable row of each learned token, by token: float32, whatever the model's dtype.

        Textual inversion and subject learning train these alone, never the whole embedding
        matrix, so optimizer state and checkpoints do not grow with the vocabulary.
        """

    @abstractmethod
    def token_ids(self, tokens: Sequence[str]) -> list[int]:
        """The vocabulary id of each learned token."""

    @abstractmethod
    def encode_prompt(self, prompts: Sequence[str]) -> torch.Tensor:
        """Text-encoder hidden states ``[B, L, D]`` for ``prompts`` (gradients flow to embeddings)."""

    @abstractmethod
    def word_positions(self, prompt: str, word: str, occurrence: int = 0) -> list[int]:
        """Positions in the encoded sequence of ``prompt`` that belong to ``word`` (or token).

        ``occurrence`` picks which whole-word occurrence (0: the first); none there gives ``[]``.
        """

    # -- pixels <-> latents ----------------------------------------------------------------
    @abstractmethod
    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """``[B, F, 3, H, W]`` in ``[0, 1]`` -> scaled latents ``[B, C, F, h, w]``."""

    @abstractmethod
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents ``[B, C, F, h, w]`` -> video ``[B, F, 3, H, W]`` in ``[0, 1]``."""

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """``(C, F, h, w)`` of the latents of a ``frames x height x width`` video.

        The default encodes one blank frame to read the VAE's channels and down-sampling, and
        assumes frames are encoded one by one; backbones whose VAE compresses time override it.
        """
        key = (height, width)
        cache = self.__dict__.setdefault("_latent_shape_cache", {})
        if key not in cache:
            with torch.no_grad():
                z = self.encode_video(torch.zeros(1, 1, 3, height, width, device=self.device))
            cache[key] = (z.shape[1], z.shape[-2], z.shape[-1])
        c, h, w = cache[key]
        return c, frames, h, w

    # -- diffusion -------------------------------------------------------------------------
    @abstractmethod
    def predict(self, latents: torch.Tensor, timesteps: torch.Tensor, prompt_embeds: torch.Tensor) -> torch.Tensor:
        """The denoiser's output (of kind `prediction_type`) for a batch."""

    @abstractmethod
    def make_scheduler(self, name: str | None = None) -> Any:
        """A fresh sampling scheduler, the family default or a diffusers scheduler class by name."""

    @abstractmethod
    def sample_timesteps(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Training timesteps drawn uniformly from the training schedule."""

    @abstractmethod
    def add_noise(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """The forward process: ``x_t`` from ``x_0``, noise and timesteps."""

    @abstractmethod
    def training_target(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """What [`predict`][videomage.backbone.Backbone.predict] should return for ``add_noise(latents, noise, timesteps)``."""

    # -- attention -------------------------------------------------------------------------
    @abstractmethod
    def capture_attention(
        self, *, cross_tokens: Sequence[int] | None = None, temporal: bool = False
    ) -> AbstractContextManager[AttentionStore]:
        """Capture attention maps during the forward passes run inside the ``with`` block.

        ``cross_tokens``: positions in the text sequence whose spatial cross-attention maps are
        kept; ``temporal``: keep temporal self-attention maps. With neither, nothing is captured
        and the forward pass costs what it costs outside the block.
        """
