"""The sampling benchmarks' ratios as operation counts at real size, on the meta device.

Each line is a sampling step of ``test_sampling.py`` against the floor that benchmark times it
against, counted in floating-point operations (PyTorch's per-operator formulas) on a model built
on the meta device from its config, so nothing is loaded or downloaded:

* CFG step: the ``cfg`` sampler's step against one batched forward (negative and positive prompt);
* SCS unguided step: a step past tau against two such forwards, one per branch;
* SCS guided step, activations stored and checkpointed (the default): a step within tau
  against two forwards and backwards to the latents (batch 1) and the two batched forwards.

Where a step is compute-bound (a real-size model on a GPU) the ratio of operations is the ratio
of times the benchmark would print; on the small CPU model the benchmarks time per-operator
overhead instead. Example::

    .venv/bin/python -m benchmarks.guided_flops --model Wan-AI/Wan2.1-T2V-1.3B-Diffusers \\
        --frames 33 --height 480 --width 832
"""

from __future__ import annotations

import argparse
import json

import torch

from videomage.loading import detect_backbone
from videomage.memory import meta_kernels
from videomage.planning import PlanRequest, _MetaRun, plan
from videomage.plugins import get_registry

#: The benchmarks' targets (benchmarks/README.md), by line.
TARGETS = {"CFG step": 1.10, "SCS unguided step": 1.10, "SCS guided step, stored": 1.15,
           "SCS guided step, checkpointed (default)": 1.60}


def _count(fn) -> float:
    with meta_kernels(), _MetaRun() as count:
        fn()
    return count.flops


def floors(model: str, frames: int, height: int, width: int) -> tuple[float, float]:
    """Operations of one batched forward (batch 2, no gradients) and of one forward + backward to
    the latents (batch 1)."""
    bb = get_registry().get("backbone", detect_backbone(model)).on_meta(model)
    shape = (1, *bb.latent_shape(frames, height, width))
    with meta_kernels(), _MetaRun():  # answers the text encoder's ``item()`` on meta tensors
        text = bb.encode_prompt(["", ""])
    t = torch.tensor([500.0], device="meta")

    def batched():
        with torch.no_grad():
            bb.predict(torch.zeros((2, *shape[1:]), device="meta"), t.expand(2), text)

    def with_grad():
        x = torch.zeros(shape, device="meta").requires_grad_(True)
        with torch.enable_grad():
            out = bb.predict(x, t, text[1:])
            torch.autograd.grad(out.float().square().mean(), x)

    return _count(batched), _count(with_grad)


def ratios(model: str, frames: int, height: int, width: int) -> dict[str, dict[str, float]]:
    size = {"frames": frames, "height": height, "width": width}
    batched, grad = floors(model, **size)
    (cfg,) = plan(PlanRequest(model=model, sampler="cfg", **size), ["generate"])
    (checkpointed,) = plan(PlanRequest(model=model, **size), ["generate"])
    (stored,) = plan(PlanRequest(model=model, sampler_options={"guidance_checkpointing": False}, **size), ["generate"])
    guided_floor = 2 * grad + 2 * batched
    rows = {
        "CFG step": (cfg.unguided_step_flops, batched),
        "SCS unguided step": (checkpointed.unguided_step_flops, 2 * batched),
        "SCS guided step, stored": (stored.step_flops, guided_floor),
        "SCS guided step, checkpointed (default)": (checkpointed.step_flops, guided_floor),
    }
    return {name: {"operations": ops, "floor": floor, "ratio": ops / floor, "target": TARGETS[name]}
            for name, (ops, floor) in rows.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--frames", type=int, required=True)
    parser.add_argument("--height", type=int, required=True)
    parser.add_argument("--width", type=int, required=True)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args()
    rows = ratios(args.model, args.frames, args.height, args.width)
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"{args.model}, video {args.frames}x{args.height}x{args.width}: operations against the floor")
    for name, row in rows.items():
        verdict = "met" if row["ratio"] <= row["target"] else "missed"
        print(f"  {name:42s} {row['ratio']:.3f}  (target <= {row['target']:.2f} {verdict}; "
              f"{row['operations']:.4g} against {row['floor']:.4g})")


if __name__ == "__main__":
    main()
