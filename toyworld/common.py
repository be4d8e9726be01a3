"""What the toy world's research scripts share: encoding clips for the v1 model, and batched sampling.

Kept apart so that the scripts import it, not each other (``train`` uses ``diagnose``'s probe
clips; ``diagnose`` needs the encoder ``train`` trains with).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from videomage_samplers.cfg import guided, scheduler_step


def write_folder(folder: str | Path, write: Callable[[Path], None]) -> Path:
    """Replace ``folder`` atomically by what ``write(staging)`` puts in a staging folder beside it,
    so a reader (an evaluation, a demo) never sees half a model."""
    folder = Path(folder)
    staging = folder.with_name(folder.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    write(staging)
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        os.replace(folder, old)
    os.replace(staging, folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def encode_clips(vae, video: torch.Tensor) -> torch.Tensor:
    """``[B, F, 3, H, W]`` in [0, 1] -> scaled latents ``[B, C, F, h, w]`` (as the backbone does)."""
    b, f = video.shape[:2]
    latents = vae.encode(video.flatten(0, 1) * 2 - 1).latent_dist.mode() * vae.config.scaling_factor
    return latents.reshape(b, f, *latents.shape[1:]).permute(0, 2, 1, 3, 4)


@torch.no_grad()
def sample_batch(backbone, prompts: list[str], *, steps: int, guidance: float, seed: int,
                 offset: torch.Tensor | None = None, frames: int | None = None) -> torch.Tensor:
    """Clips ``[B, F, 3, H, W]`` for ``prompts``: the backbone's scheduler, CFG against the empty prompt.

    ``frames`` defaults to the model's own (1 samples still images).

    ``offset`` (broadcast to the latents) is added to the initial noise; probes such as
    ``toyworld/mean_leak.py`` use it.
    """
    spec = backbone.video_spec
    scheduler = backbone.make_scheduler(None)
    scheduler.set_timesteps(steps)
    generator = torch.Generator().manual_seed(seed)
    shape = (len(prompts), *backbone.latent_shape(frames or spec.frames, spec.height, spec.width))
    latents = torch.randn(shape, generator=generator) * scheduler.init_noise_sigma
    if offset is not None:
        latents = latents + offset
    latents = latents.to(backbone.device)  # drawn on the CPU, so a seed gives the same noise on any device
    embeds = backbone.encode_prompt([""] * len(prompts) + list(prompts))
    for t in scheduler.timesteps:
        latents = scheduler_step(scheduler, guided(backbone, latents, t, embeds, guidance, scheduler), t, latents, generator)
    return backbone.decode_latents(latents)
