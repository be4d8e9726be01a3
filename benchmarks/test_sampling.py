"""Sampling: plain CFG and SCS steps, adapter switching and merged-LoRA inference, against their floors.

A sampling benchmark runs the real sampler for ``config.steps`` denoising steps (the set-up it
does once per video, prompt encoding and the scheduler, is included and cached) and compares
with the bare ``backbone.predict`` calls those steps cannot avoid:

* a CFG step: one batched forward (negative and positive prompt, batch 2);
* an unguided SCS step: two such forwards, one per branch;
* a guided SCS step: a forward and a backward per branch (batch 1, gradients to the latents),
  plus the two batched CFG forwards.
"""

from __future__ import annotations

import torch

from benchmarks.harness import compare
from benchmarks.world import PROMPT, TOKENS
from videomage.plugins import get_registry


def _request(world, **extra):
    c = world.config
    return {"prompt": PROMPT, "steps": c.steps, "frames": c.frames, "height": c.height, "width": c.width,
            "seed": 0, "progress": False, **extra}


def _scs_request(world, tau, **extra):
    return _request(world, subject_adapter="fused", motion_adapter="motion", tokens=dict(TOKENS), tau=tau, **extra)


def _cfg_forward(world, latents, embeds, t):
    with torch.no_grad():
        return world.backbone.predict(torch.cat([latents, latents]), t.expand(2), embeds)


def _grad_forward(world, latents, embeds, t):
    x = latents.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        out = world.backbone.predict(x, t, embeds)
        (grad,) = torch.autograd.grad(out.float().square().mean(), x)
    return grad


def _embeds(world):
    b = world.backbone
    from videomage_samplers.scs import motion_prompt_for

    with torch.no_grad():
        return b.encode_prompt(["", PROMPT]), b.encode_prompt(["", motion_prompt_for(PROMPT, TOKENS)])


def test_cfg_step(benchmark, world):
    """Plain CFG sampling vs one batched forward per step."""
    b, ad = world.backbone, world.adapter
    sampler = get_registry().create("sampler", "cfg")
    request = _request(world, adapters={"fused": 1.0, "motion": 1.0})
    x, t = world.latents(), torch.tensor([500], device=world.device)
    emb, _ = _embeds(world)

    def floor():
        ad.activate(b, {"fused": 1.0, "motion": 1.0})
        for _ in range(world.config.steps):
            _cfg_forward(world, x, emb, t)

    compare(benchmark, world, "CFG step vs 1 batched forward", lambda: sampler.sample(b, ad, request), floor,
            target="<= 1.10", note=f"{world.config.steps} steps per round; target ours")


def test_scs_unguided_step(benchmark, world):
    """SCS past tau (no guidance) vs the two batched CFG forwards per step (issue: <= 1.10)."""
    b, ad = world.backbone, world.adapter
    sampler = get_registry().create("sampler", "scs")
    request = _scs_request(world, tau=0)
    x, t = world.latents(), torch.tensor([500], device=world.device)
    emb_s, emb_m = _embeds(world)

    def floor():
        for _ in range(world.config.steps):
            ad.activate(b, {"fused": 1.0})
            _cfg_forward(world, x, emb_s, t)
            ad.activate(b, {"motion": 1.0})
            _cfg_forward(world, x, emb_m, t)

    compare(benchmark, world, "SCS unguided step vs 2 batched CFG forwards", lambda: sampler.sample(b, ad, request),
            floor, target="<= 1.10", note=f"{world.config.steps} steps per round")


def _guided_floor(world):
    """What a guided step cannot avoid: a forward and a backward per branch, then the CFG forwards."""
    b, ad = world.backbone, world.adapter
    x, t = world.latents(), torch.tensor([500], device=world.device)
    emb_s, emb_m = _embeds(world)

    def floor():
        for _ in range(world.config.steps):
            for emb, name in ((emb_s, "fused"), (emb_m, "motion")):
                ad.activate(b, {name: 1.0})
                _grad_forward(world, x, emb[1:], t)
            for emb, name in ((emb_s, "fused"), (emb_m, "motion")):
                ad.activate(b, {name: 1.0})
                _cfg_forward(world, x, emb, t)

    return floor


def test_scs_guided_step(benchmark, world):
    """SCS within tau, activations kept for backward, vs 2 x (forward + backward) + 2 batched CFG
    forwards (issue: <= 1.15). ``guidance_checkpointing=False``: the fast, memory-hungry mode."""
    sampler = get_registry().create("sampler", "scs")
    request = _scs_request(world, tau=world.config.steps, guidance_checkpointing=False)
    compare(benchmark, world, "SCS guided step, activations stored, vs 2 x (fwd+bwd) + 2 batched CFG forwards",
            lambda: sampler.sample(world.backbone, world.adapter, request), _guided_floor(world), target="<= 1.15",
            note=f"{world.config.steps} steps per round")


def test_scs_guided_step_checkpointed(benchmark, world):
    """The default guided step: activations recomputed in backward (one more forward per branch)."""
    sampler = get_registry().create("sampler", "scs")
    request = _scs_request(world, tau=world.config.steps, guidance_checkpointing=True)
    compare(benchmark, world, "SCS guided step, checkpointed (default), vs 2 x (fwd+bwd) + 2 batched CFG forwards",
            lambda: sampler.sample(world.backbone, world.adapter, request), _guided_floor(world), target="<= 1.60",
            note=f"{world.config.steps} steps per round; target ours: the recompute adds about one forward per branch")


def _pointers(world):
    return {n: p.data_ptr() for n, p in world.backbone.denoiser.named_parameters()}


def test_adapter_switch(benchmark, world):
    """Switching the active adapter costs < 2% of a forward and copies no weights."""
    b, ad = world.backbone, world.adapter
    x, t = world.latents(), torch.tensor([500], device=world.device)
    emb, _ = _embeds(world)
    before = _pointers(world)
    n = 20  # switches per round: one is too short to time against a clock

    def candidate():
        for i in range(n // 2):
            ad.activate(b, {"fused": 1.0})
            ad.activate(b, {"motion": 1.0})

    def floor():
        _cfg_forward(world, x, emb, t)

    result = compare(benchmark, world, "20 adapter switches vs one batched forward", candidate, floor,
                     target="< 0.4", note="ratio of 20 switches to one forward: < 0.4 means one switch < 2%")
    assert _pointers(world) == before, "an adapter switch moved or copied a weight"
    # Equivalent single-switch fraction, for the README.
    benchmark.extra_info["switch_fraction_of_forward"] = result.ratio / n


def test_merged_inference(benchmark, world):
    """A merged LoRA runs as fast as the base model (within 3%)."""
    b, ad = world.backbone, world.adapter
    x, t = world.latents(), torch.tensor([500], device=world.device)
    emb, _ = _embeds(world)

    def merged():
        _cfg_forward(world, x, emb, t)

    def base():
        _cfg_forward(world, x, emb, t)

    def unmerge():
        ad.unmerge(b)
        ad.activate(b, {})

    unmerge()
    # A 3% band is tighter than this machine's round-to-round noise: three times the rounds.
    compare(benchmark, world, "merged-LoRA forward vs base forward", merged, base, target="0.97..1.03",
            rounds=3 * world.config.rounds,
            between=lambda: ad.merge(b, {"fused": 1.0, "motion": 1.0}), after=unmerge,
            note="same model; base = every adapter off; merge/unmerge untimed")
