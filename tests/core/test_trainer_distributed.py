"""`accelerate launch` with two CPU processes trains, and both ranks end with the same weights."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

SCRIPT = '''
import os, sys, torch
from videomage.components import ObjectiveOutput
from videomage.trainer import ParamGroup, Trainer, TrainerConfig

out = sys.argv[1]
w = torch.nn.Parameter(torch.zeros(3))
true_w = torch.tensor([1.0, -2.0, 0.5])

def step_loss(step, generator):
    x = torch.randn(4, 3, generator=generator)  # each rank draws its own data
    return ObjectiveOutput(loss=((x @ w - x @ true_w) ** 2).mean())

trainer = Trainer(TrainerConfig(steps=60, progress=False), [ParamGroup(name="w", params=[w], lr=0.1)], step_loss)
history = trainer.fit()
from safetensors.torch import save_file
save_file({"w": w.detach(), "world": torch.tensor(trainer.world), "first": torch.tensor(history[0]["loss"]),
           "last": torch.tensor(history[-1]["loss"])}, os.path.join(out, f"rank{trainer.rank}.safetensors"))
'''


@pytest.mark.slow
def test_two_process_data_parallel_training(tmp_path):
    launcher = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
    if launcher is None:
        pytest.skip("accelerate is not installed (pip install -e '.[dev]')")
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    # `--multi_gpu` selects the multi-process launcher; without GPUs the trainer joins a Gloo group.
    # A free port rather than the default 29500, so that two test runs on one machine do not meet.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cmd = [launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_cpu_threads_per_process", "1", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "--main_process_port", str(port), str(script), str(tmp_path)]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    files = sorted(p.name for p in tmp_path.glob("rank*.safetensors"))
    assert files == ["rank0.safetensors", "rank1.safetensors"], result.stdout[-2000:] + result.stderr[-2000:]
    ranks = [load_file(str(tmp_path / name)) for name in files]
    assert all(int(r["world"]) == 2 for r in ranks)
    assert torch.equal(ranks[0]["w"], ranks[1]["w"])
    assert ranks[0]["last"] < 0.1 * ranks[0]["first"]
