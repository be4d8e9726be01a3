"""Peak memory of SCS vs plain CFG sampling (one model in memory), and loading an artifact."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from benchmarks.harness import RESULTS, compare, format_row
from benchmarks.memory_probe import measure
from benchmarks.world import TOKENS
from videomage.artifact import Artifact

ROOT = Path(__file__).resolve().parent.parent


def _probe(world, mode: str) -> dict:
    if world.device.type == "cuda":
        return measure(world, mode)
    # CPU: a fresh process per measurement (see memory_probe.py); it reuses the saved model.
    out = subprocess.run([sys.executable, "-m", "benchmarks.memory_probe", mode, str(world.folder)], cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_sampling_peak_memory(benchmark, world):
    """SCS (guided and unguided) vs plain CFG sampling: peak memory ratio (issue: <= 1.25)."""
    if world.device.type == "cpu" and not Path("/proc/self/clear_refs").exists():
        pytest.skip("peak-RSS reset needs Linux /proc/self/clear_refs")
    results = {}

    def run():
        for mode in ("cfg", "scs_unguided", "scs", "scs_checkpointed"):
            results[mode] = _probe(world, mode)

    benchmark.pedantic(run, rounds=1, iterations=1)
    cfg = results["cfg"]
    gpu = world.device.type == "cuda"
    # The ratio: GPU, max_memory_allocated; CPU, the peak of live tensor bytes counted the same
    # way (benchmarks.live_bytes), with the process's peak RSS in the note.
    key, base_key = ("peak_bytes", "base_bytes") if gpu else ("live_peak_bytes", "live_base_bytes")
    unit = "GPU max_memory_allocated" if gpu else "peak live tensor bytes (LiveBytes)"
    for mode, label in (("scs_unguided", "SCS unguided"), ("scs", "SCS guided (tau = all steps)"),
                        ("scs_checkpointed", "SCS guided with guidance_checkpointing (tau = all steps)")):
        r = results[mode]
        ratio = r[key] / cfg[key]
        row = {
            "name": f"peak memory: {label} vs CFG sampling",
            "ratio": round(ratio, 4),
            "target": "<= 1.25",
            "met": ratio <= 1.25,
            "candidate_median_ms": 0, "floor_median_ms": 0, "ratio_spread": [0, 0], "rounds": 1,
            "shapes": world.shapes(),
            "note": (f"{unit}: {r[key] / 2**20:.0f} MiB vs {cfg[key] / 2**20:.0f} MiB; "
                     f"above the loaded model: {(r[key] - r[base_key]) / 2**20:.0f} MiB vs "
                     f"{(cfg[key] - cfg[base_key]) / 2**20:.0f} MiB"
                     + ("" if gpu else f"; process peak RSS {r['peak_bytes'] / 2**20:.0f} vs "
                        f"{cfg['peak_bytes'] / 2**20:.0f} MiB ({r['peak_bytes'] / cfg['peak_bytes']:.3f})")),
        }
        RESULTS.append(row)
        benchmark.extra_info[mode] = row
        print(format_row(row))


def test_artifact_load(benchmark, world):
    """Loading a subject artifact into the model (read + attach + copy) vs reading its tensors."""
    b, ad = world.backbone, world.adapter
    art = Artifact(kind="subject", backbone=b.name, fingerprint=b.fingerprint(), adapter=ad.name,
                   adapter_config={"rank": 4}, roles=["spatial"], tokens={"<toy>": TOKENS["<toy>"]},
                   adapter_tensors=ad.state_dict(b, "subject_a"), embeddings=b.token_embeddings(["<toy>"]))
    path = art.save(world.folder / "subject.safetensors")

    def candidate():
        Artifact.load(path).install(b, ad, "loaded")

    compare(benchmark, world, "artifact load + install vs reading its tensors", candidate, lambda: load_file(str(path)),
            after=lambda: ad.remove(b, "loaded"),
            note=f"{path.stat().st_size / 2**20:.2f} MiB artifact; the difference is peft's adapter injection; no target")
