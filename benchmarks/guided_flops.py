"""Operations of a guided SCS step against the guided-step benchmark's floor, at real size, on the meta device.

The floor is what ``test_scs_guided_step*`` times against: per step 2 x (forward + backward to the
latents, batch 1) and the two batched CFG forwards. The guided step is ``videomage plan``'s (SCS,
activation checkpointing of the guidance on, as by default). Where a step is compute-bound (a real
model on a GPU) the ratio of operations is the ratio of times the benchmark would print::

    .venv/bin/python -m benchmarks.guided_flops --model Wan-AI/Wan2.1-T2V-1.3B-Diffusers --frames 33 --height 480 --width 832
"""

from __future__ import annotations

import argparse

import torch

from videomage.loading import detect_backbone
from videomage.memory import meta_kernels
from videomage.planning import PlanRequest, _MetaRun, plan
from videomage.plugins import get_registry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--frames", type=int, required=True)
    parser.add_argument("--height", type=int, required=True)
    parser.add_argument("--width", type=int, required=True)
    args = parser.parse_args()
    size = {"frames": args.frames, "height": args.height, "width": args.width}
    (generate,) = plan(PlanRequest(model=args.model, **size), ["generate"])
    bb = get_registry().get("backbone", detect_backbone(args.model)).on_meta(args.model)
    shape = (1, *bb.latent_shape(args.frames, args.height, args.width))
    text = bb.encode_prompt([""])
    with meta_kernels(), _MetaRun() as count:  # one forward + backward to the latents
        x = torch.zeros(shape, device="meta").requires_grad_(True)
        out = bb.predict(x, torch.tensor([500.0], device="meta"), text)
        torch.autograd.grad(out.float().square().mean(), x)
    floor = 2 * count.flops + generate.unguided_step_flops  # the unguided step: the two CFG forwards
    print(f"guided step {generate.step_flops:.4g} operations, floor {floor:.4g} "
          f"(forward + backward {count.flops:.4g}, two CFG forwards {generate.unguided_step_flops:.4g}): "
          f"ratio {generate.step_flops / floor:.3f}")


if __name__ == "__main__":
    main()
