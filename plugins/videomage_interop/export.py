"""Writing a videomage artifact in the key names diffusers, peft and ComfyUI load.

Formats:

* ``diffusers``: ``<component>.<layer>.lora_A.weight`` / ``lora_B.weight`` with the backbone's
  diffusers component (``transformer`` for Wan, ``unet`` for ZeroScope), and diffusers'
  ``lora_adapter_metadata`` (the LoraConfig: rank, alpha, the exact layers), so that
  ``WanPipeline.load_lora_weights(path)`` builds the same adapter; without the prefix the keys
  are what peft's ``set_peft_model_state_dict`` takes (ZeroScope's route: diffusers' loaders
  cannot put a LoRA into a ``UNet3DConditionModel``).
* ``comfyui``: ``diffusion_model.<original layer name>.lora_down.weight`` / ``lora_up.weight`` and
  ``.alpha``, with the family's original names (Wan: ``blocks.0.self_attn.q``). A family that
  declares none is refused: ComfyUI would map no key, the silently ignored LoRA.

Both keep the tensors as trained and carry the scale as alpha (diffusers: ``lora_alpha`` in the
metadata; ComfyUI: one ``alpha`` per layer), so the loader computes exactly what videomage does. Learned tokens go beside the LoRA, one
``<stem>.token<N>.safetensors`` per token holding ``{token: vector}``: the single-token file
diffusers' ``load_textual_inversion`` reads for CLIP text encoders; for other encoders the docs
show the few lines that add the token. The artifact's metadata (kind, backbone, model, roles,
tokens) travels in every file's safetensors metadata as ``videomage.export``.
"""

from __future__ import annotations

import json
from pathlib import Path

import attrs
from safetensors.torch import save_file

from videomage import ArtifactError, Backbone, ConfigError
from videomage.kit import Artifact, atomic_write, format_choices
from videomage_interop.keys import from_artifact, uniform

FORMATS = ("diffusers", "comfyui")


@attrs.frozen(kw_only=True)
class Exported:
    """What an export wrote: the LoRA file, its keys, and the token files."""

    path: Path
    keys: tuple[str, ...]
    layers: int
    token_files: tuple[Path, ...] = ()


def provenance(artifact: Artifact, fmt: str) -> str:
    meta = artifact.metadata()
    meta.pop("info", None)
    meta.update(model=artifact.info.get("model"), exported_as=fmt)
    return json.dumps(meta, sort_keys=True)


def diffusers_tensors(artifact: Artifact, backbone: type[Backbone]) -> tuple[dict, dict]:
    component = backbone.diffusers_component
    if not component:
        raise ConfigError(f"backbone {backbone.name!r} names no diffusers pipeline component (Backbone.diffusers_component), "
                          f"so there are no diffusers LoRA keys to write for it")
    layers, rank, scale = uniform(from_artifact(artifact.adapter_tensors, artifact.adapter_config))
    tensors = {}
    for name, (a, b) in layers.items():
        tensors[f"{component}.{name}.lora_A.weight"] = a.contiguous()
        tensors[f"{component}.{name}.lora_B.weight"] = b.contiguous()
    config = {"r": rank, "lora_alpha": scale * rank, "target_modules": sorted(layers), "lora_dropout": 0.0, "bias": "none"}
    meta = {"format": "pt", "lora_adapter_metadata": json.dumps({f"{component}.{k}": v for k, v in config.items()}, sort_keys=True)}
    return tensors, meta


def comfyui_tensors(artifact: Artifact, backbone: type[Backbone]) -> tuple[dict, dict]:
    import torch

    layers, rank, scale = uniform(from_artifact(artifact.adapter_tensors, artifact.adapter_config))
    original = {name: backbone.original_layer_name(name) for name in layers}
    if not any(original.values()):
        raise ConfigError(
            f"cannot export a {backbone.name!r} artifact for ComfyUI: ComfyUI maps LoRA keys only onto the layer names of "
            f"model classes it has, and it has none for {backbone.name!r} models (the backbone declares no original layer "
            f"names), so every key would be ignored. Export with --format diffusers and load it with diffusers or peft"
        )
    missing = sorted(n for n, o in original.items() if o is None)
    if missing:
        raise ConfigError(f"layer {missing[0]!r} (and {len(missing) - 1} more) has no name in {backbone.name!r}'s original "
                          f"checkpoints, so ComfyUI could not load it; export with --format diffusers")
    tensors = {}
    for name, (a, b) in layers.items():
        key = f"diffusion_model.{original[name]}"
        tensors[f"{key}.lora_down.weight"] = a.contiguous()
        tensors[f"{key}.lora_up.weight"] = b.contiguous()
        tensors[f"{key}.alpha"] = torch.tensor(float(scale * rank))
    return tensors, {"format": "pt"}


def token_files(artifact: Artifact, out: Path, meta: dict) -> list[Path]:
    """One ``{token: vector}`` file per learned token, beside ``out``."""
    written = []
    for n, token in enumerate(sorted(artifact.embeddings), start=1):
        path = out.with_name(f"{out.stem}.token{n}.safetensors")
        vector = artifact.embeddings[token].detach().float().contiguous()
        atomic_write(path, lambda tmp, t=token, v=vector: save_file({t: v}, tmp, metadata=meta))
        written.append(path)
    return written


def export(artifact: Artifact, backbone: type[Backbone], fmt: str, out: str | Path) -> Exported:
    """Write ``artifact`` as format ``fmt`` at ``out`` (a ``.safetensors`` path) plus its token files."""
    out = Path(out)
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose one of {format_choices(FORMATS)}")
    if out.suffix != ".safetensors":
        raise ConfigError(f"--out {str(out)!r} must end in .safetensors (the only format videomage writes)")
    if artifact.adapter != "lora":
        raise ArtifactError(f"artifact holds a {artifact.adapter!r} adapter; only LoRA adapters have diffusers/ComfyUI keys")
    if not artifact.adapter_tensors:
        raise ArtifactError("artifact holds no adapter tensors (a token-only concept); there is no LoRA to export")
    tensors, meta = (diffusers_tensors if fmt == "diffusers" else comfyui_tensors)(artifact, backbone)
    meta["videomage.export"] = provenance(artifact, fmt)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda tmp: save_file(tensors, tmp, metadata=meta))
    tokens = token_files(artifact, out, {"format": "pt", "videomage.export": meta["videomage.export"]})
    return Exported(path=out, keys=tuple(sorted(tensors)), layers=len(tensors) // (2 if fmt == "diffusers" else 3),
                    token_files=tuple(tokens))
