"""Does a model use the motion-direction word? ``python -m toyworld.diagnose --model DIR``.

The *direction gap* is the mean denoising loss (epsilon MSE) over a fixed probe set of
single-object moving clips when every caption names the *opposite* direction ("moving right"
for a clip moving left), minus the mean loss with the correct captions. Clips, noise and
timesteps are fixed by the seed, so the two losses differ only in the direction word:

- gap > 0: the model's prediction is better with the right word, so it uses direction;
- gap == 0: the model ignores the word (a caption-blind model gives exactly 0);
- gap < 0: it has the directions backwards.

The module also draws the moving clips the ``--motion-focus`` fine-tune of
:mod:`toyworld.train` trains on, and their time reverses.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

import attrs
import numpy as np
import torch

from videomage_toyworld import world
from videomage_toyworld.vocabulary import (
    DIRECTIONS,
    PALETTE,
    SCENES,
    SHAPES,
    SPEEDS,
    visible,
)

#: Each direction's opposite: a clip played backwards moves the opposite way.
OPPOSITE: dict[str, str] = {"left": "right", "right": "left", "up": "down", "down": "up"}


def moving_clip(
    rng: np.random.Generator, *, size: int = 64, frames: int = 8, drop_colour: float = 0.0,
    drop_scene: float = 0.0, drop_speed: float = 0.0,
) -> world.Clip:
    """One object moving in a straight line, its direction always named in the caption.

    The ``drop_*`` probabilities leave colour, scene or speed out of the caption (as the base
    training does); direction is never dropped.
    """
    scale = size / 64
    scene = str(rng.choice(list(SCENES)))
    colours = [c for c in PALETTE if visible(c, scene)]
    colour = colours[int(rng.integers(len(colours)))]
    shape = str(rng.choice(SHAPES))
    direction = str(rng.choice(list(DIRECTIONS)))
    speed = str(rng.choice(list(SPEEDS)))
    step = SPEEDS[speed] * scale * rng.uniform(0.85, 1.15)
    radius = rng.uniform(6.0, 10.0) * scale
    path = world.linear_path(rng, frames=frames, size=size, radius=radius, direction=direction, step=step)
    actor = world.Actor(shape=shape, colours=(colour,), path=path, radius=radius, direction=direction, speed=speed)
    named = attrs.evolve(actor, colours=()) if rng.random() < drop_colour else actor
    named = attrs.evolve(named, speed=None) if rng.random() < drop_speed else named
    text = world.caption([named], None if rng.random() < drop_scene else scene, still=False)
    return world.render([actor], scene, size=size, rng=rng, caption=text)


def swap_direction(caption: str) -> str:
    """The caption with its direction word replaced by the opposite one."""
    words = caption.split()
    hits = [i for i, w in enumerate(words) if w in OPPOSITE]
    if len(hits) != 1:
        raise ValueError(f"expected exactly one direction word in {caption!r}")
    words[hits[0]] = OPPOSITE[words[hits[0]]]
    return " ".join(words)


def reversed_clip(clip: world.Clip) -> world.Clip:
    """The clip played backwards, captioned with the opposite direction: only order and word differ."""
    actors = tuple(attrs.evolve(a, path=a.path[::-1].copy(),
                                direction=OPPOSITE[a.direction] if a.direction else None) for a in clip.actors)
    return world.Clip(frames=np.ascontiguousarray(clip.frames[::-1]), caption=swap_direction(clip.caption),
                      scene=clip.scene, actors=actors, centres=np.ascontiguousarray(clip.centres[:, ::-1]),
                      masks=np.ascontiguousarray(clip.masks[:, ::-1]), background=clip.background)


def probe_set(n: int = 32, *, seed: int = 0, size: int = 64, frames: int = 8) -> dict:
    """``n`` fully captioned moving clips: ``video`` ``[n, F, 3, H, W]``, ``captions``, ``swapped``."""
    rng = np.random.default_rng([seed, 7])
    clips = [moving_clip(rng, size=size, frames=frames) for _ in range(n)]
    captions = [c.caption for c in clips]
    return {"video": torch.from_numpy(np.stack([c.frames for c in clips])), "captions": captions,
            "swapped": [swap_direction(c) for c in captions]}


def probe_noise(latent_shape: tuple[int, ...], *, seed: int = 0, num_train_timesteps: int = 1000):
    """The fixed noise and timesteps of the probe: timesteps spread evenly over the schedule."""
    n = latent_shape[0]
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(latent_shape, generator=generator)
    spread = torch.linspace(0, num_train_timesteps - 1, n + 2)[1:-1].round().long()
    timesteps = spread[torch.randperm(n, generator=generator)]
    return noise, timesteps


Predict = Callable[[torch.Tensor, torch.Tensor, list[str]], torch.Tensor]


@torch.no_grad()
def gap_of(predict: Predict, latents: torch.Tensor, captions: list[str], swapped: list[str], *,
           alphas: torch.Tensor, seed: int = 0, batch: int = 8) -> dict[str, float]:
    """The direction gap of ``predict(noisy, t, captions) -> epsilon`` on clean ``latents`` ``[n, C, F, h, w]``.

    Returns ``correct`` and ``swapped`` (mean losses), ``gap`` (their difference), ``stderr``
    (the gap's standard error over the probes), ``relative`` (gap / correct) and
    ``gap_high_noise`` (the gap over the probes with t >= half the schedule, where the noisy
    input no longer shows the motion and only the caption can).
    """
    noise, t = probe_noise(tuple(latents.shape), seed=seed, num_train_timesteps=len(alphas))
    a = alphas[t].view(-1, *[1] * (latents.dim() - 1)).to(latents.dtype)
    noisy = a.sqrt() * latents + (1 - a).sqrt() * noise
    losses = {}
    for key, texts in (("correct", captions), ("swapped", swapped)):
        per = []
        for s in range(0, len(texts), batch):
            pred = predict(noisy[s : s + batch], t[s : s + batch], texts[s : s + batch]).float()
            per.append((pred - noise[s : s + batch]).pow(2).flatten(1).mean(1))
        losses[key] = torch.cat(per).double()
    diff = losses["swapped"] - losses["correct"]
    high = t >= len(alphas) // 2
    correct = float(losses["correct"].mean())
    stderr = float(diff.std() / len(diff) ** 0.5) if len(diff) > 1 else 0.0
    return {"correct": correct, "swapped": float(losses["swapped"].mean()), "gap": float(diff.mean()), "stderr": stderr,
            "relative": float(diff.mean()) / max(correct, 1e-12), "gap_high_noise": float(diff[high].mean())}


@torch.no_grad()
def direction_gap(components: dict, *, n: int = 32, seed: int = 0, batch: int = 8, frames: int = 8) -> dict[str, float]:
    """The direction gap of a model given as components (``unet``, ``vae``, ``text_encoder``, ...)."""
    from toyworld.common import encode_clips

    unet, vae, text_encoder = components["unet"], components["vae"], components["text_encoder"]
    tokenizer = components["tokenizer"]
    device, dtype = next(unet.parameters()).device, next(unet.parameters()).dtype
    modes = [m.training for m in (unet, text_encoder)]
    unet.eval(), text_encoder.eval()
    probes = probe_set(n, seed=seed, size=int(vae.config.sample_size), frames=frames)
    latents = torch.cat([encode_clips(vae, probes["video"][s : s + batch].to(device, next(vae.parameters()).dtype))
                         for s in range(0, n, batch)]).float().cpu()

    def predict(noisy: torch.Tensor, t: torch.Tensor, texts: list[str]) -> torch.Tensor:
        ids = tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                        return_tensors="pt").input_ids.to(device)
        embeds = text_encoder(ids)[0]
        return unet(noisy.to(device, dtype), t.to(device), encoder_hidden_states=embeds).sample.cpu()

    try:
        alphas = components["scheduler"].alphas_cumprod.float()
        return gap_of(predict, latents, probes["captions"], probes["swapped"], alphas=alphas, seed=seed, batch=batch)
    finally:
        unet.train(modes[0]), text_encoder.train(modes[1])


def main(argv: list[str] | None = None) -> None:
    from videomage_toyworld.model import MODEL_DIR, load_model

    parser = argparse.ArgumentParser(prog="python -m toyworld.diagnose", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(MODEL_DIR))
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(json.dumps(direction_gap(load_model(args.model), n=args.n, seed=args.seed), indent=2))


if __name__ == "__main__":
    main()
