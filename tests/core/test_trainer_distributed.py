"""`accelerate launch` with two CPU processes: both ranks end with the same weights, which equal
one process's on the two ranks' batches combined, and process k takes device k."""

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
from videomage import parallel
from videomage.components import ObjectiveOutput
from videomage.trainer import ParamGroup, Trainer, TrainerConfig

out = sys.argv[1]
w = torch.nn.Parameter(torch.zeros(3))
b = torch.nn.Parameter(torch.zeros(1))
true_w = torch.tensor([1.0, -2.0, 0.5])

def step_loss(step, generator):
    x = torch.randn(4, 3, generator=generator)  # each rank draws its own data
    return ObjectiveOutput(loss=((x @ w + b - x @ true_w - 0.3) ** 2).mean())

config = TrainerConfig(steps=STEPS, progress=False, stream="test/ddp")
trainer = Trainer(config, [ParamGroup(name="w", params=[w], lr=0.1), ParamGroup(name="b", params=[b], lr=0.05)], step_loss)
history = trainer.fit()
from safetensors.torch import save_file
save_file({"w": w.detach(), "b": b.detach(), "world": torch.tensor(trainer.world), "first": torch.tensor(history[0]["loss"]),
           "last": torch.tensor(history[-1]["loss"])}, os.path.join(out, f"rank{trainer.rank}.safetensors"),
          metadata={"device": parallel.process_device("cuda")})
'''

STEPS = 60


def one_process_on_the_combined_batch():
    """The same training in one process, each step on both ranks' batches at once."""
    from videomage.components import ObjectiveOutput
    from videomage.trainer import ParamGroup, Trainer, TrainerConfig, stream_seed

    w, b = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(1))
    true_w = torch.tensor([1.0, -2.0, 0.5])
    ranks = [torch.Generator().manual_seed(stream_seed(0, "test/ddp", r)) for r in (0, 1)]

    def step_loss(step, generator):
        x = torch.cat([torch.randn(4, 3, generator=g) for g in ranks])
        return ObjectiveOutput(loss=((x @ w + b - x @ true_w - 0.3) ** 2).mean())

    config = TrainerConfig(steps=STEPS, progress=False, stream="test/ddp")
    Trainer(config, [ParamGroup(name="w", params=[w], lr=0.1), ParamGroup(name="b", params=[b], lr=0.05)], step_loss).fit()
    return w.detach(), b.detach()


@pytest.mark.slow
def test_two_process_data_parallel_training(tmp_path):
    launcher = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
    if launcher is None:
        pytest.skip("accelerate is not installed (pip install -e '.[dev]')")
    script = tmp_path / "train.py"
    script.write_text(SCRIPT.replace("STEPS", str(STEPS)))
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
    assert torch.equal(ranks[0]["w"], ranks[1]["w"]) and torch.equal(ranks[0]["b"], ranks[1]["b"])
    assert ranks[0]["last"] < 0.1 * ranks[0]["first"]
    w, b = one_process_on_the_combined_batch()
    assert torch.allclose(ranks[0]["w"], w, atol=1e-6, rtol=0) and torch.allclose(ranks[0]["b"], b, atol=1e-6, rtol=0)
    from safetensors import safe_open

    devices = []
    for name in files:
        with safe_open(str(tmp_path / name), framework="pt") as fh:
            devices.append(fh.metadata()["device"])
    assert devices == ["cuda:0", "cuda:1"]  # `--device cuda`: process k of the machine takes GPU k


def test_one_process_keeps_the_requested_device_and_an_explicit_gpu_is_refused_under_a_launcher(monkeypatch):
    from videomage import parallel
    from videomage.errors import ConfigError

    for key in ("WORLD_SIZE", "LOCAL_RANK", "RANK"):
        monkeypatch.delenv(key, raising=False)
    assert parallel.process_device("cuda") == "cuda" and parallel.process_device("cuda:3") == "cuda:3"
    assert parallel.rank_and_world() == (0, 1) and parallel.is_main_process()

    class State:  # what accelerate's PartialState says for process 1 of a machine
        local_process_index = 1

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(parallel, "_state", lambda: State())
    assert parallel.process_device("cuda") == "cuda:1" and parallel.process_device("cpu") == "cpu"
    with pytest.raises(ConfigError, match="same GPU"):
        parallel.process_device("cuda:0")
