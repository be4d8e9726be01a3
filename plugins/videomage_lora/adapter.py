"""LoRA through peft: named adapters on a backbone's roles, switched without copying weights.

peft injects ``lora.Linear`` wrappers into the layers a role names (``inject_adapter_in_model``
with an exact-name regex). Several adapters share one wrapper per layer; which of them run, and
at what scale, is set per layer by :meth:`LoRA.activate`, which touches only Python attributes
(no tensor is copied), so switching between a subject and a motion adapter inside a sampling
step costs microseconds. peft's own ``set_adapter`` is avoided on purpose: it also flips
``requires_grad``, which would let a teacher's activation silently freeze a student.

Scale convention: ``alpha`` defaults to ``rank`` (scale 1), so the weight change of a layer is
exactly ``B @ A`` times the activation weight.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.lora import LoraLayer

from videomage import Adapter, ArtifactError, Backbone, ConfigError, LoadReport
from videomage.kit import format_choices


def lora_layers(backbone: Backbone) -> list[tuple[str, LoraLayer]]:
    """Every peft LoRA wrapper in the denoiser, by qualified name (cached until the next attach)."""
    cache = backbone.denoiser.__dict__.get("_videomage_lora_layers")
    if cache is None:
        cache = [(n, m) for n, m in backbone.denoiser.named_modules() if isinstance(m, LoraLayer)]
        backbone.denoiser.__dict__["_videomage_lora_layers"] = cache
    return cache


def _registry(backbone: Backbone) -> dict[str, dict]:
    """Adapter name -> its settings, kept on the model so every ``LoRA`` instance sees the same."""
    return backbone.denoiser.__dict__.setdefault("_videomage_lora", {})


def _trainable(backbone: Backbone) -> None:
    """Every LoRA tensor requires grad; only those handed to an optimizer are ever updated.

    peft's injection and deletion re-derive ``requires_grad`` from its notion of the active
    adapter; we keep it uniform so that attaching one adapter never freezes another.
    """
    for _, layer in lora_layers(backbone):
        for module in (layer.lora_A, layer.lora_B):
            module.requires_grad_(True)


class LoRA(Adapter):
    """Low-rank adapters (peft LoRA) on the linear layers of the chosen roles."""

    name = "lora"

    # -- attaching ---------------------------------------------------------------------------
    def attach(self, backbone: Backbone, adapter_name: str, *, roles: Sequence[str], rank: int = 4,
               alpha: float | None = None, dropout: float = 0.0, targets: Sequence[str] | None = None) -> None:
        if adapter_name in _registry(backbone):
            raise ConfigError(f"adapter {adapter_name!r} is already attached; remove it first or choose another name")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", adapter_name):
            raise ConfigError(f"adapter name {adapter_name!r} must be a Python identifier (letters, digits, underscores)")
        if int(rank) < 1:
            raise ConfigError(f"LoRA rank must be >= 1, got {rank!r}")
        names: list[str] = []
        for role in roles:
            names += list(backbone.role_modules(role))
        if targets:
            patterns = [re.compile(t) for t in targets]
            names = [n for n in names if any(p.search(n) for p in patterns)]
        if not names:
            raise ConfigError(f"adapter {adapter_name!r}: no layer of roles {list(roles)} matches targets {list(targets or [])}")
        self._inject(backbone, adapter_name, names, int(rank), float(alpha if alpha is not None else rank), dropout)
        _registry(backbone)[adapter_name] = {"roles": list(roles), "rank": int(rank), "alpha": alpha, "modules": names}

    def _inject(self, backbone: Backbone, adapter_name: str, names: list[str], rank: int, alpha: float, dropout: float) -> None:
        before = {n: (list(m.active_adapters), dict(m.scaling)) for n, m in lora_layers(backbone)}
        config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, init_lora_weights=True,
                            target_modules="|".join(re.escape(n) for n in names) if len(names) > 1 else re.escape(names[0]))
        # peft matches a string target with re.fullmatch, so the alternation names exact layers.
        with warnings.catch_warnings():
            # Several named adapters on one denoiser is this plugin's design; peft warns about it on
            # every adapter after the first (each subject, fusion teacher, motion), so users saw it
            # on every fuse and generate.
            warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute in the model",
                                    category=UserWarning, module=r"peft\.")
            inject_adapter_in_model(config, backbone.denoiser, adapter_name=adapter_name)
        backbone.denoiser.__dict__.pop("_videomage_lora_layers", None)
        for name, layer in lora_layers(backbone):
            # A new adapter starts inactive; the adapters that were active stay so.
            active, _ = before.get(name, ([], {}))
            layer._active_adapter = [a for a in active if a != adapter_name]
        _trainable(backbone)
        dtype = backbone.dtype  # peft creates float32 tensors; a half-precision model needs its own
        for _, layer in lora_layers(backbone):
            if adapter_name in layer.lora_A:
                # On the base layer's device: peft leaves a second adapter of a meta-device model on the CPU.
                device = layer.base_layer.weight.device
                layer.lora_A[adapter_name].to(device, dtype)
                layer.lora_B[adapter_name].to(device, dtype)

    def attach_average(self, backbone: Backbone, adapter_name: str, sources: Sequence[str]) -> None:
        """Rank-concatenate the sources: ``A = [A_1; ...; A_N]``, ``B = [B_1 c_1, ..., B_N c_N]``.

        With ``c_n = s_n / N`` (``s_n`` the source's scale) and the new adapter at scale one,
        ``B A = 1/N sum_n s_n B_n A_n``: exactly the average of the sources' weight changes.
        """
        registry = _registry(backbone)
        unknown = [s for s in sources if s not in registry]
        if unknown:
            raise ConfigError(f"cannot average unknown adapter {unknown[0]!r}; attached: {format_choices(registry)}")
        rank = sum(registry[s]["rank"] for s in sources)
        roles = list(dict.fromkeys(r for s in sources for r in registry[s]["roles"]))
        modules = list(dict.fromkeys(m for s in sources for m in registry[s]["modules"]))
        self._inject(backbone, adapter_name, modules, rank, float(rank), 0.0)
        registry[adapter_name] = {"roles": roles, "rank": rank, "alpha": float(rank), "modules": modules}
        n = len(sources)
        with torch.no_grad():
            for _, layer in lora_layers(backbone):
                if adapter_name not in layer.lora_A:
                    continue
                a, b, row = layer.lora_A[adapter_name].weight, layer.lora_B[adapter_name].weight, 0
                a.zero_()
                b.zero_()
                for s in sources:
                    r = registry[s]["rank"]
                    if s in layer.lora_A:
                        scale = layer.lora_alpha[s] / layer.r[s]
                        a[row : row + r] = layer.lora_A[s].weight
                        b[:, row : row + r] = layer.lora_B[s].weight * (scale / n)
                    row += r

    def adapter_names(self, backbone: Backbone) -> list[str]:
        return list(_registry(backbone))

    def _check(self, backbone: Backbone, names: Sequence[str]) -> None:
        registry = _registry(backbone)
        for name in names:
            if name not in registry:
                raise ConfigError(f"no adapter named {name!r} is attached; attached adapters: {format_choices(registry)}")

    # -- switching ---------------------------------------------------------------------------
    def activate(self, backbone: Backbone, weights: Mapping[str, float]) -> None:
        self._check(backbone, list(weights))
        registry = _registry(backbone)
        for _, layer in lora_layers(backbone):
            active = []
            for name, weight in weights.items():
                if name in layer.lora_A:
                    layer.scaling[name] = float(weight) * layer.lora_alpha[name] / layer.r[name]
                    active.append(name)
            layer._active_adapter = active
        backbone.denoiser.__dict__["_videomage_active"] = {n: float(w) for n, w in weights.items() if n in registry}

    def active(self, backbone: Backbone) -> dict[str, float]:
        """The adapters switched on, with their weights."""
        return dict(backbone.denoiser.__dict__.get("_videomage_active", {}))

    @contextmanager
    def disabled(self, backbone: Backbone) -> Iterator[None]:
        previous = self.active(backbone)
        self.activate(backbone, {})
        try:
            yield
        finally:
            self.activate(backbone, previous)

    # -- tensors -----------------------------------------------------------------------------
    def parameters(self, backbone: Backbone, adapter_name: str) -> list[torch.nn.Parameter]:
        self._check(backbone, [adapter_name])
        params = []
        for _, layer in lora_layers(backbone):
            if adapter_name in layer.lora_A:
                params += [layer.lora_A[adapter_name].weight, layer.lora_B[adapter_name].weight]
        return params

    def state_dict(self, backbone: Backbone, adapter_name: str) -> dict[str, torch.Tensor]:
        self._check(backbone, [adapter_name])
        out = {}
        for name, layer in lora_layers(backbone):
            if adapter_name in layer.lora_A:
                out[f"{name}.lora_A.weight"] = layer.lora_A[adapter_name].weight.detach().clone()
                out[f"{name}.lora_B.weight"] = layer.lora_B[adapter_name].weight.detach().clone()
        return out

    def load_state_dict(self, backbone: Backbone, adapter_name: str, tensors: Mapping[str, torch.Tensor]) -> LoadReport:
        own = self.state_dict(backbone, adapter_name)
        missing, unexpected = sorted(set(own) - set(tensors)), sorted(set(tensors) - set(own))
        if missing or unexpected:
            raise ArtifactError(
                f"adapter {adapter_name!r}: {len(missing)} expected LoRA tensors are missing (e.g. {missing[:2]}) and "
                f"{len(unexpected)} are unexpected (e.g. {unexpected[:2]}); the artifact was made for other layers "
                f"(another model config, roles or targets)"
            )
        for key, value in tensors.items():
            if value.shape != own[key].shape:
                raise ArtifactError(f"adapter {adapter_name!r}: {key} has shape {tuple(value.shape)}, the model needs "
                                    f"{tuple(own[key].shape)}; the artifact was made with another rank or model")
        layers = dict(lora_layers(backbone))
        with torch.no_grad():
            for key, value in tensors.items():
                module, part, _ = key.rsplit(".", 2)
                getattr(layers[module], part)[adapter_name].weight.copy_(value)
        return LoadReport()

    # -- merging and removal -----------------------------------------------------------------
    def merge(self, backbone: Backbone, weights: Mapping[str, float]) -> None:
        if self.merged(backbone):
            raise ConfigError("adapters are merged already; unmerge before merging others")
        self.activate(backbone, weights)
        for _, layer in lora_layers(backbone):
            names = [n for n in weights if n in layer.lora_A]
            if names:
                layer.merge(adapter_names=names)
        backbone.denoiser.__dict__["_videomage_merged"] = dict(weights)

    def merged(self, backbone: Backbone) -> dict[str, float]:
        return dict(backbone.denoiser.__dict__.get("_videomage_merged", {}))

    def unmerge(self, backbone: Backbone) -> None:
        for _, layer in lora_layers(backbone):
            if layer.merged:
                layer.unmerge()
        backbone.denoiser.__dict__.pop("_videomage_merged", None)

    def remove(self, backbone: Backbone, adapter_name: str) -> None:
        self._check(backbone, [adapter_name])
        if adapter_name in self.merged(backbone):
            raise ConfigError(f"adapter {adapter_name!r} is merged into the weights; unmerge first")
        active = self.active(backbone)
        active.pop(adapter_name, None)
        with warnings.catch_warnings():
            # peft announces the active adapter it falls back to; here activate() below decides that.
            warnings.filterwarnings("ignore", message=r"Adapter .* was active which is now deleted",
                                    category=UserWarning, module=r"peft\.")
            for _, layer in lora_layers(backbone):
                if adapter_name in layer.lora_A:
                    layer.delete_adapter(adapter_name)
        del _registry(backbone)[adapter_name]
        _trainable(backbone)
        self.activate(backbone, active)
