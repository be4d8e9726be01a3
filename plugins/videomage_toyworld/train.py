"""Train the toy world's base model: ``python -m videomage_toyworld.train --out DIR``.

Two phases, each an ordinary :class:`videomage.Trainer` run with its own checkpoint folder,
so re-running the same command resumes wherever it stopped (parameters, AdamW moments and
RNG states are checkpointed atomically; the data of step ``k`` is drawn from a generator
seeded by ``(seed, phase, k)``, so a resumed run sees the batches an uninterrupted one would):

1. the VAE learns to reconstruct frames of arbitrary colours and patterns, then its latent
   scale is fixed from the world's frames (ZeroScope's ``scaling_factor`` convention);
2. the UNet and the text encoder learn epsilon-prediction on captioned clips and stills, with
   captions dropped to ``""`` 10% of the time so that classifier-free guidance has an
   unconditional branch to push away from, optionally with offset noise (``--offset-noise``)
   so that the caption, not the initial noise's mean, decides light and dark backgrounds;
   ``--restart-at`` starts the cosine learning-rate schedule again when extending a finished run;
3. optionally (``--motion-focus STEPS``) a fine-tune that teaches motion direction: every
   batch is single-object moving clips with the direction named, each paired with its time
   reverse captioned with the opposite direction and noised with the time-reversed noise, so
   the two halves of a pair differ only in frame order and the direction word.

Every ``--export-every`` steps (and at the end) the model is written in the diffusers layout
into ``DIR/model`` atomically; ``--ship`` copies the final one into the package as float16.
Raising ``--steps`` and re-running continues a finished run.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import shutil
from pathlib import Path

import attrs
import numpy as np
import torch
import torch.nn.functional as F

from videomage import ObjectiveOutput
from videomage.kit import ParamGroup, Trainer, TrainerConfig
from videomage_toyworld import diagnose, world
from videomage_toyworld.model import (
    MODEL_DIR,
    ToyModelConfig,
    build_components,
    save_model,
)


@attrs.frozen(kw_only=True)
class TrainPlan:
    """What to train for how long. The defaults fit about 90 minutes on one CPU core."""

    vae_steps: int = 500
    steps: int = 1800
    batch: int = 8  # clips per step
    still_batch: int = 16  # stills per step, on the steps that train on stills
    still_fraction: float = 0.25
    frames: int = 8
    lr: float = 5e-4
    decay_steps: int | None = None  # the cosine schedule's length; None: ``steps``
    # Step at which the cosine schedule starts again from ``lr`` (a warm restart, for extending a
    # finished run with a new objective); 0: one schedule from step 0.
    restart: int = 0
    # Std of a per-clip, per-channel constant added to the training noise ("offset noise"). With
    # plain noise the last timestep still carries the clip's mean colour, so the model learns to
    # read it from the initial noise and, at sampling, draws mid-tone backgrounds whatever the
    # prompt says; the offset hides that mean, so the caption has to decide it. 0: off (as the
    # shipped model was trained); 0.1 fixed its backgrounds in a fine-tune (docs/toyworld-investigations.md).
    offset_noise: float = 0.0
    vae_lr: float = 1e-3
    caption_dropout: float = 0.1
    kl_weight: float = 1e-6
    seed: int = 0
    checkpoint_every: int = 50
    export_every: int = 200
    mixed_precision: str = "no"
    # Phase 3, the direction fine-tune (0 steps: off). Its own checkpoint folder, ``motion/``.
    motion_steps: int = 0
    motion_lr: float = 1e-4  # UNet (non-temporal) and text encoder
    temporal_lr: float = 1e-3  # temp_convs, temp_attentions, transformer_in
    motion_warmup: int = 20
    motion_t_min: int = 100  # below this the noisy clip shows its own motion; the word cannot matter
    motion_snr_cap: float = 5.0  # loss weight max(1, min(1/SNR, cap)): more weight where noise hides the motion
    # Weight of the contrast term: the same noisy clips with each pair's captions exchanged (the
    # opposite direction word) should denoise worse, by up to ``motion_margin`` (relative).
    motion_contrast: float = 0.0
    motion_margin: float = 0.1
    gap_every: int = 50  # direction-gap check (printed and appended to motion/gap.jsonl)
    gap_probes: int = 32  # clips of the direction-gap probe set


def _data_rng(plan: TrainPlan, phase: int, step: int) -> np.random.Generator:
    return np.random.default_rng([plan.seed, phase, step])


def denoiser_batch(plan: TrainPlan, size: int, step: int) -> dict:
    """The data of denoiser step ``step``: a function of the plan and the step alone."""
    rng = _data_rng(plan, 2, step)
    still = bool(rng.random() < plan.still_fraction)
    data = world.batch(rng, plan.still_batch if still else plan.batch, size=size, frames=plan.frames, still=still)
    data["captions"] = ["" if rng.random() < plan.caption_dropout else c for c in data["captions"]]
    data["still"] = still
    return data


def motion_batch(plan: TrainPlan, size: int, step: int) -> dict:
    """The data of motion fine-tune step ``step`` (a function of the plan and the step alone).

    ``plan.batch // 2`` pairs: a moving clip, then its time reverse with the opposite direction
    word (rows ``2i`` and ``2i + 1``). A pair's captions are dropped to ``""`` together.
    """
    rng = _data_rng(plan, 3, step)
    videos, captions = [], []
    for _ in range(max(1, plan.batch // 2)):
        clip = diagnose.moving_clip(rng, size=size, frames=plan.frames, drop_colour=0.1, drop_scene=0.15,
                                    drop_speed=0.3)
        back = diagnose.reversed_clip(clip)
        drop = bool(rng.random() < plan.caption_dropout)
        videos += [clip.frames, back.frames]
        captions += ["", ""] if drop else [clip.caption, back.caption]
    return {"video": torch.from_numpy(np.stack(videos)), "captions": captions, "still": False}


TEMPORAL = ("temp_convs", "temp_attentions", "transformer_in")


def is_temporal(name: str) -> bool:
    """Whether a UNet parameter belongs to a layer that mixes frames (the only ones that see order)."""
    return any(part in name.split(".") for part in TEMPORAL)


class Prefetcher:
    """Draws the batches of the next steps in worker processes while the model trains.

    Rendering a batch of clips costs about as much as a GPU step, so on a GPU the data would
    otherwise be the bottleneck. ``workers=0`` draws inline (the CPU default: no spare cores).
    """

    def __init__(self, make, workers: int) -> None:
        self.make, self.workers, self.pending = make, workers, {}
        self.pool = None
        if workers:
            import multiprocessing

            self.pool = multiprocessing.get_context("spawn").Pool(workers)

    def get(self, step: int):
        if self.pool is None:
            return self.make(step)
        for ahead in range(step, step + 2 * self.workers):
            if ahead not in self.pending:
                self.pending[ahead] = self.pool.apply_async(self.make, (ahead,))
        return self.pending.pop(step).get()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.terminate()


def training_noise(shape: tuple[int, ...], offset: float, generator: torch.Generator) -> torch.Tensor:
    """Standard normal noise of ``shape`` ``[B, C, F, h, w]``, plus, when ``offset`` > 0, a constant per
    clip and channel drawn with std ``offset`` (shared by all frames and pixels of the clip)."""
    noise = torch.randn(shape, generator=generator)
    if offset:
        noise = noise + offset * torch.randn((*shape[:2], *[1] * (len(shape) - 2)), generator=generator)
    return noise


def denoiser_lr(plan: TrainPlan, step: int) -> float:
    """The denoiser's learning rate at ``step``: cosine decay from ``plan.lr`` to a tenth of it over
    ``decay_steps``, started again at ``plan.restart`` when set. A function of the step alone, so
    resuming is exact."""
    start = plan.restart if step >= plan.restart else 0
    total = max((plan.decay_steps or plan.steps) - start, 1)
    return plan.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(step - start, total) / total)))


def train_vae(components: dict, plan: TrainPlan, size: int, out: Path, device: torch.device) -> None:
    """Phase 1: reconstruction (half arbitrary-colour frames, half world frames) plus a tiny KL."""
    vae = components["vae"].to(device).train()

    def step_loss(step: int, generator: torch.Generator) -> ObjectiveOutput:
        rng = _data_rng(plan, 1, step)
        half = plan.still_batch // 2
        stills = torch.from_numpy(np.stack([world.random_clip(rng, size=size, still=True).frames[0] for _ in range(half)]))
        frames = torch.cat([world.autoencoder_frames(rng, plan.still_batch - half, size=size), stills]).to(device) * 2 - 1
        posterior = vae.encode(frames).latent_dist
        noise = torch.randn(posterior.mean.shape, generator=generator).to(device)
        recon = vae.decode(posterior.mean + posterior.std * noise).sample
        mse = F.mse_loss(recon.float(), frames)
        kl = posterior.kl().mean()
        return ObjectiveOutput(loss=mse + plan.kl_weight * kl, logs={"mse": float(mse.detach()), "kl": float(kl.detach())})

    config = TrainerConfig(steps=plan.vae_steps, checkpoint_every=plan.checkpoint_every, seed=plan.seed,
                           description="vae", mixed_precision=plan.mixed_precision)
    Trainer(config, [ParamGroup(name="vae", params=list(vae.parameters()), lr=plan.vae_lr)], step_loss,
            checkpoint_dir=out / "vae").fit()
    vae.eval().requires_grad_(False)


@torch.no_grad()
def fix_latent_scale(vae, plan: TrainPlan, size: int, device: torch.device) -> float:
    """Set ``scaling_factor`` to 1/std of the world's latents, so noised latents have unit scale."""
    rng = _data_rng(plan, 0, 0)
    clips = world.batch(rng, 8, size=size, frames=plan.frames)["video"].flatten(0, 1).to(device)
    std = float(vae.encode(clips * 2 - 1).latent_dist.mode().float().std())
    vae.register_to_config(scaling_factor=1.0 / std)
    return 1.0 / std


def _encode(vae, video: torch.Tensor) -> torch.Tensor:
    """``[B, F, 3, H, W]`` in [0, 1] -> scaled latents ``[B, C, F, h, w]`` (as the backbone does)."""
    b, f = video.shape[:2]
    latents = vae.encode(video.flatten(0, 1) * 2 - 1).latent_dist.mode() * vae.config.scaling_factor
    return latents.reshape(b, f, *latents.shape[1:]).permute(0, 2, 1, 3, 4)


def train_denoiser(
    components: dict, plan: TrainPlan, size: int, out: Path, device: torch.device, workers: int = 0
) -> Trainer:
    """Phase 2: epsilon-prediction on captioned clips and stills, captions dropped at random."""
    unet, text_encoder = components["unet"].to(device).train(), components["text_encoder"].to(device).train()
    tokenizer, scheduler, vae = components["tokenizer"], components["scheduler"], components["vae"]
    alphas = scheduler.alphas_cumprod.to(device)
    trainer: Trainer

    def step_loss(step: int, generator: torch.Generator) -> ObjectiveOutput:
        for group in trainer.optimizer.param_groups:
            group["lr"] = denoiser_lr(plan, step)
        data = prefetch.get(step)
        captions, still = data["captions"], data["still"]
        with torch.no_grad():
            latents = _encode(vae, data["video"].to(device))
        ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                        return_tensors="pt").input_ids.to(device)
        noise = training_noise(latents.shape, plan.offset_noise, generator).to(device)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (latents.shape[0],), generator=generator).to(device)
        a = alphas[t].view(-1, 1, 1, 1, 1)
        noisy = a.sqrt() * latents + (1 - a).sqrt() * noise
        pred = unet(noisy, t, encoder_hidden_states=text_encoder(ids)[0]).sample
        loss = F.mse_loss(pred.float(), noise)
        return ObjectiveOutput(loss=loss, logs={"still": float(still)})

    def export(step: int) -> None:
        export_model(components, out / "model")

    config = TrainerConfig(steps=plan.steps, checkpoint_every=plan.checkpoint_every, seed=plan.seed,
                           description="unet+text", validate_every=plan.export_every,
                           mixed_precision=plan.mixed_precision)
    groups = [ParamGroup(name="unet", params=list(unet.parameters()), lr=plan.lr),
              ParamGroup(name="text_encoder", params=list(text_encoder.parameters()), lr=plan.lr)]
    trainer = Trainer(config, groups, step_loss, checkpoint_dir=out / "denoiser", validate=export)
    prefetch = Prefetcher(functools.partial(denoiser_batch, plan, size), workers)
    try:
        trainer.fit()
    finally:
        prefetch.close()
    unet.eval(), text_encoder.eval()
    return trainer


def train_motion(components: dict, plan: TrainPlan, size: int, out: Path, device: torch.device) -> Trainer:
    """Phase 3: the direction fine-tune on time-reversed pairs (see :func:`motion_batch`).

    Parameter groups: the UNet's temporal layers at ``temporal_lr``, the rest of the UNet and
    the text encoder at ``motion_lr``, both after a linear warm-up. Timesteps are drawn from
    ``[motion_t_min, 1000)``, one per pair, and a pair's second clip gets the first one's noise
    reversed in time, so a model blind to frame order and to the word has the same loss on both.
    """
    unet, text_encoder = components["unet"].to(device).train(), components["text_encoder"].to(device).train()
    tokenizer, scheduler, vae = components["tokenizer"], components["scheduler"], components["vae"]
    alphas = scheduler.alphas_cumprod.to(device)
    named = list(unet.named_parameters())
    groups = [ParamGroup(name="temporal", params=[p for n, p in named if is_temporal(n)], lr=plan.temporal_lr),
              ParamGroup(name="unet", params=[p for n, p in named if not is_temporal(n)], lr=plan.motion_lr),
              ParamGroup(name="text_encoder", params=list(text_encoder.parameters()), lr=plan.motion_lr)]
    log = out / "motion" / "gap.jsonl"
    trainer: Trainer

    def step_loss(step: int, generator: torch.Generator) -> ObjectiveOutput:
        warm = min(1.0, (step + 1) / max(plan.motion_warmup, 1))
        for group, spec in zip(trainer.optimizer.param_groups, groups):
            group["lr"] = spec.lr * warm
        data = motion_batch(plan, size, step)
        with torch.no_grad():
            latents = _encode(vae, data["video"].to(device))
        ids = tokenizer(data["captions"], padding="max_length", max_length=tokenizer.model_max_length,
                        truncation=True, return_tensors="pt").input_ids.to(device)
        pairs = latents.shape[0] // 2
        first = torch.randn((pairs, *latents.shape[1:]), generator=generator)
        noise = torch.stack([first, first.flip(2)], dim=1).flatten(0, 1).to(device)  # latents: [B, C, F, h, w]
        t = torch.randint(plan.motion_t_min, scheduler.config.num_train_timesteps, (pairs,), generator=generator)
        t = t.repeat_interleave(2).to(device)
        a = alphas[t].view(-1, 1, 1, 1, 1)
        noisy = a.sqrt() * latents + (1 - a).sqrt() * noise
        embeds = text_encoder(ids)[0]
        weight = (1 / (alphas[t] / (1 - alphas[t]))).clamp(1.0, plan.motion_snr_cap)
        if not plan.motion_contrast:
            pred = unet(noisy, t, encoder_hidden_states=embeds).sample
            per = (pred.float() - noise).pow(2).flatten(1).mean(1)
            return ObjectiveOutput(loss=(weight * per).mean(), logs={"mse": float(per.mean().detach())})
        # A pair's second caption is the first one with the opposite word, so exchanging the
        # captions within each pair gives every clip the wrong direction and nothing else changed.
        swapped = embeds.view(pairs, 2, *embeds.shape[1:]).flip(1).flatten(0, 1)
        pred = unet(torch.cat([noisy, noisy]), torch.cat([t, t]),
                    encoder_hidden_states=torch.cat([embeds, swapped])).sample
        per_right, per_wrong = (pred.float() - torch.cat([noise, noise])).pow(2).flatten(1).mean(1).chunk(2)
        # For a model blind to frame order this term sums to zero over each pair, so its gradient
        # flows only through what tells the frames' order.
        contrast = torch.minimum(per_wrong - per_right, plan.motion_margin * per_right.detach())
        loss = (weight * per_right).mean() - plan.motion_contrast * (weight * contrast).mean()
        return ObjectiveOutput(loss=loss, logs={"mse": float(per_right.mean().detach()),
                                                "gap": float((per_wrong - per_right).mean().detach())})

    def check(step: int) -> None:
        if step % plan.gap_every == 0:
            gap = diagnose.direction_gap(components, n=plan.gap_probes, frames=plan.frames)
            line = json.dumps({"step": step, **{k: round(v, 8) for k, v in gap.items()}})
            print(f"\ndirection gap: {line}", flush=True)
            with open(log, "a") as fh:
                fh.write(line + "\n")
        if step and step % plan.export_every == 0:
            export_model(components, out / "model")

    # The hook runs at every multiple of either period; it decides which of the two is due.
    config = TrainerConfig(steps=plan.motion_steps, checkpoint_every=plan.checkpoint_every, seed=plan.seed,
                           description="motion", validate_every=math.gcd(plan.gap_every, plan.export_every),
                           mixed_precision=plan.mixed_precision)
    trainer = Trainer(config, groups, step_loss, checkpoint_dir=out / "motion", validate=check)
    (out / "motion").mkdir(parents=True, exist_ok=True)
    if not (out / "motion" / "checkpoint.safetensors").exists() and not log.exists():
        check(0)
    trainer.fit()
    unet.eval(), text_encoder.eval()
    return trainer


def export_model(components: dict, folder: Path, *, dtype: torch.dtype = torch.float32) -> Path:
    """Write the model into ``folder`` atomically: build it beside, then swap it in."""
    folder = Path(folder)
    staging = folder.with_name(folder.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    save_model(components, staging, dtype=dtype)
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        os.replace(folder, old)
    os.replace(staging, folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def train(out: str | Path, plan: TrainPlan, config: ToyModelConfig, *, device: str = "cpu", workers: int = 0) -> dict:
    """Run (or resume) both phases; return the trained components, on the CPU, in eval mode."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dev = torch.device(device)
    # The same seed builds the same initial weights on every run; the checkpoints then restore
    # the trained ones, so nothing but the checkpoints has to be kept between runs.
    components = build_components(config, out / "tokenizer", seed=plan.seed)
    train_vae(components, plan, config.image_size, out, dev)
    fix_latent_scale(components["vae"], plan, config.image_size, dev)
    train_denoiser(components, plan, config.image_size, out, dev, workers)
    if plan.motion_steps:
        train_motion(components, plan, config.image_size, out, dev)
    for name in ("unet", "vae", "text_encoder"):
        components[name].to("cpu").eval().requires_grad_(False)
    export_model(components, out / "model")
    return components


def main(argv: list[str] | None = None) -> None:
    defaults = TrainPlan()
    parser = argparse.ArgumentParser(prog="python -m videomage_toyworld.train", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="run folder: checkpoints, tokenizer and model/")
    parser.add_argument("--steps", type=int, default=defaults.steps, help="UNet + text-encoder steps")
    parser.add_argument("--vae-steps", type=int, default=defaults.vae_steps)
    parser.add_argument("--batch", type=int, default=defaults.batch)
    parser.add_argument("--still-batch", type=int, default=defaults.still_batch)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--decay-steps", type=int, default=None,
                        help="length of the cosine learning-rate decay (default: --steps); keep it when extending a run")
    parser.add_argument("--restart-at", type=int, default=defaults.restart, metavar="STEP",
                        help="restart the cosine schedule from --lr at STEP (to extend a finished run with a new objective)")
    parser.add_argument("--offset-noise", type=float, default=defaults.offset_noise, metavar="STD",
                        help="std of a per-clip, per-channel constant added to the denoiser's training noise "
                             "(lets captions decide very light or dark backgrounds; 0: off)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--export-every", type=int, default=defaults.export_every)
    parser.add_argument("--checkpoint-every", type=int, default=defaults.checkpoint_every)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: the CPU is shared)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--workers", type=int, default=0, help="data worker processes (use some on a GPU)")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (GPUs)")
    parser.add_argument("--tiny", action="store_true", help="the unit-test model sizes (32x32 frames)")
    parser.add_argument("--ship", action="store_true", help=f"copy the result, as float16, into {MODEL_DIR}")
    parser.add_argument("--motion-focus", type=int, default=0, metavar="STEPS",
                        help="after the denoiser, fine-tune STEPS steps on time-reversed moving pairs (direction)")
    parser.add_argument("--motion-lr", type=float, default=defaults.motion_lr)
    parser.add_argument("--temporal-lr", type=float, default=defaults.temporal_lr)
    parser.add_argument("--motion-contrast", type=float, default=defaults.motion_contrast,
                        help="weight of the wrong-direction contrast term of --motion-focus (0: plain loss)")
    parser.add_argument("--gap-every", type=int, default=defaults.gap_every)
    parser.add_argument("--gap-probes", type=int, default=defaults.gap_probes)
    parser.add_argument("--resume", action="store_true", help="accepted for clarity: runs always resume")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    plan = TrainPlan(vae_steps=args.vae_steps, steps=args.steps, batch=args.batch, still_batch=args.still_batch,
                     lr=args.lr, decay_steps=args.decay_steps, restart=args.restart_at,
                     offset_noise=args.offset_noise, seed=args.seed, export_every=args.export_every,
                     checkpoint_every=args.checkpoint_every, mixed_precision="bf16" if args.bf16 else "no",
                     motion_steps=args.motion_focus, motion_lr=args.motion_lr, temporal_lr=args.temporal_lr,
                     motion_contrast=args.motion_contrast, gap_every=args.gap_every,
                     gap_probes=args.gap_probes)
    config = ToyModelConfig.tiny() if args.tiny else ToyModelConfig()
    components = train(args.out, plan, config, device=args.device, workers=args.workers)
    if args.ship:
        export_model(components, MODEL_DIR, dtype=torch.float16)
    print(f"model written to {Path(args.out) / 'model'}" + (f" and {MODEL_DIR}" if args.ship else ""))


if __name__ == "__main__":
    main()
