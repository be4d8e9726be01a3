"""Helpers of the interop tests: artifacts with random LoRAs, one forward pass, diffusers' log."""

from __future__ import annotations

import logging
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import torch

from videomage.artifact import Artifact
from videomage.loading import load_backbone, make_adapter

#: alpha / rank = 2: the scale an exporter must carry into the other library.
RANK, ALPHA = 4, 8.0


def random_artifact(model: Path, roles, *, token: str | None = "<toy>", seed: int = 0, kind: str = "subject") -> Artifact:
    """An artifact of ``model`` whose LoRA and token are random, as if trained."""
    backbone, adapter = load_backbone(str(model)), make_adapter()
    adapter.attach(backbone, "src", roles=roles, rank=RANK, alpha=ALPHA)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in adapter.parameters(backbone, "src"):
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    tokens = {}
    if token:
        backbone.add_tokens([token], ["toy"])
        width = backbone.token_embedding_weight().shape[1]
        backbone.set_token_embeddings({token: torch.randn(width, generator=gen)})
        tokens = {token: "toy"}
    return Artifact(kind=kind, backbone=backbone.name, fingerprint=backbone.fingerprint(), adapter=adapter.name,
                    adapter_config={"rank": RANK, "alpha": ALPHA}, roles=list(roles), tokens=tokens,
                    adapter_tensors=adapter.state_dict(backbone, "src"), embeddings=backbone.token_embeddings(list(tokens)),
                    info={"model": str(model)})


def inputs(backbone, seed: int = 1):
    """Latents, a timestep and text states for one forward pass at the model's native size."""
    spec = backbone.video_spec
    gen = torch.Generator().manual_seed(seed)
    c, f, h, w = backbone.latent_shape(spec.frames, spec.height, spec.width)
    x = torch.randn(1, c, min(f, 2), h, w, generator=gen)
    text = torch.randn(1, *backbone.encode_prompt(["a toy"]).shape[1:], generator=gen)
    return x, torch.tensor([500]), text


def videomage_output(model: Path, artifact: Artifact, x, t, text) -> torch.Tensor:
    backbone, adapter = load_backbone(str(model)), make_adapter()
    artifact.install(backbone, adapter, "a")
    adapter.activate(backbone, {"a": 1.0})
    with torch.no_grad():
        return backbone.predict(x, t, text)


@contextmanager
def diffusers_warnings():
    """Every warning diffusers logs inside the block (its loggers do not propagate to the root)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger = logging.getLogger("diffusers")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def lora_layer_count(module: torch.nn.Module) -> int:
    from peft.tuners.lora import LoraLayer

    return sum(isinstance(m, LoraLayer) for m in module.modules())


def _classes():
    from diffusers import AutoencoderKL, UNet3DConditionModel
    from transformers import CLIPTextModel

    return {"unet": UNet3DConditionModel, "vae": AutoencoderKL, "text_encoder": CLIPTextModel}


CLASSES = ("unet", "vae", "text_encoder")


def as_bin(source: Path, target: Path) -> Path:
    """A copy of a tiny model whose components are saved with ``safe_serialization=False``.

    transformers 5 writes safetensors whatever it is asked, so the text encoder's
    ``pytorch_model.bin`` is written as older transformers wrote it: ``torch.save`` of its state dict.
    """
    shutil.copytree(source, target)
    for name, cls in _classes().items():
        model = cls.from_pretrained(target / name)
        for path in (target / name).glob("*.safetensors"):
            path.unlink()
        if name == "text_encoder":
            torch.save(model.state_dict(), target / name / "pytorch_model.bin")
        else:
            model.save_pretrained(target / name, safe_serialization=False)
        assert not list((target / name).glob("*.safetensors")) and list((target / name).glob("*.bin"))
    return target


class RunsCode:
    """Unpickling this runs a shell command: what a hostile .bin does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))
