"""What the stages share: their options, trainable token rows, latent caches, content hashes
and validation samples."""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

import attrs

from videomage.artifact import Artifact, atomic_write
from videomage.components import Adapter, Backbone
from videomage.errors import ArtifactError
from videomage.sampling import Concept, SamplingRequest
from videomage.trainer import ParamGroup, TrainerConfig, stream_seed


@contextmanager
def seeded(seed: int, key: str) -> Iterator[None]:
    """Run the block with torch's global generators seeded from ``(seed, key)``, then restore them.

    Adapter plugins draw their initial weights from the global generators (peft's LoRA ``A``
    does); seeding them here makes a stage's result a function of its seed, whatever ran before
    in the process. ``key`` (the subject's token, say) gives each concept its own draw.
    """
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed * 1_000_003 + zlib.crc32(key.encode()))
        yield


@attrs.frozen(kw_only=True)
class StageOptions:
    """Settings every learning stage shares (the CLI's common flags)."""

    seed: int = 0
    work_dir: Path | None = None  # checkpoints, caches and validation samples; None: no resume, no cache
    progress: bool = True
    grad_accum: int = 1
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    release_text_encoder: bool = False  # move the text encoder to the host once the stage's prompts are encoded
    checkpoint_every: int = 50
    validate_every: int | None = None  # write a validation sample every N steps (needs work_dir)
    prior_count: int = 4  # generated prior-preservation videos per subject
    prior_steps: int = 25  # sampling steps of every video a stage generates: prior, teacher, validation
    frames: int | None = None  # clip length for video inputs; the backbone's native one when None
    sampler: str = "cfg"  # the sampler of the videos a stage generates: prior, teacher and validation videos

    def path(self, name: str) -> Path | None:
        return None if self.work_dir is None else Path(self.work_dir) / name

    def trainer_config(self, steps: int, description: str, *, stream: str, backbone: Backbone) -> TrainerConfig:
        """The trainer's settings for a stage drawing random stream ``stream`` (``"subject/<toy>"``)."""
        return TrainerConfig(steps=steps, seed=self.seed, stream=stream, progress=self.progress, grad_accum=self.grad_accum,
                             mixed_precision=self.mixed_precision, checkpoint_every=self.checkpoint_every,
                             validate_every=self.validate_every, description=description,
                             # a float16 model's gradients underflow unscaled, with or without autocast
                             loss_scaling=True if backbone.dtype == torch.float16 else None)

    def prepare(self, backbone: Backbone) -> None:
        """Apply the options that change the backbone itself (gradient checkpointing)."""
        if self.gradient_checkpointing:
            backbone.enable_gradient_checkpointing()


def validation(backbone: Backbone, adapter: Adapter, opts: StageOptions, *, name: str, prompt: str,
               adapters: dict[str, float]) -> Callable[[int], None] | None:
    """A callback that samples ``prompt`` with ``adapters`` and writes ``validation/<name>-stepN.mp4``.

    The adapters active before the sample are active again after it, so training goes on as
    if nothing happened; the sample's seed (from the stage's seed and ``name``) is the same at
    every step, so samples of successive steps compare.
    """
    folder = opts.path("validation")
    if not opts.validate_every or folder is None:
        return None

    def validate(step: int) -> None:
        from tqdm.auto import tqdm

        from videomage.media import write_mp4
        from videomage.plugins import get_registry

        request = SamplingRequest(prompt=prompt, steps=opts.prior_steps, seed=stream_seed(opts.seed, f"validation/{name}"),
                                  frames=opts.frames, subjects=[Concept(adapter=a, weight=w) for a, w in adapters.items()],
                                  progress=False, timestep_spacing="trailing")  # few steps: start at pure noise
        if opts.progress:  # the training bar stands still meanwhile; say why
            tqdm.write(f"sampling a validation video at step {step} ({opts.prior_steps} steps)")
        with torch.no_grad(), adapter.disabled(backbone):  # disabled() restores the training state on exit
            latents = get_registry().create("sampler", opts.sampler).sample(backbone, adapter, request)
            video = backbone.decode_latents(latents)[0].float().cpu()
        folder.mkdir(parents=True, exist_ok=True)
        out = write_mp4(video, folder / f"{name}-step{step:05d}.mp4", fps=backbone.video_spec.fps)
        tqdm.write(f"validation sample: {out}")

    return validate


def weights_digest(backbone: Backbone) -> str:
    """A digest of the base model's weights (denoiser, VAE, text encoder), adapters excluded.

    Caches of generated videos (prior preservation, fusion teachers) are keyed on it, so a
    fine-tuned checkpoint of the same architecture never reuses another model's videos. It
    hashes every weight once per loaded model (SHA-256 on one CPU core; 0.2 GB/s measured on a
    busy two-core machine, so a model of tens of gigabytes takes a minute or more) and is kept on
    the backbone, whose base weights do not change while it is loaded (adapters are separate tensors).
    """
    cached = backbone.__dict__.get("_videomage_weights_digest")
    if cached is not None:
        return cached
    h = hashlib.sha256()
    for part in ("denoiser", "vae", "text"):
        module = getattr(backbone, part, None)
        module = getattr(module, "encoder", module)  # the text side is a TokenTable
        if not isinstance(module, torch.nn.Module):
            continue
        for name, tensor in sorted(module.state_dict().items()):
            if ".lora_" in name:  # peft's adapter tensors, not the model's
                continue
            name = name.replace(".base_layer", "")
            h.update(f"{part}.{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
            if tensor.device.type == "meta":  # a planned model (videomage plan): shapes, no values
                continue
            data = tensor.detach().contiguous().cpu()
            if data.numel():
                h.update(memoryview(data.reshape(-1).view(torch.uint8).numpy()))
    digest = h.hexdigest()[:16]
    backbone.__dict__["_videomage_weights_digest"] = digest
    return digest


def sampling_settings(backbone: Backbone, sampler: str) -> dict[str, Any]:
    """What, beside the weights and the request, decides a video the stages generate."""
    return {"backbone": backbone.name, "fingerprint": backbone.fingerprint(), "dtype": str(backbone.dtype),
            "scheduler": getattr(backbone, "default_scheduler", None), "sampler": sampler}


def content_hash(*parts: Any) -> str:
    """A short stable hash of JSON-able parts and files (by content, not by name)."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path) and part.is_file():
            h.update(part.read_bytes())
        elif isinstance(part, Path) and part.is_dir():
            for f in sorted(p for p in part.rglob("*") if p.is_file()):
                h.update(f.name.encode())
                h.update(f.read_bytes())
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


class TokenRows:
    """Train the learned rows of ``tokens``: one float32 row per token, nothing of the vocabulary.

    The rows are the backbone's :meth:`~videomage.Backbone.token_parameters`, keyed by token in
    the trainer's checkpoint, so a resumed stage restores each token's row by name.
    """

    def __init__(self, backbone: Backbone, tokens: Sequence[str], lr: float) -> None:
        self.rows = backbone.token_parameters(list(tokens))
        for row in self.rows.values():
            row.requires_grad_(True)
        self.group = ParamGroup(name="tokens", params=list(self.rows.values()), names=list(self.rows), lr=lr,
                                weight_decay=0.0)

    def close(self) -> None:
        for row in self.rows.values():
            row.requires_grad_(False)
            row.grad = None


def refuse_token_collisions(artifacts: Sequence[tuple[str, Artifact]]) -> None:
    """Refuse to install ``artifacts`` (``(source, artifact)`` pairs) together when two learn the same token.

    Installed together, the second artifact's embedding would silently replace the first's.
    """
    seen: dict[str, str] = {}
    for source, art in artifacts:
        for token in art.tokens:
            if token in seen:
                raise ArtifactError(
                    f"token {token!r} is learned by both {seen[token]!r} and {source!r}: installed together, the "
                    f"second would overwrite the first's embedding. Retrain one of them with another token "
                    f"(motion entity tokens are '<motion:word>'; a motion artifact from an older videomage "
                    f"that uses '{token}' needs retraining)"
                )
            seen[token] = source


def cached_tensors(path: Path | None, compute: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Load tensors from ``path`` if present, else compute and store them (atomically)."""
    if path is not None and path.exists():
        return load_file(str(path))
    tensors = compute()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        atomic_write(path, lambda tmp: save_file(data, tmp))
    return tensors


@torch.no_grad()
def encode_batched(backbone: Backbone, videos: torch.Tensor, batch: int = 4) -> torch.Tensor:
    """Encode ``[N, F, 3, H, W]`` a few clips at a time (``[N, C, F, h, w]``)."""
    return torch.cat([backbone.encode_video(videos[i : i + batch].to(backbone.device, backbone.dtype)) for i in range(0, len(videos), batch)])


def pick(generator: torch.Generator, n: int) -> int:
    """A uniformly random index in ``range(n)`` drawn from ``generator``."""
    return int(torch.randint(n, (1,), generator=generator))


def reads(objective: Any, key: str) -> bool:
    """Whether ``objective`` wants the optional batch key ``key``.

    A stage makes its costly optional keys (the subject stage's prior videos) only for an
    objective whose ``reads(key)`` says so; an objective without ``reads`` gets none of them.
    """
    method = getattr(objective, "reads", None)
    return bool(method(key)) if callable(method) else False
