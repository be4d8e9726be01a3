"""Training steps (subject, motion, fusion) against the passes they cannot avoid.

A *step* here is the objective's loss plus its backward pass (the optimizer update is the same
few LoRA tensors for every stage and is left out). The floor of each is written with bare
``backbone.predict`` calls: the forward passes with gradients that produce the trained output,
their backward, and the no-grad passes a target needs.
"""

from __future__ import annotations

import torch

from benchmarks.harness import compare
from benchmarks.world import APPEARANCE_PROMPT, MOTION_PROMPT, TOKENS
from videomage.components import TrainingContext
from videomage.plugins import get_registry


def _mse(a, b):
    return torch.nn.functional.mse_loss(a.float(), b.float())


def _fixed(world, latents, seed):
    """Noise and timesteps drawn once, so candidate and floor do identical work every round."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(latents.shape, generator=g).to(latents)
    t = world.backbone.sample_timesteps(latents.shape[0], g)
    return noise, t


def _zero(world, names):
    for name in names:
        for p in world.adapter.parameters(world.backbone, name):
            p.grad = None


def test_subject_step(benchmark, world):
    """``L_sub + 0.25 L_reg``: one image batch and one prior-video batch, each forward + backward."""
    b, ad = world.backbone, world.adapter
    ad.activate(b, {"subject_a": 1.0})
    ctx = TrainingContext(backbone=b, adapter=ad, trained=("subject_a",))
    objective = get_registry().create("objective", "denoise", lambda_reg=0.25)
    image, video = world.latents(1, frames=1, seed=1), world.latents(1, seed=2)
    (noise, t), (pnoise, pt) = _fixed(world, image, 3), _fixed(world, video, 4)
    batch = {"latents": image, "prompts": ["a photo of <toy>"], "noise": noise, "timesteps": t,
             "prior_latents": video, "prior_prompts": ["a video of circle"], "prior_noise": pnoise, "prior_timesteps": pt}
    e_img, e_vid = b.encode_prompt(["a photo of <toy>"]), b.encode_prompt(["a video of circle"])
    x_img, x_vid = b.add_noise(image, noise, t), b.add_noise(video, pnoise, pt)

    def candidate():
        objective.loss(ctx, batch).loss.backward()
        _zero(world, ["subject_a"])

    def floor():
        (_mse(b.predict(x_img, t, e_img), noise) + 0.25 * _mse(b.predict(x_vid, pt, e_vid), pnoise)).backward()
        _zero(world, ["subject_a"])

    compare(benchmark, world, "subject step vs 2 x (forward + backward)", candidate, floor, target="<= 1.10",
            note="target ours (the issue lists this step without one)")


def test_motion_step(benchmark, world):
    """Negative-CFG motion loss vs a LoRA step plus one no-grad base forward (issue: <= 1.10)."""
    b, ad = world.backbone, world.adapter
    ad.activate(b, {"motion": 1.0})
    ctx = TrainingContext(backbone=b, adapter=ad, trained=("motion",))
    objective = get_registry().create("objective", "negative_cfg_motion", omega=0.5)
    clip = world.latents(1, seed=5)
    noise, t = _fixed(world, clip, 6)
    batch = {"latents": clip, "prompts": [MOTION_PROMPT], "appearance_prompts": [APPEARANCE_PROMPT],
             "noise": noise, "timesteps": t}
    e_m, e_ap = b.encode_prompt([MOTION_PROMPT]), b.encode_prompt([APPEARANCE_PROMPT])
    x_t = b.add_noise(clip, noise, t)

    def candidate():
        objective.loss(ctx, batch).loss.backward()
        _zero(world, ["motion"])

    def floor():
        with torch.no_grad():
            base = b.predict(x_t, t, e_ap)  # the floor keeps the motion LoRA on: it costs slightly more
        _mse(b.predict(x_t, t, e_m), 1.5 * noise - 0.5 * base).backward()
        _zero(world, ["motion"])

    compare(benchmark, world, "motion step vs LoRA step + no-grad forward", candidate, floor, target="<= 1.10")


def test_fusion_step(benchmark, world):
    """Fusion distillation over two teachers plus attention regularisation with capture."""
    b, ad = world.backbone, world.adapter
    ctx = TrainingContext(backbone=b, adapter=ad, trained=("fused",))
    distill = get_registry().create("objective", "fusion_distill")
    attn = get_registry().create("objective", "attention_reg")
    items, plain = [], []
    for i, (token, teacher) in enumerate(zip(TOKENS, ["subject_a", "subject_b"])):
        lat = world.latents(1, seed=10 + i)
        noise, t = _fixed(world, lat, 20 + i)
        items.append({"latents": lat, "prompts": [f"a {token}"], "teacher": teacher, "noise": noise, "timesteps": t})
        plain.append((b.add_noise(lat, noise, t), t, b.encode_prompt([f"a {token}"]), teacher))
    composite = world.latents(1, seed=30)
    cnoise, ct = _fixed(world, composite, 31)
    prompt = "a <toy> and a <dog>"
    groups = [b.word_positions(prompt, tok) for tok in TOKENS]
    f, hh, ww = composite.shape[-3:]
    masks = torch.zeros(1, 2, f, 8 * hh, 8 * ww, device=composite.device)
    masks[:, 0, ..., : 4 * ww] = 1
    masks[:, 1, ..., 4 * ww :] = 1
    attn_batch = {"latents": composite, "prompts": [prompt], "masks": masks, "token_positions": groups,
                  "noise": cnoise, "timesteps": ct}
    x_c, e_c = b.add_noise(composite, cnoise, ct), b.encode_prompt([prompt])

    def candidate():
        (distill.loss(ctx, {"subjects": items}).loss + 0.6 * attn.loss(ctx, attn_batch).loss).backward()
        _zero(world, ["fused"])

    def floor():
        terms = []
        for x_t, t, emb, teacher in plain:
            ad.activate(b, {teacher: 1.0})
            with torch.no_grad():
                target = b.predict(x_t, t, emb)
            ad.activate(b, {"fused": 1.0})
            terms.append(_mse(b.predict(x_t, t, emb), target))
        (torch.stack(terms).mean() + 0.6 * b.predict(x_c, ct, e_c).float().square().mean()).backward()
        _zero(world, ["fused"])

    compare(benchmark, world, "fusion step vs 2 x (teacher no-grad + student fwd/bwd) + composite fwd/bwd",
            candidate, floor, target="<= 1.15",
            note="target ours; the difference is attention capture on the composite pass")
