"""Does a toy model read the clip's mean colour from its initial noise? (docs/toyworld.md)

    .venv/bin/python -m toyworld.mean_leak [--model DIR] [--n 8]

With ZeroScope's schedule the first sampling timestep keeps sqrt(alpha_bar) ~ 0.085 of the clean
latents, and a plain-coloured scene moves the clip's per-channel latent mean by up to 1.7, which
over 8x16x16 values stands far above the noise's own mean. A model trained on plain noise learns
to take the background's brightness from that mean; sampling starts from noise whose mean is
about zero, so it draws mid-tone backgrounds and loses very light ("in the snow") and very dark
("at night") scenes whatever the prompt says.

The probe samples ``n`` full captions per scene twice from the same seeds: once from plain noise,
once with the mean the forward process would leave at the first timestep added to it
(sqrt(alpha_bar) times the latent mean of a plain clip of that scene). It prints, per scene, how
many samples' backgrounds read as the prompted scene. A model that takes the scene from the
caption scores about the same both ways; one that reads the mean from the noise scores far
better with the shift.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from toyworld.common import sample_batch
from videomage_toyworld import analysis, world
from videomage_toyworld.model import MODEL_DIR
from videomage_toyworld.vocabulary import PALETTE, SCENES, SHAPES, visible

from videomage.loading import load_backbone


@torch.no_grad()
def scene_mean(backbone, scene: str) -> torch.Tensor:
    """The per-channel latent mean ``[1, C, 1, 1, 1]`` of a clip showing nothing but ``scene``."""
    spec = backbone.video_spec
    clip = world.render([], scene, size=spec.height)
    video = torch.from_numpy(np.repeat(clip.frames, spec.frames, 0))[None]
    return backbone.encode_video(video).float().mean(dim=(2, 3, 4), keepdim=True)


@torch.no_grad()
def scenes_right(backbone, scene: str, *, n: int, shift: float, seed: int = 0, guidance: float = 7.5,
                 steps: int = 25) -> int:
    """How many of ``n`` samples of "a <colour> <shape> moving left <scene>" read as ``scene``."""
    rng = np.random.default_rng([seed, 5])
    prompts = []
    while len(prompts) < n:
        colour, shape = str(rng.choice(list(PALETTE))), str(rng.choice(SHAPES))
        if visible(colour, scene):
            prompts.append(f"a {colour} {shape} moving left {scene}")
    scheduler = backbone.make_scheduler(None)
    scheduler.set_timesteps(steps)
    first = float(scheduler.alphas_cumprod[int(scheduler.timesteps[0])])
    videos = sample_batch(backbone, prompts, steps=steps, guidance=guidance, seed=seed,
                          offset=shift * first**0.5 * scene_mean(backbone, scene))
    return sum(analysis.scene_name(video) == scene for video in videos)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(MODEL_DIR))
    parser.add_argument("--n", type=int, default=8, help="samples per scene and per start")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    backbone = load_backbone(args.model)
    out = {}
    for scene in SCENES:
        out[scene] = {f"shift {shift:g}": scenes_right(backbone, scene, n=args.n, shift=shift, seed=args.seed)
                      for shift in (0.0, 1.0)}
        print(json.dumps({scene: out[scene]}), flush=True)
    print(json.dumps({"model": args.model, "n": args.n, "right": out}))


if __name__ == "__main__":
    main()
