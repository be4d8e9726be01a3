"""Spatial-temporal collaborative sampling (VideoMage §3.4, Eq. 7-9).

Two branches share one latent trajectory on **one** model, switching adapters:

* subject branch: the fused subject adapter, prompt ``c_tgt`` ("<toy> is riding <dog> ...");
* motion branch: the motion adapter, prompt ``c~_tgt`` (the same sentence with each subject
  token replaced by its class word: "toy is riding dog ..."; see :mod:`videomage_samplers.matching`).

At each step ``x_t`` is copied into ``x_sub`` and ``x_mot``. For the first ``tau`` steps:

* ``L_{s->m} = mean || M_SCA,m - sg(M_SCA,s) ||^2``: the motion branch's cross-attention maps of
  the class words follow the subject branch's maps of the tokens (subject layout guides motion);
  its gradient ``g_mot`` refines ``x_mot``;
* ``L_{m->s} = mean || M_TSA,s - sg(M_TSA,m) ||^2`` (mean over elements, then over layers): the
  subject branch's temporal self-attention follows the motion branch's (motion dynamics guide
  subjects); its gradient ``g_sub`` refines ``x_sub``.

**Step sizes.** The two terms have their own scales, ``alpha_cross`` (for ``x_mot``) and
``alpha_temporal`` (for ``x_sub``). Their gradients shrink with the video (a mean over more map
elements), each at its own rate (on the shipped toy model about elements^-1.5 for the temporal
term and elements^-0.8 for the cross term; docs/method/sampling.md), so one ``alpha`` cannot
serve two sizes, nor both terms. With ``guidance_norm =
"rms"`` (the default) each gradient is divided by its root mean square over the latent,
``x -= alpha * g / rms(g)``: ``alpha`` is then the root-mean-square change of a latent element,
the same at every video size. ``guidance_norm = "none"`` is the paper's rule ``x -= alpha * g``
(the paper's alpha = 1e4 under our mean reduction).

Then ``eps = beta_s * eps_sub + beta_m * eps_mot`` (each branch with batched CFG; ``beta_s +
beta_m = 1``), and the scheduler steps from the refined mixture ``beta_s * x_sub + beta_m *
x_mot`` (``step_from = "mixture"``, the default) or from the unrefined ``x_t`` (``"shared"``).
A scheduler that would drop the refinement is switched to keep it, or refused
(:mod:`videomage_samplers.stepping`). Latents and refinements stay float32 in any model dtype.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import attrs
import torch
from tqdm.auto import tqdm

from videomage import Adapter, AttentionStore, Backbone, ConfigError, Sampler, SamplingRequest
from videomage.kit import choice, coerce, flag, from_values, integer, number, text
from videomage_samplers.boundary import guided_steps
from videomage_samplers.cfg import DEFAULTS, guided, with_request_options, initial_latents, make_scheduler, predict, scale_input, scheduler_step
from videomage_samplers.matching import matched_positions, motion_prompt_for
from videomage_samplers.stepping import keep_refinement, require_survival

__all__ = ["SCSOptions", "SCSSampler", "matched_positions", "motion_prompt_for"]

#: ``guidance_norm`` choices: divide each gradient by its RMS over the latent, or use it as is (the paper).
NORMS = ("rms", "none")

#: Default root-mean-square change of a latent element per guided step (``guidance_norm = "rms"``).
ALPHA_CROSS = 1e-3
ALPHA_TEMPORAL = 5e-5



@attrs.frozen(kw_only=True)
class SCSOptions:
    """SCS's options (``generate --sampler scs -o tau=10 -o alpha_cross=2e-3``, or ``[sampling.options]``)."""

    tau: int = integer(15, low=0, help="how many of the first steps are guided")
    alpha_cross: float = number(ALPHA_CROSS, low=0, help="step size of the cross-attention term (subject layout -> "
                                "motion branch); under guidance_norm 'rms' the RMS change of a latent element per step")
    alpha_temporal: float = number(ALPHA_TEMPORAL, low=0, help="step size of the temporal-attention term (motion -> "
                                   "subject branch)")
    guidance_norm: str = choice("rms", NORMS, help="'rms': each alpha is the RMS change of a latent element per guided "
                                "step, the same at any video size; 'none': the paper's x -= alpha * grad")
    beta_s: float = number(0.5, low=0, help="weight of the subject branch's prediction (beta_s + beta_m = 1)")
    beta_m: float = number(0.5, low=0, help="weight of the motion branch's prediction (beta_s + beta_m = 1)")
    step_from: str = choice("mixture", ("mixture", "shared"), help="step from the refined mixture of the branches, or "
                            "from the unrefined shared latent")
    motion_prompt: str | None = text(None, help="the motion branch's prompt (default: the prompt with each subject token "
                                     "replaced by its class word)")
    guidance_checkpointing: bool = flag(True, neutral=True, help="recompute activations in each guided step's backward "
                                        "pass: several times less memory, guided steps about 1.3x slower")

    def __attrs_post_init__(self) -> None:
        total = self.beta_s + self.beta_m
        if abs(total - 1.0) > 1e-6:
            raise ConfigError(
                f"SCSOptions.beta_s + beta_m must be 1 (the two branches' mixture weights), got beta_s = "
                f"{self.beta_s!r} + beta_m = {self.beta_m!r} = {total:g}; for example beta_s = 0.5, beta_m = 0.5"
            )


#: videomage 0.1's request keys of SCS with their defaults (kept for old callers).
SCS_DEFAULTS: dict[str, Any] = {
    **{k: v for k, v in DEFAULTS.items() if k != "adapters"},
    "subject_adapter": None,
    "motion_adapter": None,
    "tokens": {},
    **{f.name: f.default for f in attrs.fields(SCSOptions)},
}


def subject_maps(layers: Sequence[torch.Tensor], union: Sequence[int], groups: Sequence[Sequence[int]],
                 size: tuple[int, int]) -> torch.Tensor:
    """``[B, N, F, h, w]``: per subject, the normalised cross-attention map of its positions.

    ``layers`` were captured for the positions ``union``; a subject whose word spans several
    positions gets the mean of their maps.
    """
    cols = [union.index(p) for group in groups for p in group]
    maps = AttentionStore(cross=[m[:, cols] for m in layers]).cross_maps(size)
    return torch.stack([part.mean(1) for part in maps.split([len(g) for g in groups], dim=1)], 1)


class SCSSampler(Sampler):
    """Spatial-temporal collaborative sampling with a subject and a motion branch.

    Concepts: the request's subjects (their adapters active together, at their weights) make
    the subject branch, its motion the motion branch; both are required. Subject tokens are
    matched with their class words between the two prompts. Options: [`SCSOptions`][videomage_samplers.scs.SCSOptions].
    """

    name = "scs"
    Options = SCSOptions
    #: The concepts a request must carry (checked before a model loads).
    requires_concepts = ("subjects", "motion")
    #: The option counting the guided (costlier) first steps, which ``videomage plan`` measures apart.
    guided_steps_option = "tau"

    def __init__(self, options: SCSOptions | None = None, **values: Any) -> None:
        self.options = from_values(self, options, values)

    def prompts(self, request: SamplingRequest | Mapping[str, Any]) -> list[str]:
        """The prompt, the negative prompt and the motion branch's prompt (the subject tokens
        replaced by their class words, unless the ``motion_prompt`` option gives it)."""
        req, extra = coerce(request)
        opts = with_request_options(self, extra)
        return [req.prompt, req.negative_prompt, opts.motion_prompt or motion_prompt_for(req.prompt, req.subject_tokens())]

    def sample(self, backbone: Backbone, adapter: Adapter | None, request: SamplingRequest | Mapping[str, Any]) -> torch.Tensor:
        req, extra = coerce(request)
        opts = with_request_options(self, extra)
        if adapter is None or not req.subjects or req.motion is None:
            raise ConfigError("sampler 'scs' needs an adapter plugin and both a subjects and a motion concept (generate "
                              "--subjects and --motion); use --sampler cfg to sample with only one of them")
        tokens = req.subject_tokens()
        prompt = req.prompt
        motion_prompt = opts.motion_prompt or motion_prompt_for(prompt, tokens)
        beta_s, beta_m, tau = opts.beta_s, opts.beta_m, opts.tau
        alphas, norm = (opts.alpha_temporal, opts.alpha_cross), opts.guidance_norm
        scale = float(req.guidance_scale)
        subject, motion = req.adapter_weights(req.subjects), req.adapter_weights((req.motion,))
        positions = matched_positions(backbone, prompt, opts.motion_prompt, tokens) if tau > 0 else None
        mixture = opts.step_from == "mixture"

        scheduler = make_scheduler(backbone, req)
        tau = guided_steps(backbone, scheduler.timesteps, tau)  # within the first expert (boundary.py)
        if tau > 0 and mixture:
            require_survival(scheduler, tau)
        latents, generator = initial_latents(backbone, req, scheduler)
        with torch.no_grad():
            emb_s = backbone.encode_prompt([req.negative_prompt, prompt])
            emb_m = backbone.encode_prompt([req.negative_prompt, motion_prompt])
        size = tuple(latents.shape[-2:])

        for i, t in enumerate(tqdm(scheduler.timesteps, desc="SCS sampling", disable=not req.progress)):
            x_sub, x_mot = latents, latents
            if i < tau:
                x_sub, x_mot = self.guide(
                    backbone, adapter, latents, t, (emb_s[1:], emb_m[1:]), (subject, motion), positions, alphas, size,
                    scheduler, checkpointing=opts.guidance_checkpointing, norm=norm,
                )
            with torch.no_grad():
                eps = 0
                if beta_s:
                    adapter.activate(backbone, subject)
                    eps = beta_s * guided(backbone, x_sub, t, emb_s, scale, scheduler)
                if beta_m:
                    adapter.activate(backbone, motion)
                    eps = eps + beta_m * guided(backbone, x_mot, t, emb_m, scale, scheduler)
                start = beta_s * x_sub + beta_m * x_mot if mixture else latents
                if i < tau and mixture:
                    keep_refinement(scheduler, i)
                latents = scheduler_step(scheduler, eps, t, start, generator)
        return latents

    @staticmethod
    @contextmanager
    def _capturing(backbone: Backbone, positions, checkpointing: bool):
        """One attention capture for both branches: the union of both prompts' positions.

        Both branches' forward passes then run identical processors, so that with activation
        checkpointing either pass can be recomputed inside the same capture.
        """
        union = sorted({p for groups in positions for group in groups for p in group})
        with ExitStack() as stack:
            store = stack.enter_context(backbone.capture_attention(cross_tokens=union, temporal=True))
            if checkpointing:
                stack.enter_context(backbone.activation_checkpointing())
            yield store, union

    @staticmethod
    def _losses(backbone, adapter, store, union, x_sub, x_mot, t, embeds, adapters, positions, size):
        adapter.activate(backbone, adapters[0])
        predict(backbone, x_sub, t, embeds[0])
        n_cross, n_temp = len(store.cross), len(store.temporal)
        adapter.activate(backbone, adapters[1])
        predict(backbone, x_mot, t, embeds[1])
        cross_s = subject_maps(store.cross[:n_cross], union, positions[0], size)
        cross_m = subject_maps(store.cross[n_cross:], union, positions[1], size)
        temp_s, temp_m = store.temporal[:n_temp], store.temporal[n_temp:]
        l_sm = ((cross_m.float() - cross_s.detach().float()) ** 2).mean()
        l_ms = torch.stack([((a.float() - b.detach().float()) ** 2).mean() for a, b in zip(temp_s, temp_m)]).mean()
        return l_sm, l_ms

    @classmethod
    def alignment_losses(cls, backbone, adapter, x_sub, x_mot, t, embeds, adapters, positions, size):
        """``(L_{s->m}, L_{m->s})`` for the given branch latents (gradients flow to both).

        ``positions``: :func:`matched_positions`' per-subject groups for the two prompts.
        """
        with cls._capturing(backbone, positions, checkpointing=False) as (store, union):
            return cls._losses(backbone, adapter, store, union, x_sub, x_mot, t, embeds, adapters, positions, size)

    def guide(self, backbone, adapter, latents, t, embeds, adapters, positions, alphas, size, scheduler,
              checkpointing: bool = False, norm: str = "rms"):
        """One refinement: ``x_sub -= alpha_temporal * step(dL_{m->s}/dx_sub)``,
        ``x_mot -= alpha_cross * step(dL_{s->m}/dx_mot)``, where ``step`` is ``g / rms(g)``
        (``norm = "rms"``) or ``g`` (``"none"``). ``alphas`` is ``(alpha_temporal, alpha_cross)``,
        or one number for both. Returns float32 latents.

        ``L_{s->m}`` depends on the motion pass only (the subject maps are its constant target)
        and ``L_{m->s}`` on the subject pass only, so each gradient is taken separately, with
        its own branch's adapter active: under activation checkpointing the backward pass
        recomputes that branch's forward pass, which must see the same adapter.
        """
        a_sub, a_mot = (alphas, alphas) if isinstance(alphas, (int, float)) else alphas
        latents = latents.detach().float()
        x_sub = latents.clone().requires_grad_(True)
        x_mot = latents.clone().requires_grad_(True)
        with torch.enable_grad(), self._capturing(backbone, positions, checkpointing) as (store, union):
            inputs = (scale_input(scheduler, x_sub, t), scale_input(scheduler, x_mot, t))
            l_sm, l_ms = self._losses(backbone, adapter, store, union, *inputs, t, embeds, adapters, positions, size)
            adapter.activate(backbone, adapters[1])  # each backward pass under its own branch's adapter
            (g_mot,) = torch.autograd.grad(l_sm, x_mot, allow_unused=True)
            adapter.activate(backbone, adapters[0])
            (g_sub,) = torch.autograd.grad(l_ms, x_sub, allow_unused=True)
        return latents - a_sub * direction(g_sub, latents, norm), latents - a_mot * direction(g_mot, latents, norm)


def direction(grad: torch.Tensor | None, like: torch.Tensor, norm: str) -> torch.Tensor:
    """The gradient as a step: unchanged (``"none"``) or divided by its root mean square (``"rms"``)."""
    if grad is None:
        return torch.zeros_like(like)
    grad = grad.detach().float()
    if norm == "rms":
        rms = grad.square().mean().sqrt()
        return grad / rms if rms > 0 else grad
    return grad
