"""The component interfaces plugins implement.

Each kind of component is an abstract base class with a ``name`` class attribute. Plugins
return the *classes* from ``register_<kind>s`` hooks (see [`videomage.hookspecs`][videomage.hookspecs]); the
registry validates them and instantiates them when a workflow asks for one by name.

Conventions shared by every component:

* Pixel videos are float tensors ``[B, F, 3, H, W]`` with values in ``[0, 1]``; a single
  video without the batch axis is ``[F, 3, H, W]``. Images are one-frame videos.
* Latents are whatever the backbone's VAE produces, ``[B, C, F, h, w]`` for every bundled
  backbone; only the backbone interprets them.
* Roles name groups of layers by function (``"spatial"``, ``"temporal"``): the method talks
  about roles, never about a model family's module names.
"""

from __future__ import annotations

import argparse
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, ClassVar

import attrs
import torch

__all__ = [
    "Adapter",
    "AttentionStore",
    "Backbone",
    "Command",
    "LoadReport",
    "MaskSource",
    "Metric",
    "Objective",
    "ObjectiveOutput",
    "Sampler",
    "TrainingContext",
    "VideoSpec",
]


@attrs.frozen(kw_only=True)
class VideoSpec:
    """A backbone's native output size."""

    height: int
    width: int
    frames: int
    fps: int


@attrs.define(kw_only=True)
class AttentionStore:
    """Attention maps captured during one forward pass.

    ``cross``: one tensor per captured spatial cross-attention layer, shaped
    ``[B, T, F, h_l, w_l]`` for the ``T`` requested token positions: softmax probabilities over
    the text keys, averaged over heads (so over *all* keys they sum to one).

    ``temporal``: one tensor per captured temporal self-attention layer, shaped
    ``[B, h_l * w_l, F, F]``: for each spatial location, the frame-by-frame attention
    probabilities averaged over heads (each row sums to one).

    ``F`` counts *latent* frames, fewer than the video's when the VAE compresses time.
    Tensors keep their autograd graph when the forward pass ran with gradients enabled.
    """

    cross: list[torch.Tensor] = attrs.field(factory=list)
    temporal: list[torch.Tensor] = attrs.field(factory=list)

    def cross_maps(self, size: tuple[int, int]) -> torch.Tensor:
        """Average the cross-attention layers at ``size`` and normalise each frame to ``[0, 1]``.

        Returns ``[B, T, F, h, w]``. Each token's map in each frame is divided by its maximum,
        which is what the attention losses of the method compare against binary masks.
        """
        if not self.cross:
            raise ValueError("no cross-attention maps were captured; request cross_tokens")
        resized = []
        for m in self.cross:
            b, t, f, h, w = m.shape
            flat = m.reshape(b * t * f, 1, h, w)
            if (h, w) != tuple(size):
                flat = torch.nn.functional.interpolate(flat, size=size, mode="bilinear", align_corners=False)
            resized.append(flat.reshape(b, t, f, *size))
        mean = torch.stack(resized).mean(0)
        peak = mean.flatten(-2).amax(-1).clamp_min(1e-8)[..., None, None]
        return mean / peak


class Backbone(ABC):
    """A text-to-video diffusion model family: the whole contract a new backbone must meet.

    Instances are made by [`from_pretrained`][videomage.components.Backbone.from_pretrained]. The denoiser (``self.denoiser``) is the
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
        denoise, with the distribution of [`sample_timesteps`][videomage.components.Backbone.sample_timesteps]
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
        """What [`predict`][videomage.components.Backbone.predict] should return for ``add_noise(latents, noise, timesteps)``."""

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


@attrs.frozen(kw_only=True)
class LoadReport:
    """What an adapter load did: keys the model expected but did not get, and keys it ignored."""

    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()


class Adapter(ABC):
    """A kind of parameter-efficient adapter (LoRA, ...), attached by name to a backbone's roles.

    Several named adapters live in one model at once; switching is cheap and copies no weights.
    """

    name: ClassVar[str]

    @abstractmethod
    def attach(
        self,
        backbone: Backbone,
        adapter_name: str,
        *,
        roles: Sequence[str],
        rank: int = 4,
        alpha: float | None = None,
        dropout: float = 0.0,
        targets: Sequence[str] | None = None,
    ) -> None:
        """Attach a fresh adapter ``adapter_name`` to the layers of ``roles``.

        ``targets`` optionally narrows the layers to those whose names match one of the regexes.
        A freshly attached adapter leaves the model's outputs unchanged.
        """

    @abstractmethod
    def adapter_names(self, backbone: Backbone) -> list[str]:
        """The adapters attached to ``backbone``."""

    @abstractmethod
    def activate(self, backbone: Backbone, weights: Mapping[str, float]) -> None:
        """Switch on exactly the adapters in ``weights`` with those scales; ``{}`` switches all off."""

    @abstractmethod
    def disabled(self, backbone: Backbone) -> AbstractContextManager[None]:
        """Inside the block every adapter is off; on exit the previous state returns."""

    @abstractmethod
    def parameters(self, backbone: Backbone, adapter_name: str) -> list[torch.nn.Parameter]:
        """The trainable parameters of one adapter."""

    @abstractmethod
    def state_dict(self, backbone: Backbone, adapter_name: str) -> dict[str, torch.Tensor]:
        """One adapter's tensors, named as peft names them, without the adapter name."""

    @abstractmethod
    def load_state_dict(
        self, backbone: Backbone, adapter_name: str, tensors: Mapping[str, torch.Tensor]
    ) -> LoadReport:
        """Load tensors into an attached adapter; raise ArtifactError on any key mismatch."""

    @abstractmethod
    def merge(self, backbone: Backbone, weights: Mapping[str, float]) -> None:
        """Fold the weighted adapters into the base weights for fast inference."""

    @abstractmethod
    def unmerge(self, backbone: Backbone) -> None:
        """Undo [`merge`][videomage.components.Adapter.merge]."""

    @abstractmethod
    def remove(self, backbone: Backbone, adapter_name: str) -> None:
        """Delete an adapter from the model."""

    def attach_average(self, backbone: Backbone, adapter_name: str, sources: Sequence[str]) -> None:
        """Attach ``adapter_name`` whose weight change is the average of the ``sources``' changes.

        The fusion stage starts its student here. Adapter types that cannot express the average
        exactly keep this default, which refuses with an explanation.
        """
        from videomage.errors import ConfigError

        raise ConfigError(
            f"adapter type {self.name!r} cannot initialise a fused adapter from its teachers; "
            f"implement Adapter.attach_average for it"
        )


@attrs.define(kw_only=True)
class TrainingContext:
    """What an objective sees: the backbone, the adapter plugin and the adapters being trained."""

    backbone: Backbone
    adapter: Adapter
    trained: tuple[str, ...] = ()
    #: The experts the trained adapters live in (``()``: the backbone has one denoiser, or all);
    #: objectives draw training timesteps from their part of the schedule.
    experts: tuple[str, ...] = ()
    generator: torch.Generator | None = None
    extras: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class ObjectiveOutput:
    """A scalar loss to minimise and the named parts worth logging."""

    loss: torch.Tensor
    logs: Mapping[str, float] = attrs.field(factory=dict)


class Objective(ABC):
    """A training loss (or a guidance objective) computed on a batch.

    Options are one frozen attrs record ``Options`` (see [`videomage.options`][videomage.options]),
    or, as in videomage 0.1, keyword arguments of the constructor; every option has a default, so
    ``cls()`` is a valid objective. Each stage documents the batch keys it hands its objective.
    """

    name: ClassVar[str]

    @abstractmethod
    def loss(self, ctx: TrainingContext, batch: Mapping[str, Any]) -> ObjectiveOutput:
        """The loss for one batch. ``batch`` keys are documented by each objective."""


class Sampler(ABC):
    """Turns prompts into latents with a backbone and its adapters: owns the denoising loop."""

    name: ClassVar[str]

    @abstractmethod
    def sample(self, backbone: Backbone, adapter: Adapter | None, request: Any) -> torch.Tensor:
        """Run the denoising loop for ``request`` (a [`SamplingRequest`][videomage.sampling.SamplingRequest]:
        the shared settings and the concepts) and return the final latents ``[B, C, F, h, w]``.

        The sampler's own settings are its ``Options`` record, not part of the request.
        """


class MaskSource(ABC):
    """Segments a subject in a video (for the fusion stage's attention regularisation)."""

    name: ClassVar[str]

    @abstractmethod
    def masks(self, video: torch.Tensor, *, subject: str) -> torch.Tensor:
        """``[F, 3, H, W]`` in ``[0, 1]`` -> soft masks ``[F, H, W]`` in ``[0, 1]`` of ``subject``."""


class Metric(ABC):
    """Scores a generated video; weight-free metrics are preferred so results reproduce anywhere."""

    name: ClassVar[str]

    @abstractmethod
    def compute(self, video: torch.Tensor, context: Mapping[str, Any]) -> dict[str, float]:
        """``[F, 3, H, W]`` in ``[0, 1]`` plus context (prompt, references) -> named scores."""


class Command(ABC):
    """A ``videomage`` CLI sub-command."""

    name: ClassVar[str]
    help: ClassVar[str] = ""

    @abstractmethod
    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Declare the command's flags."""

    @abstractmethod
    def run(self, args: argparse.Namespace) -> int:
        """Run the command; return the process exit code."""


def iter_component_bases() -> Iterator[tuple[str, type]]:
    """Each component kind with its base class, in documentation order."""
    yield "backbone", Backbone
    yield "adapter", Adapter
    yield "objective", Objective
    yield "sampler", Sampler
    yield "mask_source", MaskSource
    yield "metric", Metric
    yield "command", Command
