"""Spatial-temporal collaborative sampling (VideoMage §3.4, Eq. 7-9).

Two branches share one latent trajectory on **one** model, switching adapters:

* subject branch: the fused subject adapter, prompt ``c_tgt`` ("<toy> is riding <dog> ...");
* motion branch: the motion adapter, prompt ``c~_tgt`` (the same sentence with each subject
  token replaced by its class word: "toy is riding dog ...").

At each step ``x_t`` is copied into ``x_sub`` and ``x_mot``. For the first ``tau`` steps:

* ``L_{s->m} = mean || M_SCA,m - sg(M_SCA,s) ||^2``: the motion branch's cross-attention maps of
  the class words follow the subject branch's maps of the tokens (subject layout guides motion);
  its gradient refines ``x_mot``;
* ``L_{m->s} = mean || M_TSA,s - sg(M_TSA,m) ||^2``: the subject branch's temporal self-attention
  follows the motion branch's (motion dynamics guide subjects); its gradient refines ``x_sub``;
* ``x -= alpha * grad``. **Reduction**: both losses are mean squared errors (mean over every
  element, and over layers for the temporal maps), which is what ``alpha`` multiplies; the
  paper's alpha = 1e4 is the default.

Then ``eps = beta_s * eps_sub + beta_m * eps_mot`` (each branch with batched CFG), and the
scheduler steps from the refined mixture ``beta_s * x_sub + beta_m * x_mot`` (``step_from =
"mixture"``, the default) or from the unrefined ``x_t`` (``step_from = "shared"``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from tqdm.auto import tqdm

from videomage.components import Adapter, AttentionStore, Backbone, Sampler
from videomage.errors import ConfigError
from videomage_samplers.boundary import guided_steps
from videomage_samplers.cfg import DEFAULTS, guided, initial_latents, resolve, scale_input, scheduler_step

SCS_DEFAULTS: dict[str, Any] = {
    **{k: v for k, v in DEFAULTS.items() if k != "adapters"},
    "subject_adapter": None,
    "motion_adapter": None,
    "tokens": {},  # subject token -> class word
    "motion_prompt": None,  # derived from prompt and tokens when None
    "alpha": 1e4,
    "tau": 15,
    "beta_s": 0.5,
    "beta_m": 0.5,
    "step_from": "mixture",
    "guidance_checkpointing": True,
}


def motion_prompt_for(prompt: str, tokens: Mapping[str, str]) -> str:
    """``c~_tgt``: the target prompt with each subject token replaced by its class word."""
    out = prompt
    for token, word in tokens.items():
        out = out.replace(token, word)
    return re.sub(r"\s+", " ", out).strip()


def matched_positions(
    backbone: Backbone, prompt: str, motion_prompt: str, tokens: Mapping[str, str]
) -> tuple[list[list[int]], list[list[int]]]:
    """Per subject, in order of appearance: its token's positions in ``prompt`` and its class word's
    in ``motion_prompt`` (a word may split into several text tokens, hence a list per subject).

    A token missing from the prompt, or a class word missing from the motion prompt, is an error
    naming it.
    """
    ordered = sorted(tokens, key=lambda tok: prompt.find(tok))
    sub, mot = [], []
    for token in ordered:
        if token not in prompt:
            raise ConfigError(f"SCS: subject token {token!r} does not appear in the prompt {prompt!r}; add it or drop that subject")
        word = tokens[token]
        s_pos, m_pos = backbone.word_positions(prompt, token), backbone.word_positions(motion_prompt, word)
        if not s_pos or not m_pos:
            raise ConfigError(
                f"SCS: cannot match subject token {token!r} with class word {word!r} in the motion prompt "
                f"{motion_prompt!r}; use the class word in the motion prompt or leave it out to derive it"
            )
        sub.append(s_pos)
        mot.append(m_pos)
    return sub, mot


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

    Request keys: those of ``cfg`` except ``adapters``, plus ``subject_adapter``,
    ``motion_adapter``, ``tokens`` (subject token -> class word), ``motion_prompt`` (derived when
    omitted), ``alpha`` (1e4), ``tau`` (15), ``beta_s``/``beta_m`` (0.5/0.5), ``step_from``
    ("mixture" or "shared"), ``guidance_checkpointing`` (True: each guided step's backward pass
    recomputes the denoiser's activations, where the backbone supports it, so a guided step
    peaks near an unguided one instead of at several times it, for about one more forward
    pass per branch; False keeps them).
    """

    name = "scs"

    def sample(self, backbone: Backbone, adapter: Adapter | None, request: Mapping[str, Any]) -> torch.Tensor:
        req = resolve(request, SCS_DEFAULTS, self.name)
        if adapter is None or not req["subject_adapter"] or not req["motion_adapter"]:
            raise ConfigError("sampler 'scs' needs an adapter plugin and both 'subject_adapter' and 'motion_adapter'")
        if req["step_from"] not in ("mixture", "shared"):
            raise ConfigError(f"sampler 'scs': step_from must be 'mixture' or 'shared', got {req['step_from']!r}")
        tokens = dict(req["tokens"])
        prompt = req["prompt"]
        motion_prompt = req["motion_prompt"] or motion_prompt_for(prompt, tokens)
        beta_s, beta_m, tau, alpha = float(req["beta_s"]), float(req["beta_m"]), int(req["tau"]), float(req["alpha"])
        scale = float(req["guidance_scale"])
        subject, motion = {req["subject_adapter"]: 1.0}, {req["motion_adapter"]: 1.0}
        positions = matched_positions(backbone, prompt, motion_prompt, tokens) if tau > 0 else None

        scheduler = backbone.make_scheduler(req["scheduler"])
        scheduler.set_timesteps(int(req["steps"]))
        tau = guided_steps(backbone, scheduler.timesteps, tau)  # within the first expert (boundary.py)
        latents, generator = initial_latents(backbone, req, scheduler)
        with torch.no_grad():
            emb_s = backbone.encode_prompt([req["negative_prompt"], prompt])
            emb_m = backbone.encode_prompt([req["negative_prompt"], motion_prompt])
        size = tuple(latents.shape[-2:])

        for i, t in enumerate(tqdm(scheduler.timesteps, desc="SCS sampling", disable=not req["progress"])):
            x_sub, x_mot = latents, latents
            if i < tau:
                x_sub, x_mot = self.guide(
                    backbone, adapter, latents, t, (emb_s[1:], emb_m[1:]), (subject, motion), positions, alpha, size,
                    scheduler, checkpointing=bool(req["guidance_checkpointing"]),
                )
            with torch.no_grad():
                eps = 0
                if beta_s:
                    adapter.activate(backbone, subject)
                    eps = beta_s * guided(backbone, x_sub, t, emb_s, scale, scheduler)
                if beta_m:
                    adapter.activate(backbone, motion)
                    eps = eps + beta_m * guided(backbone, x_mot, t, emb_m, scale, scheduler)
                start = beta_s * x_sub + beta_m * x_mot if req["step_from"] == "mixture" else latents
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
        t_in = t.reshape(1).to(x_sub.device)
        adapter.activate(backbone, adapters[0])
        backbone.predict(x_sub, t_in, embeds[0])
        n_cross, n_temp = len(store.cross), len(store.temporal)
        adapter.activate(backbone, adapters[1])
        backbone.predict(x_mot, t_in, embeds[1])
        cross_s = subject_maps(store.cross[:n_cross], union, positions[0], size)
        cross_m = subject_maps(store.cross[n_cross:], union, positions[1], size)
        temp_s, temp_m = store.temporal[:n_temp], store.temporal[n_temp:]
        l_sm = ((cross_m - cross_s.detach()) ** 2).mean()
        l_ms = torch.stack([((a - b.detach()) ** 2).mean() for a, b in zip(temp_s, temp_m)]).mean()
        return l_sm, l_ms

    @classmethod
    def alignment_losses(cls, backbone, adapter, x_sub, x_mot, t, embeds, adapters, positions, size):
        """``(L_{s->m}, L_{m->s})`` for the given branch latents (gradients flow to both).

        ``positions``: :func:`matched_positions`' per-subject groups for the two prompts.
        """
        with cls._capturing(backbone, positions, checkpointing=False) as (store, union):
            return cls._losses(backbone, adapter, store, union, x_sub, x_mot, t, embeds, adapters, positions, size)

    def guide(self, backbone, adapter, latents, t, embeds, adapters, positions, alpha, size, scheduler,
              checkpointing: bool = False):
        """One refinement: ``x_mot -= alpha * dL_{s->m}/dx_mot``, ``x_sub -= alpha * dL_{m->s}/dx_sub``.

        ``L_{s->m}`` depends on the motion pass only (the subject maps are its constant target)
        and ``L_{m->s}`` on the subject pass only, so each gradient is taken separately, with
        its own branch's adapter active: under activation checkpointing the backward pass
        recomputes that branch's forward pass, which must see the same adapter.
        """
        x_sub = latents.detach().clone().requires_grad_(True)
        x_mot = latents.detach().clone().requires_grad_(True)
        with torch.enable_grad(), self._capturing(backbone, positions, checkpointing) as (store, union):
            inputs = (scale_input(scheduler, x_sub, t), scale_input(scheduler, x_mot, t))
            l_sm, l_ms = self._losses(backbone, adapter, store, union, *inputs, t, embeds, adapters, positions, size)
            adapter.activate(backbone, adapters[1])  # each backward pass under its own branch's adapter
            (g_mot,) = torch.autograd.grad(l_sm, x_mot, allow_unused=True)
            adapter.activate(backbone, adapters[0])
            (g_sub,) = torch.autograd.grad(l_ms, x_sub, allow_unused=True)
        g_sub = torch.zeros_like(latents) if g_sub is None else g_sub
        g_mot = torch.zeros_like(latents) if g_mot is None else g_mot
        return (x_sub - alpha * g_sub).detach(), (x_mot - alpha * g_mot).detach()
