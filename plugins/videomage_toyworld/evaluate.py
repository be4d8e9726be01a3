"""How well does a base model follow its captions? ``python -m videomage_toyworld.evaluate``.

Draws ``n`` full captions of the world ("a red circle moving left in the snow": colour, shape,
direction and scene all named), samples one clip per caption with classifier-free guidance
through the zeroscope backbone plugin, and scores each with the ``toy_text_alignment`` metric.
With ``--patterns N`` it also samples ``N`` shape-only captions ("a circle in the snow"), which in
training stood for plain objects of an unnamed colour or, three times as often, for patterned
ones, and reports the share of samples whose object wears two palette colours (``patterned``).
Prompts are sampled in batches (the cfg sampler's guided step, batched over prompts) because one
forward pass over eight prompts costs far less on a CPU than eight passes over one.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from tqdm.auto import tqdm
from videomage_samplers.cfg import guided, scheduler_step

from videomage_toyworld.analysis import two_coloured
from videomage_toyworld.metrics import TextAlignment
from videomage_toyworld.model import MODEL_DIR
from videomage_toyworld.vocabulary import DIRECTIONS, PALETTE, SCENES, SHAPES, visible


def full_captions(n: int, seed: int = 0) -> list[str]:
    """``n`` captions naming colour, shape, direction and scene, drawn uniformly (visible pairs only)."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        colour, shape = str(rng.choice(list(PALETTE))), str(rng.choice(SHAPES))
        direction, scene = str(rng.choice(list(DIRECTIONS))), str(rng.choice(list(SCENES)))
        if visible(colour, scene):
            out.append(f"a {colour} {shape} moving {direction} {scene}")
    return out


def shape_only_captions(n: int, seed: int = 0) -> list[str]:
    """``n`` captions naming a shape and a scene only ("a square at night"), drawn uniformly."""
    rng = np.random.default_rng([seed, 1])
    return [f"a {rng.choice(SHAPES)} {rng.choice(list(SCENES))}" for _ in range(n)]


@torch.no_grad()
def sample_batch(backbone, prompts: list[str], *, steps: int, guidance: float, seed: int,
                 offset: torch.Tensor | None = None) -> torch.Tensor:
    """Clips ``[B, F, 3, H, W]`` for ``prompts``, DDIM with CFG against the empty prompt.

    ``offset`` (broadcast to the latents) is added to the initial noise; probes such as
    ``benchmarks/mean_leak.py`` use it.
    """
    spec = backbone.video_spec
    scheduler = backbone.make_scheduler(None)
    scheduler.set_timesteps(steps)
    generator = torch.Generator().manual_seed(seed)
    shape = (len(prompts), *backbone.latent_shape(spec.frames, spec.height, spec.width))
    latents = torch.randn(shape, generator=generator) * scheduler.init_noise_sigma
    if offset is not None:
        latents = latents + offset
    embeds = backbone.encode_prompt([""] * len(prompts) + list(prompts))
    for t in scheduler.timesteps:
        latents = scheduler_step(scheduler, guided(backbone, latents, t, embeds, guidance, scheduler), t, latents, generator)
    return backbone.decode_latents(latents)


def sampled(backbone, captions: list[str], *, batch: int, steps: int, guidance: float, seed: int, desc: str,
            progress: bool):
    """``(caption, video)`` pairs, sampled ``batch`` captions at a time (the batch from index ``i``
    with seed ``seed + i``), with a progress bar."""
    for start in tqdm(range(0, len(captions), batch), desc=desc, disable=not progress):
        prompts = captions[start : start + batch]
        yield from zip(prompts, sample_batch(backbone, prompts, steps=steps, guidance=guidance, seed=seed + start))


def evaluate(model: str = str(MODEL_DIR), *, n: int = 32, batch: int = 8, steps: int = 25, guidance: float = 7.5,
             seed: int = 0, progress: bool = True, sheet: str | None = None, patterns: int = 0) -> dict[str, float]:
    """Mean ``toy_text_alignment`` parts over ``n`` full captions (each a fraction of samples).

    ``sheet``: also write the samples as one contact sheet (a row per sample) to this PNG path.
    ``patterns``: also sample this many shape-only captions and report the share of two-coloured
    objects among them as ``patterned`` (see :func:`videomage_toyworld.analysis.two_coloured`).
    """
    from videomage.kit import load_backbone

    backbone = load_backbone(model)
    captions = full_captions(n, seed)
    metric = TextAlignment()
    options = {"batch": batch, "steps": steps, "guidance": guidance, "progress": progress}
    rows, kept = [], []
    for prompt, video in sampled(backbone, captions, seed=seed, desc="evaluating", **options):
        rows.append(metric.compute(video, {"prompt": prompt}))
        kept += [video] if sheet else []
    if sheet:
        from videomage.kit import write_contact_sheet

        write_contact_sheet(torch.cat(kept), sheet, columns=kept[0].shape[0])
    out = {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}
    out["all_four"] = float(np.mean([min(r[k] for k in ("colour", "shape", "background", "direction")) for r in rows]))
    out["samples"] = float(n)
    if patterns:
        shape_only = sampled(backbone, shape_only_captions(patterns, seed), seed=seed + 10_000, desc="patterns", **options)
        out["patterned"] = float(np.mean([two_coloured(video) for _, video in shape_only]))
        out["pattern_samples"] = float(patterns)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m videomage_toyworld.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(MODEL_DIR))
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sheet", default=None, help="write the samples as a contact sheet PNG here")
    parser.add_argument("--patterns", type=int, default=0, metavar="N",
                        help="also sample N shape-only captions and report the share drawn two-coloured")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    scores = evaluate(args.model, n=args.n, batch=args.batch, steps=args.steps, guidance=args.guidance, seed=args.seed,
                      sheet=args.sheet, patterns=args.patterns)
    print(json.dumps(scores, indent=2))


if __name__ == "__main__":
    main()
