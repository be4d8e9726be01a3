"""The sampling request: what any sampler is asked to make, typed.

A [`SamplingRequest`][videomage.sampling.SamplingRequest] holds what every sampler shares (the
prompt, negative prompt, steps, guidance, seed, size, scheduler, initial latents) and the
*concepts* installed in the model: the subjects, each an adapter with its learned tokens, and the
motion. How a sampler uses the concepts is its own business: classifier-free guidance activates
all of them at once; SCS gives the subjects to one branch and the motion to the other. A
sampler's own settings (SCS's ``tau``, step sizes...) are not in the request but in the sampler's
options record (see [`videomage.options`][videomage.options]).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import torch

from videomage.errors import ConfigError, format_choices

__all__ = ["Concept", "SamplingRequest", "SPACINGS", "coerce"]

#: Timestep spacings a diffusers scheduler config may name.
SPACINGS = ("leading", "trailing", "linspace")


def _where(inst: Any, attr: attrs.Attribute) -> str:
    return f"{type(inst).__name__}.{attr.name}"


def _prompt(inst: Any, attr: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{_where(inst, attr)}: expected a non-empty prompt, got {value!r}")


def _count(low: int, optional: bool = False):
    def check(inst: Any, attr: attrs.Attribute, value: Any) -> None:
        if optional and value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{_where(inst, attr)}: expected a whole number >= {low}, got {value!r}")

    return check


def _scale(inst: Any, attr: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value == value or value < 0:
        raise ConfigError(f"{_where(inst, attr)}: expected a number >= 0, got {value!r}")


def _spacing(inst: Any, attr: attrs.Attribute, value: Any) -> None:
    if value is not None and value not in SPACINGS:
        raise ConfigError(f"{_where(inst, attr)}: expected one of {format_choices(SPACINGS)} (or None for the model's "
                          f"own), got {value!r}")


def _latents(inst: Any, attr: attrs.Attribute, value: Any) -> None:
    if value is not None and (not isinstance(value, torch.Tensor) or value.ndim != 5):
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ConfigError(f"{_where(inst, attr)}: expected a latent tensor [1, C, F, h, w], got {shape}")


@attrs.frozen(kw_only=True)
class Concept:
    """One learned concept installed in the model: an adapter by name, with its tokens.

    ``tokens`` maps each learned token to its word (a subject's class word, a motion entity's
    word); ``weight`` is the adapter's scale when a sampler activates it.
    """

    adapter: str = attrs.field(validator=attrs.validators.instance_of(str))
    tokens: Mapping[str, str] = attrs.field(factory=dict, converter=dict)
    weight: float = attrs.field(default=1.0, validator=_scale)


def _concepts(value: Any) -> tuple[Concept, ...]:
    return (value,) if isinstance(value, Concept) else tuple(value)


@attrs.frozen(kw_only=True)
class SamplingRequest:
    """What to sample: the shared settings and the concepts to sample with.

    ``frames``/``height``/``width`` default to the backbone's native size, ``scheduler`` to its
    own; ``timestep_spacing`` overrides the scheduler's spacing (``"trailing"`` for few-step
    samples). ``latents``, when given, is the starting noise (unit variance, ``[1, C, F, h, w]``)
    instead of a draw from ``seed``.
    """

    prompt: str = attrs.field(validator=_prompt)
    negative_prompt: str = ""
    steps: int = attrs.field(default=50, validator=_count(1))
    guidance_scale: float = attrs.field(default=9.0, validator=_scale)
    seed: int = attrs.field(default=0, validator=_count(0))
    frames: int | None = attrs.field(default=None, validator=_count(1, optional=True))
    height: int | None = attrs.field(default=None, validator=_count(1, optional=True))
    width: int | None = attrs.field(default=None, validator=_count(1, optional=True))
    scheduler: str | None = None
    timestep_spacing: str | None = attrs.field(default=None, validator=_spacing)
    latents: torch.Tensor | None = attrs.field(default=None, validator=_latents, eq=False, repr=False)
    subjects: tuple[Concept, ...] = attrs.field(default=(), converter=_concepts)
    motion: Concept | None = None
    progress: bool = True

    def concepts(self) -> tuple[Concept, ...]:
        """Every concept: the subjects, then the motion."""
        return self.subjects + ((self.motion,) if self.motion is not None else ())

    def adapter_weights(self, concepts: tuple[Concept, ...] | None = None) -> dict[str, float]:
        """Adapter name -> scale for ``concepts`` (all of them by default)."""
        return {c.adapter: c.weight for c in (self.concepts() if concepts is None else concepts) if c.adapter}

    def subject_tokens(self) -> dict[str, str]:
        """Every subject token with its class word."""
        return {t: w for c in self.subjects for t, w in c.tokens.items()}

    def record(self) -> dict[str, Any]:
        """The request as JSON-able data, for a video's record."""
        data = attrs.asdict(self, recurse=True, filter=lambda a, v: a.name not in ("latents", "progress"))
        data["latents"] = None if self.latents is None else list(self.latents.shape)
        return data


FIELDS = frozenset(f.name for f in attrs.fields(SamplingRequest))


def split(data: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``data`` as (request fields, everything else: the sampler's options)."""
    return {k: v for k, v in data.items() if k in FIELDS}, {k: v for k, v in data.items() if k not in FIELDS}


def coerce(request: SamplingRequest | Mapping[str, Any]) -> tuple[SamplingRequest, dict[str, Any]]:
    """A request, and any sampler options a videomage 0.1 request dict carried with it.

    0.1's dicts named concepts by adapter: ``adapters`` (name -> weight, for CFG) or
    ``subject_adapter``/``motion_adapter`` with ``tokens`` (for SCS). They become concepts; keys
    that are neither request fields nor these are returned as options for the sampler to check.
    """
    if isinstance(request, SamplingRequest):
        return request, {}
    if not isinstance(request, Mapping):
        raise ConfigError(f"a sampling request must be a SamplingRequest, got {type(request).__name__}")
    data = dict(request)
    subjects: list[Concept] = []
    motion = None
    tokens = dict(data.pop("tokens", None) or {})
    for name, weight in dict(data.pop("adapters", None) or {}).items():
        subjects.append(Concept(adapter=name, weight=float(weight)))
    if data.get("subject_adapter"):
        subjects.append(Concept(adapter=data.pop("subject_adapter"), tokens=tokens))
        tokens = {}
    if data.get("motion_adapter"):
        motion = Concept(adapter=data.pop("motion_adapter"))
    data.pop("subject_adapter", None), data.pop("motion_adapter", None)
    if tokens:  # tokens without a subject adapter: keep them on the first subject, or carry them bare
        subjects = [attrs.evolve(subjects[0], tokens=tokens)] + subjects[1:] if subjects else [Concept(adapter="", tokens=tokens)]
    fields, options = split(data)
    if "prompt" not in fields:
        raise ConfigError("a sampling request needs a non-empty 'prompt'")
    return SamplingRequest(**fields, subjects=tuple(subjects), motion=motion), options
