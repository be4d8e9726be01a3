"""The scene every benchmark shares: one backbone, two subject adapters, their fusion, a motion adapter.

Everything lives in **one** model, as the method requires: ``subject_a`` and ``subject_b`` on
the spatial roles, ``fused`` (their rank-concatenated average, the fusion stage's student) and
``motion`` on the temporal roles. LoRA ``B`` matrices get small random values so that every
adapter changes the outputs (fresh LoRAs are exact no-ops, which would make merging and
switching look cheaper than they are).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import attrs
import torch

from benchmarks.models import BenchConfig, build_real_backbone, save_small_model

#: Subject tokens and their class words; words outside the toy vocabulary tokenize letter by
#: letter, which only lengthens the matched positions.
TOKENS = {"<toy>": "circle", "<dog>": "square"}
PROMPT = "<toy> is riding <dog> in the snow"
MOTION_PROMPT = "a circle is riding a square"  # c_m in the motion stage's wording
APPEARANCE_PROMPT = "a static video of circle and square"  # c_ap
RANK = 4


@attrs.define
class World:
    config: BenchConfig
    backbone: object
    adapter: object
    folder: Path  # where the model (small size) and artifacts live

    @property
    def device(self) -> torch.device:
        return self.backbone.device

    def latents(self, batch: int = 1, frames: int | None = None, seed: int = 0) -> torch.Tensor:
        c, f, h, w = self.backbone.latent_shape(frames or self.config.frames, self.config.height, self.config.width)
        g = torch.Generator().manual_seed(seed)
        return torch.randn(batch, c, f, h, w, generator=g).to(self.device, self.backbone.dtype)

    def shapes(self) -> str:
        c, f, h, w = self.backbone.latent_shape(self.config.frames, self.config.height, self.config.width)
        return (f"video {self.config.frames}x{self.config.height}x{self.config.width}, latents [B,{c},{f},{h},{w}], "
                f"{self.config.dtype} on {self.device}")

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def randomize_lora(adapter, backbone, names, std: float = 0.02, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name in names:
            params = adapter.parameters(backbone, name)
            for a, b in zip(params[0::2], params[1::2]):  # [A, B] per layer
                b.copy_(torch.randn(b.shape, generator=g).to(b) * std)


def make_world(config: BenchConfig, folder: Path | None = None) -> World:
    """Build (or load, for the small size) the model and install the benchmark's adapters."""
    from videomage.loading import load_backbone, make_adapter

    folder = Path(folder or tempfile.mkdtemp(prefix="videomage-bench-"))
    if config.size == "small":
        model = folder / "model"
        if not (model / "model_index.json").exists():
            save_small_model(model, frames=config.frames, backbone=config.backbone)
        backbone = load_backbone(str(model), device=config.device, dtype=config.dtype)
    else:
        backbone = build_real_backbone(config, folder / "tokenizer")
    adapter = make_adapter("lora")
    backbone.add_tokens(list(TOKENS), list(TOKENS.values()))
    adapter.attach(backbone, "subject_a", roles=["spatial"], rank=RANK)
    adapter.attach(backbone, "subject_b", roles=["spatial"], rank=RANK)
    adapter.attach(backbone, "motion", roles=["temporal"], rank=RANK)
    randomize_lora(adapter, backbone, ["subject_a", "subject_b", "motion"])
    adapter.attach_average(backbone, "fused", ["subject_a", "subject_b"])
    adapter.activate(backbone, {})
    return World(config=config, backbone=backbone, adapter=adapter, folder=folder)
