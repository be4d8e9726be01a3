"""Which expert(s) of a mixture-of-experts backbone an adapter lives in.

Some backbones are several denoisers, each for a range of timesteps (Wan 2.2 A14B: a high-noise
expert and a low-noise expert). An adapter trained for such a backbone lives in one or more of
them: the stage asks [`resolve`][videomage.experts.resolve] for the experts (the user's choice or
the backbone's default for the adapter's role), attaches to the expert-qualified roles
[`expert_roles`][videomage.experts.expert_roles] returns, and draws training timesteps from those
experts' part of the schedule (``TrainingContext.experts``). The artifact records the qualified
roles, so it is re-attached to the same experts, and refused by a model without them.

For a backbone with one denoiser every function here is the identity: no experts, plain roles.
"""

from __future__ import annotations

from collections.abc import Sequence

from videomage.components import Backbone
from videomage.errors import ArtifactError, ConfigError

__all__ = ["expert_roles", "experts_of_roles", "resolve", "check_experts"]


def resolve(backbone: Backbone, role: str, requested: Sequence[str] | None = None) -> tuple[str, ...]:
    """The experts an adapter of ``role`` lives in: ``requested`` when given, else the backbone's default."""
    if not requested:
        return tuple(backbone.default_experts(role))
    requested = tuple(dict.fromkeys(requested))
    if not backbone.experts:
        raise ConfigError(
            f"experts {list(requested)} were requested, but backbone {backbone.name!r} ({backbone.model_ref!r}) has "
            f"one denoiser and no experts; remove the experts setting"
        )
    unknown = [e for e in requested if e not in backbone.experts]
    if unknown:
        raise ConfigError(
            f"expert {unknown[0]!r} is not an expert of backbone {backbone.name!r} ({backbone.model_ref!r}); "
            f"its experts are {', '.join(backbone.experts)}"
        )
    return tuple(e for e in backbone.experts if e in requested)  # the backbone's order: highest noise first


def expert_roles(role: str, experts: Sequence[str]) -> list[str]:
    """The role names to attach to: ``"<expert>.<role>"`` per expert, or ``[role]`` without experts."""
    return [f"{e}.{role}" for e in experts] if experts else [role]


def experts_of_roles(roles: Sequence[str]) -> tuple[str, ...]:
    """The experts named by expert-qualified roles (``"high_noise.temporal"`` -> ``high_noise``), in order."""
    return tuple(dict.fromkeys(r.split(".", 1)[0] for r in roles if "." in r))


def check_experts(backbone: Backbone, roles: Sequence[str], *, source: str = "artifact",
                  requested: Sequence[str] | None = None) -> None:
    """Refuse to load an adapter whose roles name experts the model lacks, or other experts than ``requested``."""
    have = experts_of_roles(roles)
    if requested is not None and set(requested) != set(have):
        raise ArtifactError(
            f"{source} lives in expert(s) {', '.join(have) or '(none: a one-denoiser model)'}, but it was asked to load "
            f"into expert(s) {', '.join(requested) or '(none)'}; an adapter's tensors belong to the expert it was "
            f"trained in: load it where it was trained, or retrain it with experts = {list(requested)}"
        )
    missing = [e for e in have if e not in backbone.experts]
    if missing:
        raise ArtifactError(
            f"{source} lives in expert {missing[0]!r}, but the loaded model {backbone.model_ref!r} (backbone "
            f"{backbone.name!r}) has {'experts ' + ', '.join(backbone.experts) if backbone.experts else 'no experts'}; "
            f"load the model it was trained on"
        )
    if backbone.experts and not have and roles:
        raise ArtifactError(
            f"{source} was made for a model with one denoiser, but the loaded model {backbone.model_ref!r} has "
            f"experts {', '.join(backbone.experts)}; load the model it was trained on"
        )
