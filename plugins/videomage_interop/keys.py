"""LoRA tensor names as other tools write them, read into one form: layer -> (A, B, scale).

A LoRA layer adds ``scale * B @ A`` to a linear layer's weight. Tools name the two matrices and
the scale differently:

* diffusers (``save_lora_weights``) and peft: ``<component>.<layer>.lora_A.weight`` and
  ``lora_B.weight``, with diffusers' component prefix (``transformer.``, ``unet.``); the scale is
  ``lora_alpha / r`` from the file's ``lora_adapter_metadata`` (one when absent);
* ComfyUI and Wan's own checkpoints: ``diffusion_model.<original layer name>`` with
  ``lora_A/lora_B`` or ``lora_down/lora_up`` and an optional per-layer ``alpha`` (scale
  ``alpha / rank``);
* DiffSynth-Studio: peft keys with the adapter name kept (``lora_A.default.weight``) and no
  prefix, under Wan's original names;
* kohya-ss and musubi-tuner: ``lora_unet_<layer name with dots as underscores>`` with
  ``lora_down/lora_up`` and ``alpha``.

:class:`Layers` holds every layer's ``A``, ``B`` and scale. Tensors are kept as the source wrote
them and the scale travels as ``alpha`` (``alpha = scale * rank``), so the other library computes
``scale * B(A x)`` in the same order as the source: outputs agree to the last bit, where folding
the scale into ``B`` would round differently. Only layers whose scale differs from the most
common one get the ratio folded into ``B``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping

import attrs
import torch

from videomage import ArtifactError

#: A key's layer part and tensor part: ``<name>.<lora_A|lora_B|lora_down|lora_up>[.<adapter>].weight``.
_MATRIX = re.compile(r"(?P<name>.+)\.(?P<part>lora_A|lora_B|lora_down|lora_up)(?:\.(?P<adapter>[A-Za-z0-9_-]+))?\.weight")
_ALPHA = re.compile(r"(?P<name>.+)\.alpha")
_DOWN = {"lora_A": True, "lora_down": True, "lora_B": False, "lora_up": False}

#: Key prefixes other tools put before the layer name, longest first.
PREFIXES = ("base_model.model.", "diffusion_model.", "lora_unet_")


@attrs.define
class Layers:
    """LoRA layers by name (the source's names, or the model's once resolved): ``name -> (A, B, scale)``.

    ``unmatched`` lists source keys that are not LoRA matrices of a layer (bias or full weight
    differences, stray tensors).
    """

    pairs: dict[str, tuple[torch.Tensor, torch.Tensor, float]] = attrs.field(factory=dict)
    unmatched: list[str] = attrs.field(factory=list)

    def rank(self) -> int:
        return max((a.shape[0] for a, _, _ in self.pairs.values()), default=0)


def lora_metadata(metadata: Mapping[str, str] | None, component: str | None) -> dict:
    """diffusers' ``lora_adapter_metadata`` of a file (its LoraConfig), without the component prefix."""
    raw = (metadata or {}).get("lora_adapter_metadata")
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        return {}
    if component and any(k.startswith(component + ".") for k in data):
        data = {k[len(component) + 1:]: v for k, v in data.items() if k.startswith(component + ".")}
    return data if isinstance(data, dict) else {}


def _config_scale(name: str, rank: int, config: Mapping) -> float:
    """peft's scale for layer ``name`` under a LoraConfig dict: ``lora_alpha / r`` (or ``/ sqrt(r)``)."""
    alpha = config.get("lora_alpha", rank)
    for pattern, value in (config.get("alpha_pattern") or {}).items():
        if name == pattern or name.endswith("." + pattern) or re.fullmatch(pattern, name):
            alpha = value
    return float(alpha) / (math.sqrt(rank) if config.get("use_rslora") else rank)


def read_layers(tensors: Mapping[str, torch.Tensor], *, strip: Iterable[str] = (), config: Mapping | None = None) -> Layers:
    """Group a LoRA state dict into layers with their scales.

    ``strip``: extra key prefixes to remove (a diffusers component, ``transformer.``). Per-layer
    ``alpha`` tensors win over ``config`` (a LoraConfig dict from the file's metadata).
    """
    prefixes = tuple(sorted({*strip, *PREFIXES}, key=len, reverse=True))
    found: dict[str, dict[str, torch.Tensor]] = {}
    alphas: dict[str, float] = {}
    out = Layers()
    for key, value in tensors.items():
        body = key
        for prefix in prefixes:
            if body.startswith(prefix):
                body = body[len(prefix):]
                break
        matrix, alpha = _MATRIX.fullmatch(body), _ALPHA.fullmatch(body)
        if matrix is not None and value.ndim == 2:
            slot = "A" if _DOWN[matrix["part"]] else "B"
            if slot in found.setdefault(matrix["name"], {}):
                raise ArtifactError(f"LoRA file holds two {slot} matrices for layer {matrix['name']!r} (e.g. {key!r}); "
                                    f"it mixes adapters; export one adapter per file")
            found[matrix["name"]][slot] = value
        elif alpha is not None and value.numel() == 1:
            alphas[alpha["name"]] = float(value.item())
        else:
            out.unmatched.append(key)
    for name, parts in found.items():
        if set(parts) != {"A", "B"}:
            missing = ({"A", "B"} - set(parts)).pop()
            raise ArtifactError(f"LoRA layer {name!r} has no {missing} matrix ({'down/lora_A' if missing == 'A' else 'up/lora_B'}); "
                                f"the file is incomplete")
        a, b = parts["A"], parts["B"]
        if a.shape[0] != b.shape[1]:
            raise ArtifactError(f"LoRA layer {name!r}: A is {tuple(a.shape)} and B is {tuple(b.shape)}; their ranks differ")
        rank = a.shape[0]
        scale = alphas.pop(name) / rank if name in alphas else _config_scale(name, rank, config or {})
        out.pairs[name] = (a, b, scale)
    out.unmatched += [f"{name}.alpha" for name in alphas]  # an alpha without matrices
    return out


def resolve(layers: Layers, lookup: Callable[[str], str | None]) -> tuple[Layers, list[str]]:
    """Rename layers through ``lookup`` (source name -> model layer name); returns the renamed
    layers and the source names ``lookup`` could not place."""
    out = Layers(unmatched=list(layers.unmatched))
    unknown = []
    for name, pair in layers.pairs.items():
        target = lookup(name)
        if target is None:
            unknown.append(name)
        elif target in out.pairs:
            raise ArtifactError(f"LoRA layers {name!r} and another name both map to model layer {target!r}")
        else:
            out.pairs[target] = pair
    return out, unknown


def uniform(layers: Layers) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], int, float]:
    """Every layer at one rank and one scale: ``(name -> (A, B), rank, scale)``.

    Zero rows of ``A`` and columns of ``B`` raise a layer to the largest rank without changing
    ``B @ A``; a layer whose scale differs from the most common one has the ratio folded into ``B``.
    """
    rank = layers.rank()
    scales = [s for _, _, s in layers.pairs.values()]
    common = max(set(scales), key=scales.count) if scales else 1.0
    out = {}
    for name, (a, b, s) in layers.pairs.items():
        r = a.shape[0]
        if r < rank:
            a = torch.cat([a, a.new_zeros(rank - r, a.shape[1])])
            b = torch.cat([b, b.new_zeros(b.shape[0], rank - r)], dim=1)
        out[name] = (a, b if s == common else b * (s / common))
    return out, rank, common


def from_artifact(adapter_tensors: Mapping[str, torch.Tensor], adapter_config: Mapping) -> Layers:
    """A videomage artifact's LoRA tensors (peft names, scale ``alpha / rank``) as layers."""
    rank = int(adapter_config.get("rank", 4))
    alpha = adapter_config.get("alpha")
    return read_layers(adapter_tensors, config={"r": rank, "lora_alpha": float(alpha if alpha is not None else rank)})
