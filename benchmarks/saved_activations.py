"""Bytes a guided SCS step keeps for its backward pass, with and without activation checkpointing.

Peak resident memory on a CPU is blurred by the allocator; the bytes autograd saves for the
backward pass are exact and device-independent, and they are what activation checkpointing
removes. ``python -m benchmarks.saved_activations`` builds the model the ``VIDEOMAGE_BENCH_*``
variables describe (``VIDEOMAGE_BENCH_SIZE=real VIDEOMAGE_BENCH_DEVICE=cpu
VIDEOMAGE_BENCH_DTYPE=float32`` for the published UNet config on a CPU) and prints one JSON line.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch

from benchmarks.models import BenchConfig
from benchmarks.world import PROMPT, TOKENS, make_world
from videomage_samplers.scs import SCSSampler, matched_positions, motion_prompt_for


def saved_bytes(world, checkpointing: bool) -> int:
    """Largest total of saved-for-backward bytes alive at once during one guided step."""
    b, ad = world.backbone, world.adapter
    scheduler = b.make_scheduler()
    scheduler.set_timesteps(50)
    t = scheduler.timesteps[5]
    motion_prompt = motion_prompt_for(PROMPT, TOKENS)
    pos = matched_positions(b, PROMPT, motion_prompt, TOKENS)
    with torch.no_grad():
        embeds = (b.encode_prompt([PROMPT]), b.encode_prompt([motion_prompt]))
    live, peak = 0, 0
    # Weights saved for the backward pass alias the parameters and cost nothing: skip them.
    weights = {p.untyped_storage().data_ptr() for p in b.denoiser.parameters()}

    def pack(tensor):
        nonlocal live, peak
        size = 0 if tensor.untyped_storage().data_ptr() in weights else tensor.numel() * tensor.element_size()
        live += size
        peak = max(peak, live)
        return (tensor, size)

    def unpack(packed):
        return packed[0]

    latents = world.latents()
    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        SCSSampler().guide(b, ad, latents, t, embeds, ({"fused": 1.0}, {"motion": 1.0}), pos, 1.0,
                           tuple(latents.shape[-2:]), scheduler, checkpointing=checkpointing)
    # ``live`` only grows (graphs are freed after the hooks saw them): ``peak`` is the total saved
    # by the forward passes of one guided step, all alive together just before its backward.
    return peak


def main() -> None:
    torch.set_num_threads(int(os.environ.get("VIDEOMAGE_BENCH_THREADS", "1")))
    config = BenchConfig.from_env()
    world = make_world(config, Path(tempfile.mkdtemp()))
    stored, checkpointed = saved_bytes(world, False), saved_bytes(world, True)
    print(json.dumps({"shapes": world.shapes(), "stored_mib": round(stored / 2**20, 1),
                      "checkpointed_mib": round(checkpointed / 2**20, 1), "ratio": round(checkpointed / stored, 4)}))


if __name__ == "__main__":
    main()
