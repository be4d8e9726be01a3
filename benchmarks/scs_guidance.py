"""SCS guidance: how much of a refinement each scheduler keeps, and how big a guided step is per video size.

    .venv/bin/python -m benchmarks.scs_guidance [--model plugins/videomage_toyworld/model]

Prints two tables (docs/method/sampling.md quotes them):

1. offset survival: per backbone and scheduler, the share of an offset added to the sample
   before step 3 of 10 that is in that step's result, with a constant model output, as the
   scheduler is (``before``) and as SCS steps it (``after``, :func:`keep_refinement`);
2. the root-mean-square change of a latent element made by one guided step, per term, at three
   video sizes, under the paper's rule (``x -= 1e4 * grad``) and under ``guidance_norm = "rms"``.

Everything runs on tiny random models (ZeroScope architecture and Wan) unless ``--model`` names
a ZeroScope-family folder, such as the shipped toy model; adapters get random weights.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

from videomage.loading import load_backbone, make_adapter
from videomage_samplers.scs import SCSSampler, matched_positions, motion_prompt_for
from videomage_samplers.stepping import offset_survival

PROMPT = "<toy> is chasing <dog> on the grass"
TOKENS = {"<toy>": "toy", "<dog>": "dog"}
SCHEDULERS = {
    "zeroscope": ("DDIMScheduler", "DDPMScheduler", "DPMSolverMultistepScheduler", "UniPCMultistepScheduler",
                  "DEISMultistepScheduler", "EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler",
                  "PNDMScheduler", "HeunDiscreteScheduler"),
    "wan": ("UniPCMultistepScheduler", "DPMSolverMultistepScheduler", "FlowMatchEulerDiscreteScheduler"),
}


def two_branch_adapters(backbone, adapter=None, tokens=TOKENS, *, rank: int = 2, std: float = 0.2, seed: int = 0):
    """Add ``tokens`` and attach SCS's two adapters, a spatial ``subjects`` and a temporal ``motion``,
    every weight random (``std``) so that neither is a no-op; returns ``(backbone, adapter)``."""
    adapter = adapter or make_adapter()
    backbone.add_tokens(list(tokens), list(tokens.values()))
    g = torch.Generator().manual_seed(seed)
    for name, role in (("subjects", "spatial"), ("motion", "temporal")):
        adapter.attach(backbone, name, roles=[role], rank=rank)
        with torch.no_grad():
            for p in adapter.parameters(backbone, name):
                p.copy_(torch.randn(p.shape, generator=g) * std)
    return backbone, adapter


def guided_update(backbone, adapter, frames: int, height: int, width: int, alphas, norm: str, step: int = 2):
    """RMS change per latent element of ``(x_sub, x_mot)`` in one guided step at step ``step`` of 10
    (adapters from :func:`two_branch_adapters`)."""
    scheduler = backbone.make_scheduler()
    scheduler.set_timesteps(10)
    t = scheduler.timesteps[step]
    shape = (1, *backbone.latent_shape(frames, height, width))
    latents = torch.randn(shape, generator=torch.Generator().manual_seed(1)) * getattr(scheduler, "init_noise_sigma", 1.0)
    motion_prompt = motion_prompt_for(PROMPT, TOKENS)
    with torch.no_grad():
        embeds = (backbone.encode_prompt([PROMPT]), backbone.encode_prompt([motion_prompt]))
    pos = matched_positions(backbone, PROMPT, motion_prompt, TOKENS)
    x_sub, x_mot = SCSSampler().guide(backbone, adapter, latents, t, embeds, ({"subjects": 1.0}, {"motion": 1.0}), pos,
                                      alphas, tuple(latents.shape[-2:]), scheduler, norm=norm)
    return [float((x - latents).square().mean().sqrt()) for x in (x_sub, x_mot)]


def tiny_models(folder: Path, model: str | None):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import save_tiny_model, tiny_configs
    from videomage_wan.tiny import save_tiny_wan

    zeroscope = model or str(save_tiny_model(folder / "zeroscope", tiny_configs()["tiny"]))
    return {"zeroscope": zeroscope, "wan": str(save_tiny_wan(folder / "wan"))}


SIZES = {"zeroscope": ((4, 32, 32), (8, 64, 64), (16, 64, 128)), "wan": ((5, 32, 48), (9, 64, 96), (17, 96, 128))}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a ZeroScope-family folder (default: a tiny random one)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    models = tiny_models(Path(tempfile.mkdtemp()), args.model)
    print("offset survival, offset before step 3 of 10, constant model output: before -> after")
    for family, names in SCHEDULERS.items():
        backbone = load_backbone(models[family])
        for name in names:
            scheduler = backbone.make_scheduler(name)
            scheduler.set_timesteps(10)
            before, after = offset_survival(scheduler, [2], refine=False)[2], offset_survival(scheduler, [2])[2]
            print(f"  {family:9s} {name:34s} {before:6.0%} -> {after:6.0%}")
    print("RMS change per latent element in one guided step (temporal term -> x_sub, cross term -> x_mot)")
    for family, sizes in SIZES.items():
        backbone, adapter = two_branch_adapters(load_backbone(models[family]))
        for label, alphas, norm in (("paper rule, alpha 1e4", 1e4, "none"), ("rms, alpha 1e-3", 1e-3, "rms")):
            rows = [(size, guided_update(backbone, adapter, *size, alphas, norm)) for size in sizes]
            cells = "  ".join(f"{f}x{h}x{w}: {a:.3g} / {b:.3g}" for (f, h, w), (a, b) in rows)
            spread = [max(r[1][i] for r in rows) / max(min(r[1][i] for r in rows), 1e-30) for i in (0, 1)]
            print(f"  {family:9s} {label:22s} {cells}   max/min {spread[0]:.2f} / {spread[1]:.2f}")


if __name__ == "__main__":
    main()
