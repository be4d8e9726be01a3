"""Reading a LoRA another tool saved into a videomage artifact for a loaded model.

Every key is accounted for: it becomes a layer of the artifact, or it is listed by name (keys that
are no LoRA matrix, layers the model does not have, layers outside every role). Listed keys stop
the import unless the caller accepts to skip them, and even then each is named. Layer names are
looked up as diffusers names, as the family's original names (ComfyUI, DiffSynth), and either
with dots written as underscores (kohya, musubi-tuner). The roles the layers fall in become the
artifact's roles; when the layers are only part of those roles, the artifact names them exactly.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import attrs
import torch
from safetensors import SafetensorError, safe_open

from videomage import Adapter, ArtifactError, Backbone, InputError
from videomage.kit import Artifact
from videomage_interop.keys import Layers, lora_metadata, read_layers, resolve, uniform

_WEIGHT_NAMES = ("pytorch_lora_weights.safetensors", "adapter_model.safetensors")


@attrs.frozen(kw_only=True)
class ImportReport:
    """What an import found: the source's format, the layers per role, and every key left out."""

    source_format: str
    layers: int
    rank: int
    roles: dict[str, int]
    unmatched: tuple[str, ...] = ()  # keys that are no LoRA matrix of a layer
    unknown: tuple[str, ...] = ()  # layers the model does not have
    outside_roles: tuple[str, ...] = ()  # layers the model has but no role adapts

    def skipped(self) -> tuple[str, ...]:
        return (*self.unmatched, *self.unknown, *self.outside_roles)


def lora_file(path: Path) -> Path:
    """The safetensors file of ``path``: the file itself, or the one LoRA file in a folder."""
    if path.is_dir():
        for name in _WEIGHT_NAMES:
            if (path / name).is_file():
                return path / name
        files = sorted(path.glob("*.safetensors"))
        if len(files) != 1:
            raise InputError(f"folder {str(path)!r} holds {len(files)} .safetensors files; pass the LoRA file itself")
        return files[0]
    if not path.is_file():
        raise InputError(f"LoRA file {str(path)!r} does not exist")
    if path.suffix != ".safetensors":
        raise InputError(f"{str(path)!r} is not a .safetensors file; videomage reads LoRAs only as safetensors (a pickled "
                         f".bin/.pt/.ckpt can run code when loaded); ask for, or convert to, a safetensors file")
    return path


def read_file(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        with safe_open(str(path), framework="pt") as fh:
            return {k: fh.get_tensor(k) for k in fh.keys()}, dict(fh.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"{str(path)!r} is not a readable .safetensors file: {exc}") from None


def source_format(keys: Sequence[str], component: str | None) -> str:
    """A name for the convention the keys follow (for the report)."""
    if any(k.startswith("lora_unet_") for k in keys):
        return "kohya/musubi (lora_unet_..., lora_down/lora_up, alpha)"
    if any(k.startswith("diffusion_model.") for k in keys):
        return "ComfyUI (diffusion_model. + original layer names)"
    if any(re.search(r"\.lora_[AB]\.[A-Za-z0-9_-]+\.weight$", k) for k in keys):
        return "DiffSynth/peft with adapter names (lora_A.default.weight)"
    if component and any(k.startswith(component + ".") for k in keys):
        return f"diffusers ({component}. + lora_A/lora_B)"
    return "peft (lora_A/lora_B, no prefix)"


def layer_lookup(backbone: Backbone) -> Callable[[str], str | None]:
    """Source layer name -> the model's layer name, over diffusers and original names, dotted or underscored."""
    table: dict[str, str] = {}
    for name, module in backbone.denoiser.named_modules():
        if not isinstance(module, torch.nn.Linear) or ".lora_" in name:
            continue
        name = name.removesuffix(".base_layer")  # a layer peft wrapped already
        table[name] = name
        original = type(backbone).original_layer_name(name)
        if original:
            table.setdefault(original, name)
    underscored = {k.replace(".", "_"): v for k, v in table.items()}
    return lambda name: table.get(name) or underscored.get(name)


def check_shapes(backbone: Backbone, pairs: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
    for name, (a, b) in pairs.items():
        module = backbone.denoiser.get_submodule(name)
        module = getattr(module, "base_layer", module)
        if a.shape[1] != module.in_features or b.shape[0] != module.out_features:
            raise ArtifactError(
                f"LoRA layer {name!r} maps {a.shape[1]} -> {b.shape[0]} features but the model's layer maps "
                f"{module.in_features} -> {module.out_features}; the LoRA was made for another model size"
            )


def read_tokens(paths: Sequence[str | Path], provenance: dict) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Learned tokens from ``{token: vector}`` files (what ``export`` and diffusers' textual inversion
    write); class words from a videomage export's metadata, else the token without its brackets."""
    embeddings, words = {}, {}
    for path in paths:
        tensors, metadata = read_file(Path(path))
        if len(tensors) != 1:
            raise InputError(f"token file {str(path)!r} holds {len(tensors)} tensors ({sorted(tensors)[:3]}); expected one, "
                             f"named by its token, such as {{'<toy>': vector}}")
        (token, vector), = tensors.items()
        if vector.ndim == 2 and vector.shape[0] == 1:
            vector = vector[0]
        if vector.ndim != 1:
            raise InputError(f"token file {str(path)!r}: {token!r} has shape {tuple(vector.shape)}, expected one vector")
        known = json.loads(metadata.get("videomage.export", "{}")).get("tokens", {})
        embeddings[token] = vector
        words[token] = known.get(token) or provenance.get("tokens", {}).get(token) or token.strip("<>")
    return embeddings, words


def import_lora(path: str | Path, backbone: Backbone, adapter: Adapter, *, kind: str | None = None,
                skip_unmatched: bool = False, token_files: Sequence[str | Path] = ()) -> tuple[Artifact, ImportReport]:
    """Build an artifact for ``backbone`` from the LoRA at ``path`` (and learned tokens from
    ``token_files``); see the module docstring."""
    file = lora_file(Path(path))
    tensors, metadata = read_file(file)
    try:  # a videomage export remembers what it was
        provenance = json.loads(metadata.get("videomage.export", "{}"))
    except json.JSONDecodeError:
        provenance = {}
    embeddings, words = read_tokens(token_files, provenance)
    component = type(backbone).diffusers_component
    config = lora_metadata(metadata, component)
    if not config and (file.parent / "adapter_config.json").is_file():  # a peft save_pretrained folder
        config = json.loads((file.parent / "adapter_config.json").read_text())
    found = read_layers(tensors, strip=[f"{component}."] if component else [], config=config)
    if not found.pairs:
        raise ArtifactError(f"{str(file)!r} holds no LoRA layer (no lora_A/lora_B or lora_down/lora_up matrices); "
                            f"its keys start {sorted(tensors)[:3]}")
    layers, unknown = resolve(found, layer_lookup(backbone))
    role_of = {name: role for role in backbone.roles for name in backbone.role_modules(role)}
    outside = sorted(n for n in layers.pairs if n not in role_of)
    report = ImportReport(
        source_format=source_format(list(tensors), component), layers=len(layers.pairs) - len(outside), rank=layers.rank(),
        roles={r: sum(role_of.get(n) == r for n in layers.pairs) for r in backbone.roles if any(role_of.get(n) == r for n in layers.pairs)},
        unmatched=tuple(found.unmatched), unknown=tuple(unknown), outside_roles=tuple(outside),
    )
    if report.skipped() and not skip_unmatched:
        names = ", ".join(report.skipped()[:12]) + (f" and {len(report.skipped()) - 12} more" if len(report.skipped()) > 12 else "")
        raise ArtifactError(
            f"{str(file)!r}: {len(report.skipped())} keys or layers match no adaptable layer of this {backbone.name} model: "
            f"{names}. Is the LoRA for this model family? Pass --skip-unmatched to import the other "
            f"{report.layers} layers without them"
        )
    kept = Layers(pairs={n: p for n, p in layers.pairs.items() if n in role_of})
    if not kept.pairs:
        raise ArtifactError(f"{str(file)!r}: no layer of the LoRA is in a role of this {backbone.name} model; nothing to import")
    pairs, rank, scale = uniform(kept)
    check_shapes(backbone, pairs)
    roles = tuple(report.roles)
    everything = {n for r in roles for n in backbone.role_modules(r)}
    targets = None if set(pairs) == everything else [f"^{re.escape(n)}$" for n in sorted(pairs)]
    artifact = Artifact(
        kind=kind or provenance.get("kind") or ("motion" if roles == ("temporal",) else "subject"),
        backbone=backbone.name, fingerprint=backbone.fingerprint(), adapter=adapter.name,
        adapter_config={"rank": rank, "alpha": scale * rank, "dropout": 0.0, "targets": targets},
        roles=roles, tokens=words, embeddings=embeddings,
        adapter_tensors={f"{n}.lora_{p}.weight": t for n, (a, b) in pairs.items() for p, t in (("A", a), ("B", b))},
        info={"model": backbone.model_ref, "imported_from": str(file), "source_format": report.source_format},
    )
    # Prove the artifact installs: attach, load (refuses any mismatch), then detach.
    probe = "videomage_import_probe"
    artifact.install(backbone, adapter, probe, source=str(file))
    adapter.remove(backbone, probe)
    return artifact, report
