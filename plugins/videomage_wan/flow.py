"""Flow matching as Wan is trained and sampled (rectified flow, velocity prediction).

The forward process interpolates straight from data to noise: with ``sigma = t / 1000``,

    x_t = (1 - sigma) * x_0 + sigma * noise,

and the model predicts the velocity ``dx_t / dsigma = noise - x_0``. This is diffusers'
convention: ``FlowMatchEulerDiscreteScheduler.step`` moves ``x + (sigma_next - sigma) * v`` and
``UniPCMultistepScheduler`` with ``prediction_type="flow_prediction"`` reads
``x_0 = x_t - sigma * v``; both hold exactly when ``v = noise - x_0``.

Training noise levels: ``u ~ U(0, 1)`` moved by the model's *shift* ``s`` (3 for Wan 2.1),
``sigma = s u / (1 + (s - 1) u)``, the same map the sampling schedule uses, so training spends
its steps on the noise levels sampling visits; the timestep the transformer sees is
``1000 * sigma``, as the flow schedulers pass it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import diffusers
import torch

from videomage import ConfigError

#: Diffusers schedulers that can sample a flow-matching model, and how each is configured for it.
FLOW_SCHEDULERS: dict[str, Mapping[str, Any]] = {
    "UniPCMultistepScheduler": {"prediction_type": "flow_prediction", "use_flow_sigmas": True},
    "DPMSolverMultistepScheduler": {"prediction_type": "flow_prediction", "use_flow_sigmas": True},
    "FlowMatchEulerDiscreteScheduler": {},
}


def shift_of(config: Mapping[str, Any]) -> float:
    """The schedule shift of a scheduler config (``flow_shift`` or ``shift``; 1 when absent)."""
    return float(config.get("flow_shift") or config.get("shift") or 1.0)


def train_steps(config: Mapping[str, Any]) -> int:
    return int(config.get("num_train_timesteps", 1000))


def make_scheduler(config: Mapping[str, Any], name: str | None = None) -> Any:
    """A sampling scheduler from the model's scheduler config, optionally of another flow-capable class."""
    name = name or config.get("_class_name", "UniPCMultistepScheduler")
    if name not in FLOW_SCHEDULERS:
        raise ConfigError(
            f"scheduler {name!r} cannot sample a flow-matching (Wan) model; choose one of {', '.join(sorted(FLOW_SCHEDULERS))}"
        )
    cls = getattr(diffusers, name)
    shift = shift_of(config)
    extra = {"shift": shift} if name.startswith("FlowMatch") else {"flow_shift": shift}
    return cls.from_config(dict(config), **FLOW_SCHEDULERS[name], **extra)


def sample_timesteps(batch: int, config: Mapping[str, Any], generator: torch.Generator | None = None,
                     low: float = 0.0, high: float | None = None) -> torch.Tensor:
    """Float timesteps in ``[0, num_train_timesteps)``, shifted like the sampling schedule.

    ``low``/``high`` restrict the draw to ``[low, high)`` with the same distribution conditioned on
    that range (an expert's part of the schedule): the uniform variable is drawn between the
    inverses of the shift at both ends.
    """
    u = torch.rand(batch, generator=generator)
    shift = shift_of(config)
    if low > 0 or high is not None:
        def inverse(t: float) -> float:  # u such that shift * u / (1 + (shift - 1) u) = t / n
            s = t / train_steps(config)
            return s / (shift - (shift - 1) * s)
        lo, hi = inverse(low), inverse(train_steps(config) if high is None else high)
        u = lo + (hi - lo) * u
    sigma = shift * u / (1 + (shift - 1) * u)
    return sigma * train_steps(config)


def sigmas(timesteps: torch.Tensor, config: Mapping[str, Any], like: torch.Tensor) -> torch.Tensor:
    """``t / num_train_timesteps`` shaped to broadcast against ``like``."""
    sigma = torch.as_tensor(timesteps, device=like.device).float().reshape(-1) / train_steps(config)
    return sigma.reshape(-1, *([1] * (like.ndim - 1))).to(like.dtype)


def add_noise(latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor, config: Mapping[str, Any]) -> torch.Tensor:
    sigma = sigmas(timesteps, config, latents)
    return (1 - sigma) * latents + sigma * noise


def velocity(latents: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The flow-matching target ``noise - x_0`` (the same at every noise level)."""
    return noise - latents
