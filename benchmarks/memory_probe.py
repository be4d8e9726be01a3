"""Peak memory of one sampling run, measured in a fresh process (CPU) or on the GPU.

CPU: the process's peak resident set (``VmHWM``) is reset through ``/proc/self/clear_refs``
once the model is loaded, so the peak belongs to the sampling run alone; a fresh process per
measurement keeps one run's freed-but-retained heap from inflating the next.
GPU: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``.
CPU, also: the peak bytes of live tensors as a GPU allocator would count them
(:class:`benchmarks.live_bytes.LiveBytes`: every tensor alive at the start, weights included,
plus the peak of those the run creates), the CPU figure comparable with the GPU's.

``python -m benchmarks.memory_probe MODE FOLDER`` (MODE: cfg | scs | scs_unguided | scs_checkpointed) prints one
JSON line: ``{"mode", "base_bytes", "peak_bytes"}`` (CPU: also ``live_base_bytes``, ``live_peak_bytes``);
benchmark config comes from the environment.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from pathlib import Path

import torch


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def sample(world, mode: str) -> None:
    from benchmarks.world import PROMPT, TOKENS
    from videomage.plugins import get_registry

    c = world.config
    request = {"prompt": PROMPT, "steps": c.steps, "frames": c.frames, "height": c.height, "width": c.width,
               "seed": 0, "progress": False}
    if mode == "cfg":
        request["adapters"] = {"fused": 1.0, "motion": 1.0}  # the "w/o SCS" baseline: both LoRAs in one pass
    else:
        request.update(subject_adapter="fused", motion_adapter="motion", tokens=dict(TOKENS),
                       tau=0 if mode == "scs_unguided" else c.steps,
                       # scs: activations kept for backward; scs_checkpointed: recomputed (the default)
                       guidance_checkpointing=mode == "scs_checkpointed")
    get_registry().create("sampler", "cfg" if mode == "cfg" else "scs").sample(world.backbone, world.adapter, request)


def measure(world, mode: str) -> dict:
    """Peak memory of one sampling run in this process (CPU: only meaningful in a fresh process)."""
    gc.collect()
    if world.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        sample(world, mode)
        torch.cuda.synchronize()
        return {"mode": mode, "base_bytes": base, "peak_bytes": torch.cuda.max_memory_allocated()}
    from benchmarks.live_bytes import LiveBytes, storage_bytes

    live_base = storage_bytes(o for o in gc.get_objects() if isinstance(o, torch.Tensor))
    base = _status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    start = time.perf_counter()
    with LiveBytes() as live:
        sample(world, mode)
    return {"mode": mode, "base_bytes": base, "peak_bytes": _status("VmHWM"),
            "live_base_bytes": live_base, "live_peak_bytes": live_base + live.peak,
            "seconds": round(time.perf_counter() - start, 2)}


def main() -> None:
    from benchmarks.models import BenchConfig
    from benchmarks.world import make_world

    mode, folder = sys.argv[1], Path(sys.argv[2])
    torch.set_num_threads(int(os.environ.get("VIDEOMAGE_BENCH_THREADS", "1")))
    world = make_world(BenchConfig.from_env(), folder)
    print(json.dumps(measure(world, mode)))


if __name__ == "__main__":
    main()
