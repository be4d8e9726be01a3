"""Stepping a diffusers scheduler from a latent the sampler changed: the refinement must survive.

SCS refines the latent between the model's prediction and the scheduler's step. A scheduler
that keeps its own copy of the sample and steps from that copy silently discards the
refinement. ``UniPCMultistepScheduler`` (Wan's default) does so on every step after the first:
its corrector rebuilds the current sample from the *previous* one (``last_sample``) and the
new prediction, and drops the sample it is given. Its authors give a switch for exactly this,
``disable_corrector`` (step indices whose successor is not corrected), which
:func:`keep_refinement` sets for each refined step; the predictor then starts from the refined
sample, and later steps correct as usual.

Other schedulers may hold state the same way (second-order schedulers that run two calls per
step, PNDM's Runge-Kutta warm-up). Rather than trust a list, :func:`offset_survival` measures
it: run the scheduler with a constant model output, add an offset to the sample before a step,
and see how much of it is in that step's result. :func:`require_survival` runs that probe on
the sampler's own scheduler for every step it will refine and refuses schedulers that lose it.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Iterable
from typing import Any

import torch

from videomage import ConfigError

#: Below this share of an offset carried into the next sample, a scheduler loses the refinement.
MIN_SURVIVAL = 0.9

#: The probe's latent: schedulers act elementwise, so a tiny one tells what a real one would.
PROBE_SHAPE = (1, 4, 2, 4, 4)


def keep_refinement(scheduler: Any, step_index: int) -> None:
    """Make ``scheduler`` step from the sample it is given at ``step_index`` (call before that step).

    For UniPC: the corrector of step ``i`` runs unless ``i - 1`` is in ``disable_corrector``.
    The list is replaced, never appended to: diffusers shares one default list between instances.
    """
    if "disable_corrector" in vars(scheduler) and step_index > 0:  # set by UniPC itself, not a config key
        scheduler.disable_corrector = sorted({*scheduler.disable_corrector, step_index - 1})


def _step(scheduler: Any, out: torch.Tensor, t: torch.Tensor, x: torch.Tensor, seed: int) -> torch.Tensor:
    if hasattr(scheduler, "scale_model_input"):
        scheduler.scale_model_input(x, t)  # some schedulers warn when stepped without it
    if "generator" in inspect.signature(scheduler.step).parameters:
        return scheduler.step(out, t, x, generator=torch.Generator().manual_seed(seed)).prev_sample
    return scheduler.step(out, t, x).prev_sample


def offset_survival(scheduler: Any, steps: Iterable[int], *, refine: bool = True, scale: float = 1e-2) -> dict[int, float]:
    """Per step index ``i``: the share of an offset added to the sample before step ``i`` that is in its result.

    ``scheduler`` has its timesteps set and has not stepped yet (it is copied, not used). The
    model output is a constant tensor, so only the scheduler's own handling of the sample is
    measured: the share is ``<x'_offset - x', d> / <d, d>`` for the offset ``d``; a scheduler that
    steps from what it is given scores about 1 (more where it scales the sample up), one that
    drops it about 0. ``refine=False`` measures the scheduler as it is, without
    :func:`keep_refinement`.
    """
    wanted = sorted(set(steps))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(PROBE_SHAPE, generator=g) * getattr(scheduler, "init_noise_sigma", 1.0)
    out = torch.randn(PROBE_SHAPE, generator=g)
    offset = torch.randn(PROBE_SHAPE, generator=g) * scale * x.std()
    base = copy.deepcopy(scheduler)
    result: dict[int, float] = {}
    for i, t in enumerate(base.timesteps):
        if not wanted or i > wanted[-1]:
            break
        if i in wanted:
            probe = copy.deepcopy(base)
            if refine:
                keep_refinement(probe, i)
            moved = _step(probe, out, t, x + offset, seed=i)
            # The plain step on its own copy with the same setting: the difference is the offset's alone.
            reference = copy.deepcopy(base)
            if refine:
                keep_refinement(reference, i)
            still = _step(reference, out, t, x, seed=i)
            result[i] = float(((moved - still) * offset).sum() / (offset * offset).sum())
        x = _step(base, out, t, x, seed=i)
    return result


def require_survival(scheduler: Any, refined_steps: int) -> None:
    """Refuse a scheduler that loses the refinement of one of the first ``refined_steps`` steps."""
    steps = range(min(refined_steps, len(scheduler.timesteps)))
    for i, share in offset_survival(scheduler, steps).items():
        if share < MIN_SURVIVAL:
            raise ConfigError(
                f"sampler 'scs': scheduler {type(scheduler).__name__} keeps only {max(0.0, share):.0%} of a refinement made "
                f"before step {i} (it steps from its own copy of the sample), so SCS guidance would do nothing there; "
                f"choose another scheduler (--scheduler DDIMScheduler, FlowMatchEulerDiscreteScheduler for flow "
                f"models, UniPCMultistepScheduler, DPMSolverMultistepScheduler) or set step_from = 'shared'"
            )
