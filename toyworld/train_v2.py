"""Train toy world v2's base model: ``python -m toyworld.train_v2 --out runs/v2`` (from the repo root).

Re-running the same command resumes wherever it stopped. Phases, each an ordinary
:class:`videomage.Trainer` run with its own atomic checkpoint (weights, AdamW moments, RNG states):

1. ``vae/``: the VAE, which codes each frame on its own (:mod:`videomage_toyworld.wan_model`),
   learns to reconstruct single frames (world frames and random-colour ones, so it also
   reproduces colours the base model never sees); then the latents' per-channel mean and
   std over world clips are written into its config (``latents_mean``/``latents_std``, the
   normalisation the ``wan`` backbone applies);
2. ``denoiser/``: the transformer and the text encoder learn flow matching through the ``wan``
   backbone's own ``encode_video``/``add_noise``/``predict``, on captioned v2 clips, captions
   dropped to ``""`` 10% of the time for classifier-free guidance (and the colour word alone
   ``--colour-drop`` of the time, default 30%), with the object latents' error weighted more
   (``--object-loss-weight``, default 3), optionally with a direction-ranking hinge
   (``--direction-weight``, :func:`direction_hinge`). An exponential moving
   average of their weights (``--ema-decay``, kept in ``denoiser/ema.safetensors`` beside each
   checkpoint) is what is exported: it averages out the noise of a high learning rate.

The data of step ``k`` comes from a generator seeded by ``(seed, phase, k)``, so a resumed run
sees the batches an uninterrupted one would. Every ``--export-every`` steps the model is written
atomically into ``OUT/model`` (an ordinary Wan folder) with ``OUT/model/training.json`` naming
its step. A *warm restart* (``--warm FOLDER``, used when ``OUT/denoiser`` holds no checkpoint,
e.g. on a fresh machine) starts from a saved model's weights and step instead of from scratch;
the optimizer moments start again from zero.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import attrs
import numpy as np
import torch
import torch.nn.functional as F

from videomage.components import ObjectiveOutput
from videomage.kit import atomic_write
from videomage.trainer import ParamGroup, Trainer, TrainerConfig
from toyworld.common import write_folder
from toyworld.evaluate_v2 import WORLD_OPTIONS, covered_latents, opposite_direction
from videomage_toyworld import wan_model, world2
from videomage_wan.backbone import WanBackbone

TRAINING_RECORD = "training.json"


@attrs.frozen(kw_only=True)
class Plan:
    vae_steps: int = 3000
    vae_batch: int = 16
    vae_lr: float = 1e-3
    kl_weight: float = 1e-4  # on the latents' square: keeps them near unit scale
    # Reconstruction weight of the pixels off a frame's border colour (objects), against 1 for the
    # rest: an object covers a twentieth of a frame, and unweighted its shape was the first thing lost.
    object_weight: float = 5.0
    steps: int = 20000
    batch: int = 8
    lr: float = 1e-3
    warmup: int = 100
    decay_steps: int = 8000
    # The rate the cosine decays to and stays at past ``decay_steps`` (None: a tenth of ``lr``). A
    # warm restart continues the schedule at its global step, so past 8,000 it trains at this floor.
    min_lr: float | None = None
    caption_dropout: float = 0.1
    # This share of each batch draws its noise level uniformly from [high_noise_from, 1) instead of
    # the schedule's shifted distribution: where a clip's frames barely show where its object is,
    # only the caption (its direction word above all) tells the denoiser how it travels.
    high_noise_share: float = 0.0
    high_noise_from: float = 0.85
    # This share of each clip batch is denoised with one frame (each clip its own, at random) given
    # clean and left out of the loss, as Wan 2.2 trains image-to-video beside text-to-video: the
    # other frames' objects are then where the clean one's is, moved as the caption says, so the
    # direction word tells the denoiser where to draw them (:func:`anchor_frames`).
    anchor_share: float = 0.0
    # Weight of the flow-matching error on the latents an object's pixels reach, against 1 for the
    # rest (the loss is renormalised by the mean weight): the background is the easy part of a clip.
    object_loss_weight: float = 3.0
    # Weight of the direction-ranking term (0: off). For each clip whose caption names a direction,
    # the denoiser is also run with the opposite direction word, and the object error under that
    # caption is asked to exceed the own caption's by ``direction_margin`` of it (a hinge): a
    # signal that needs the word, which plain flow matching barely gives (the frames show the path).
    direction_weight: float = 0.0
    direction_margin: float = 0.2
    # Chance that a caption leaves the colour word out ("a circle ..." means any colour). The
    # world's default tenth left "a circle in the snow" with no object at all: the model learnt
    # the average of the six colours for it.
    colour_drop: float = 0.3
    # Share of steps that train on still images (one-frame clips, ``image_factor`` times the batch,
    # a ninth of a clip's cost each) instead of clips, as Wan trains on both: the subject stage
    # learns from one-frame videos, which a model trained on clips alone draws as fragments.
    image_share: float = 0.25
    image_factor: int = 4
    # Size of the world's actors, a multiple of their size in the world (``world2.random_clip``).
    object_scale: float = 1.0
    # Amplitude of the ramps laid over the world's backgrounds (``world2.lay_out``; 0: flat, the
    # world itself), so that a token can tell where and when it is.
    layout: float = 0.0
    # "trained": the text encoder learns with the transformer; "frozen": it keeps the seed's initial
    # weights and is never trained (a warm restart drops the warm model's), as Wan keeps its
    # pretrained umT5 frozen, so no word's encoding can fade because the denoiser ignores it.
    text_encoder: str = "trained"
    # Attention heads the transformer's width is split into (``wan_model.split_heads``; None: a new
    # run's own 4, a warm restart's the warm model's, a resumed run's what it began with). Fewer,
    # wider heads give 3D RoPE more rotation frequencies for time and space, at the same weights.
    heads: int | None = None
    # Each block of clips is encoded once and trained on this many consecutive steps (new noise
    # and timesteps each time), to spare the VAE's encoder.
    reuse: int = 2
    seed: int = 0
    checkpoint_every: int = 60
    export_every: int = 100
    log_every: int = 10
    tiny: bool = False
    latent_channels: int = wan_model.LATENT_CHANNELS
    # Decay of the exported weights' moving average (0: export the trained weights themselves).
    ema_decay: float = 0.999
    device: str = "cpu"
    mixed_precision: str = "no"


def data_rng(plan: Plan, phase: int, step: int) -> np.random.Generator:
    return np.random.default_rng([plan.seed, phase, step])


def is_image_step(plan: Plan, step: int) -> bool:
    """Whether global step ``step`` trains on still images (a function of the seed and the step)."""
    return plan.image_share > 0 and data_rng(plan, 4, step).random() < plan.image_share


def lr_at(plan: Plan, step: int) -> float:
    """Linear warm-up, then cosine decay over ``decay_steps`` to ``min_lr`` (default a tenth of
    ``lr``), which it keeps: a function of the global step alone."""
    if step < plan.warmup:
        return plan.lr * (step + 1) / plan.warmup
    floor = plan.lr / 10 if plan.min_lr is None else plan.min_lr
    frac = min(1.0, (step - plan.warmup) / max(1, plan.decay_steps - plan.warmup))
    return floor + (plan.lr - floor) * 0.5 * (1 + math.cos(math.pi * frac))


def noise_levels(backbone: WanBackbone, plan: Plan, n: int, generator: torch.Generator) -> torch.Tensor:
    """Timesteps of a batch: the backbone's shifted draw, with :attr:`Plan.high_noise_share` of them
    (each clip by its own coin) drawn uniformly from noise levels ``[high_noise_from, 1)`` instead."""
    t = backbone.sample_timesteps(n, generator)
    if plan.high_noise_share <= 0:
        return t
    from videomage_wan.flow import train_steps

    coin, level = torch.rand(n, generator=generator), torch.rand(n, generator=generator)
    high = (plan.high_noise_from + (1 - plan.high_noise_from) * level) * train_steps(backbone.scheduler_config)
    return torch.where((coin < plan.high_noise_share).to(t.device), high.to(t.device, t.dtype), t)


def make_backbone(pipe, folder: Path) -> WanBackbone:
    return WanBackbone(transformer=pipe.transformer, vae=pipe.vae, text_encoder=pipe.text_encoder,
                       tokenizer=pipe.tokenizer, scheduler_config=dict(pipe.scheduler.config),
                       model_ref=str(folder), spec=wan_model.SPEC)


def size_of(plan: Plan) -> int:
    return 32 if plan.tiny else 64


def vae_frames(rng: np.random.Generator, n: int, size: int, world: dict | None = None) -> torch.Tensor:
    """``[n, 3, 1, H, W]`` in [-1, 1]: half random-colour frames (colours the base model never sees
    must pass the VAE too), half single frames of world clips (of the world ``world`` names:
    options of ``world2.random_clip``)."""
    half = n // 2
    any_colour = world2.autoencoder_clips(rng, half, size=size, frames=1)[:, 0]
    clips = [world2.random_clip(rng, size=size, **(world or {})).frames for _ in range(n - half)]
    world_frames = torch.stack([torch.from_numpy(c[int(rng.integers(len(c)))]) for c in clips])
    return torch.cat([any_colour, world_frames])[:, :, None] * 2 - 1


def pixel_weights(x: torch.Tensor, object_weight: float) -> torch.Tensor:
    """``[B, 1, F, H, W]``: ``object_weight`` where a pixel of ``x`` ``[B, 3, F, H, W]`` differs from its
    frame's border colour (the background's, read from the edge pixels) by more than 0.1, else 1."""
    edge = torch.cat([x[..., 0, :], x[..., -1, :], x[..., :, 0], x[..., :, -1]], dim=-1)  # [B, 3, F, 4W]
    border = edge.median(dim=-1).values[..., None, None]
    off = (x - border).abs().amax(dim=1, keepdim=True) > 0.1
    return 1 + (object_weight - 1) * off.float()


def encode_frames(vae, x: torch.Tensor) -> torch.Tensor:
    """The posterior means of ``[B, 3, F, H, W]``; the VAE codes frames alone, so they fold into the batch."""
    b, _, f = x.shape[:3]
    z = vae.encode(x.permute(0, 2, 1, 3, 4).reshape(b * f, 3, 1, *x.shape[3:])).latent_dist.mean
    return z.reshape(b, f, *z.shape[1:]).squeeze(3).permute(0, 2, 1, 3, 4)


def train_vae(pipe, plan: Plan, out: Path) -> None:
    """Reconstruction of single frames, on the decoder's raw output (``decode`` clamps to [-1, 1],
    which gives saturated pixels no gradient), through the posterior mean: the denoiser only ever
    sees ``latent_dist.mode()``."""
    from diffusers.models.autoencoders.autoencoder_kl_wan import unpatchify

    vae = pipe.vae.train().requires_grad_(True)
    size = size_of(plan)
    trainer: Trainer

    def step_loss(step: int, generator: torch.Generator) -> ObjectiveOutput:
        for group in trainer.optimizer.param_groups:
            group["lr"] = plan.vae_lr * min(1.0, (step + 1) / 30)
        x = vae_frames(data_rng(plan, 1, step), plan.vae_batch, size, world_of(plan)).to(plan.device)
        z = vae.encode(x).latent_dist.mean
        vae.clear_cache()
        vae._conv_idx = [0]
        raw = vae.decoder(vae.post_quant_conv(z), feat_cache=vae._feat_map, feat_idx=vae._conv_idx, first_chunk=True)
        vae.clear_cache()
        error = (unpatchify(raw, patch_size=vae.config.patch_size) - x).pow(2)
        mse = error.mean()
        weights = pixel_weights(x, plan.object_weight)
        weighted = (error * weights).sum() / (weights.sum() * x.shape[1])
        return ObjectiveOutput(loss=weighted + plan.kl_weight * z.pow(2).mean(), logs={"mse": float(mse.detach())})

    config = TrainerConfig(steps=plan.vae_steps, checkpoint_every=plan.checkpoint_every, seed=plan.seed,
                           description="v2 vae")
    trainer = Trainer(config, [ParamGroup(name="vae", params=list(vae.parameters()), lr=plan.vae_lr)], step_loss,
                      checkpoint_dir=out / "vae")
    history = trainer.fit()
    vae.eval().requires_grad_(False)
    fix_latent_stats(pipe, plan)
    if history:
        from toyworld.evaluate_v2 import reconstruction_scores

        with torch.no_grad():
            x = world2.batch(data_rng(plan, 0, 1), 4, size=size, **world_of(plan))["video"].permute(0, 2, 1, 3, 4).to(plan.device) * 2 - 1
            error = float(((vae.decode(vae.encode(x).latent_dist.mode()).sample - x) / 2).abs().mean())
        scores = reconstruction_scores(make_backbone(pipe, out / "model"), n=8 if plan.tiny else 24, world=world_of(plan))
        print(json.dumps({"phase": "vae", "final_mse": round(sum(h["mse"] for h in history[-20:]) / len(history[-20:]), 5),
                          "world_clip_mean_abs_error": round(error, 4), "reconstruction_scores": scores}), flush=True)


@torch.no_grad()
def fix_latent_stats(pipe, plan: Plan) -> None:
    """Per-channel mean and std of world latents into the VAE config (the backbone normalises by them)."""
    clips = world2.batch(data_rng(plan, 0, 0), 8, size=size_of(plan), **world_of(plan))["video"].to(plan.device)
    z = encode_frames(pipe.vae, clips.permute(0, 2, 1, 3, 4) * 2 - 1)
    mean = z.mean(dim=(0, 2, 3, 4)).tolist()
    std = z.std(dim=(0, 2, 3, 4)).clamp_min(1e-3).tolist()
    pipe.vae.register_to_config(latents_mean=[round(v, 5) for v in mean], latents_std=[round(v, 5) for v in std])


#: What a model folder's VAE was trained with, where its ``training.json`` does not say: the first
#: v2 models' 400 unweighted steps.
FIRST_VAE_RECIPE = {"vae_steps": 400, "object_weight": 1.0}


def vae_recipe(plan: Plan) -> dict:
    """The settings that make a VAE (and so the latent space a denoiser learns)."""
    return {"latent_channels": plan.latent_channels, "vae_steps": plan.vae_steps, "object_weight": plan.object_weight}


def recipe_of(folder: Path) -> dict:
    """The VAE recipe a saved model records in ``training.json`` (older folders: :data:`FIRST_VAE_RECIPE`)."""
    record = Path(folder) / TRAINING_RECORD
    saved = json.loads(record.read_text()).get("vae") if record.exists() else None
    return saved or {"latent_channels": latent_channels_of(folder), **FIRST_VAE_RECIPE}


def world_of(plan: Plan) -> dict[str, float]:
    """The options of the world ``plan`` trains on that differ from the world itself (the scale
    of its actors, its backgrounds' layout): keyword arguments of ``world2.random_clip``, as
    ``training.json`` records them."""
    return {k: getattr(plan, k) for k, own in WORLD_OPTIONS.items() if getattr(plan, k) != own}


def export(pipe, folder: Path, step: int, *, dtype: torch.dtype = torch.float32, recipe: dict | None = None,
           world: dict | None = None) -> Path:
    """Write the model into ``folder`` atomically: build it beside, then swap it in. ``training.json``
    records the step, the VAE's recipe and the world's options where they are not the world's own
    (:func:`world_of`)."""
    if dtype != torch.float32:
        # Cast copies, so the training weights stay float32.
        import copy

        pipe = copy.deepcopy(pipe)
        pipe.transformer.to(dtype), pipe.text_encoder.to(dtype)

    def write(staging: Path) -> None:
        wan_model.save_pipeline(pipe, staging)
        record = {"step": step, **({"vae": recipe} if recipe else {}), **(world or {})}
        (staging / TRAINING_RECORD).write_text(json.dumps(record) + "\n")

    return write_folder(folder, write)


def load_vae(pipe, folder: Path) -> None:
    """Copy a saved model's VAE and its latent statistics into ``pipe``."""
    from diffusers import AutoencoderKLWan

    vae = AutoencoderKLWan.from_pretrained(folder, subfolder="vae")
    pipe.vae.load_state_dict(vae.state_dict())
    pipe.vae.register_to_config(latents_mean=vae.config.latents_mean, latents_std=vae.config.latents_std)


def load_weights(pipe, folder: Path) -> int:
    """Copy a saved model's weights into ``pipe``; return the step it was saved at (0 if unknown)."""
    from diffusers import WanTransformer3DModel
    from transformers import UMT5EncoderModel

    pipe.transformer.load_state_dict(WanTransformer3DModel.from_pretrained(folder, subfolder="transformer").float().state_dict())
    pipe.text_encoder.load_state_dict(UMT5EncoderModel.from_pretrained(folder, subfolder="text_encoder").float().state_dict())
    load_vae(pipe, folder)
    record = folder / TRAINING_RECORD
    return int(json.loads(record.read_text()).get("step", 0)) if record.exists() else 0


def load_blocks(pipe, folder: Path) -> list[str]:
    """Start the transformer and text encoder from a saved model's, where shapes match: a model with
    another latent width keeps its own patch embedding and output head (returned: what was not copied)."""
    from diffusers import WanTransformer3DModel
    from transformers import UMT5EncoderModel

    saved = WanTransformer3DModel.from_pretrained(folder, subfolder="transformer").float().state_dict()
    own = pipe.transformer.state_dict()
    same = {k: v for k, v in saved.items() if k in own and own[k].shape == v.shape}
    pipe.transformer.load_state_dict({**own, **same})
    pipe.text_encoder.load_state_dict(UMT5EncoderModel.from_pretrained(folder, subfolder="text_encoder").float().state_dict())
    return sorted(set(own) - set(same))


EMA_FILE = "ema.safetensors"


class MovingAverage:
    """An exponential moving average of ``params``, saved beside the trainer's checkpoint.

    The decay warms up as ``min(decay, (1 + n) / (10 + n))`` over the first updates ``n``, so a new
    average follows the weights closely before it starts to smooth them. Saved with the step it
    belongs to: a checkpoint of another step (a crash between the two writes) starts a new average
    from the resumed weights instead of mixing in a stale one.
    """

    def __init__(self, params: list[torch.nn.Parameter], decay: float) -> None:
        self.params, self.decay = params, decay
        self.shadow = [p.detach().clone() for p in params]
        self.updates = 0

    @torch.no_grad()
    def update(self) -> None:
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self.shadow, [p.detach() for p in self.params], 1 - d)
        self.updates += 1

    @contextmanager
    def applied(self):
        """The averaged weights in the modules for the duration (then the trained ones again)."""
        saved = [p.detach().clone() for p in self.params]
        with torch.no_grad():
            for p, s in zip(self.params, self.shadow):
                p.copy_(s)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, s in zip(self.params, saved):
                    p.copy_(s)

    def save(self, path: Path, step: int) -> None:
        from safetensors.torch import save_file

        tensors = {str(i): s.contiguous() for i, s in enumerate(self.shadow)}
        meta = {"step": str(step), "updates": str(self.updates), "decay": repr(self.decay)}
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))

    def load(self, path: Path, step: int) -> bool:
        """Restore the average saved at ``step``; ``False`` (a new average) when there is none for it."""
        from safetensors import safe_open

        if not path.exists():
            return False
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata()
            if int(meta["step"]) != step or len(list(fh.keys())) != len(self.shadow):
                return False
            tensors = [fh.get_tensor(str(i)) for i in range(len(self.shadow))]
        if any(t.shape != s.shape for t, s in zip(tensors, self.shadow)):
            return False
        self.shadow = [t.to(s.device) for t, s in zip(tensors, self.shadow)]
        self.updates = int(meta["updates"])
        return True


def anchor_frames(plan: Plan, step: int, clips: int, frames: int) -> list[int]:
    """For each of ``clips`` clips of ``frames`` frames at global ``step``: the frame given clean
    (:attr:`Plan.anchor_share` of them, each drawing its own from all ``frames``), or -1 for none.
    A function of the seed and the step, so a resumed run draws the same."""
    if plan.anchor_share <= 0 or frames < 2:
        return [-1] * clips
    rng = data_rng(plan, 6, step)
    coin, frame = rng.random(clips), rng.integers(0, frames, clips)
    return [int(k) if c < plan.anchor_share else -1 for c, k in zip(coin, frame)]


def anchored(latents: torch.Tensor, noisy: torch.Tensor, frames: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``noisy`` ``[B, C, F, h, w]`` with each clip's frame ``frames[i]`` (-1: none) replaced by its
    clean ``latents``, and the loss's mask ``[B, 1, F, 1, 1]``: 0 on the frames given, 1 elsewhere."""
    keep = torch.ones(latents.shape[0], 1, latents.shape[2], 1, 1, device=latents.device)
    if all(k < 0 for k in frames):  # nothing given (the default): no copy of the batch
        return noisy, keep
    noisy = noisy.clone()
    for i, k in enumerate(frames):
        if k >= 0:
            noisy[i, :, k] = latents[i, :, k]
            keep[i, :, k] = 0
    return noisy, keep


def flow_loss(error: torch.Tensor, covered: torch.Tensor, weight: float, keep: torch.Tensor) -> torch.Tensor:
    """The mean of ``error`` ``[B, C, F, h, w]`` weighted by :func:`object_weights`, over the frames
    ``keep`` ``[B, 1, F, 1, 1]`` marks (the frames given clean are left out); weight 1 and every
    frame kept: plain flow matching."""
    return (error * object_weights(covered, weight) * keep).sum() / keep.expand_as(error).sum()


def object_weights(covered: torch.Tensor, weight: float) -> torch.Tensor:
    """``[B, 1, F, h, w]``: ``weight`` on the latents ``covered`` marks (an object's pixels reach them),
    1 elsewhere, divided by its mean so the loss keeps its scale."""
    w = 1 + (weight - 1) * covered.float()
    return w / w.mean()


def object_errors(error: torch.Tensor, covered: torch.Tensor) -> torch.Tensor:
    """Per clip, the mean of ``error`` ``[B, C, F, h, w]`` over the latents ``covered`` marks: ``[B]``."""
    covered = covered.expand_as(error).float()
    return (error * covered).flatten(1).sum(1) / covered.flatten(1).sum(1).clamp_min(1)


def direction_hinge(own: torch.Tensor, opposite: torch.Tensor, margin: float) -> torch.Tensor:
    """Mean over clips of ``max(0, margin * own - (opposite - own))``, ``margin * own`` held constant:
    zero once the opposite word's object error exceeds the own word's by ``margin`` of it."""
    return F.relu(margin * own.detach() - (opposite - own)).mean()


def train_denoiser(pipe, plan: Plan, out: Path, offset: int, recipe: dict | None = None) -> None:
    backbone = make_backbone(pipe, out / "model")
    transformer = pipe.transformer.train().requires_grad_(True)
    learns_text = plan.text_encoder == "trained"
    text_encoder = pipe.text_encoder.train(learns_text).requires_grad_(learns_text)
    size = size_of(plan)
    trainer: Trainer
    started = [time.time(), 0, False]
    window: list[float] = []
    gaps: list[float] = []
    drops = attrs.evolve(world2.Drops(), colour=plan.colour_drop)
    cache: dict[int, tuple[torch.Tensor, torch.Tensor, list[str]]] = {}
    mean, std = backbone._stats(torch.zeros(1, device=plan.device))
    params = [*transformer.parameters(), *(text_encoder.parameters() if learns_text else [])]
    average = MovingAverage(params, plan.ema_decay) if plan.ema_decay > 0 else None

    @torch.no_grad()
    def block(index: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        # The backbone's encode_video normalisation, on the whole batch at once (it loops per clip).
        if index not in cache:
            cache.clear()
            data = world2.batch(data_rng(plan, 2, index), plan.batch, size=size, drops=drops, **world_of(plan))
            z = encode_frames(pipe.vae, data["video"].permute(0, 2, 1, 3, 4).to(plan.device) * 2 - 1)
            covered = covered_latents(data["masks"].to(plan.device), z.shape[-2:])
            cache[index] = ((z - mean) / std, covered, data["captions"])
        return cache[index]

    @torch.no_grad()
    def images(step: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        data = world2.image_batch(data_rng(plan, 5, step), plan.batch * plan.image_factor, size=size, drops=drops,
                                  **world_of(plan))
        z = encode_frames(pipe.vae, data["video"].permute(0, 2, 1, 3, 4).to(plan.device) * 2 - 1)
        return (z - mean) / std, covered_latents(data["masks"].to(plan.device), z.shape[-2:]), data["captions"]

    def step_loss(step: int, generator: torch.Generator) -> ObjectiveOutput:
        global_step = offset + step
        for group in trainer.optimizer.param_groups:
            group["lr"] = lr_at(plan, global_step)
        if is_image_step(plan, global_step):
            latents, covered, captions = images(global_step)
        else:
            latents, covered, captions = block(global_step // plan.reuse)
        rng = data_rng(plan, 3, global_step)
        captions = ["" if rng.random() < plan.caption_dropout else c for c in captions]
        noise = torch.randn(latents.shape, generator=generator).to(plan.device)
        t = noise_levels(backbone, plan, latents.shape[0], generator)
        noisy = backbone.add_noise(latents, noise, t)
        noisy, keep = anchored(latents, noisy, anchor_frames(plan, global_step, latents.shape[0], latents.shape[2]))
        target = backbone.training_target(latents, noise, t)
        pred = backbone.predict(noisy, t, backbone.text.run(captions))
        error = (pred.float() - target.float()).pow(2)
        loss = flow_loss(error, covered, plan.object_loss_weight, keep)
        logs: dict[str, float] = {}
        turned = [i for i, c in enumerate(captions) if c and opposite_direction(c) != c]
        if plan.direction_weight > 0 and turned:
            index = torch.tensor(turned, device=latents.device)
            opposite = backbone.predict(noisy[index], t[index], backbone.text.run([opposite_direction(captions[i]) for i in turned]))
            scored = covered[index] * keep[index]  # not the frames given clean
            own_err = object_errors(error[index], scored)
            opp_err = object_errors((opposite.float() - target[index].float()).pow(2), scored)
            hinge = direction_hinge(own_err, opp_err, plan.direction_margin)
            loss = loss + plan.direction_weight * hinge
            logs = {"hinge": float(hinge.detach()), "gap": float((opp_err - own_err).mean().detach())}
        window.append(float(loss.detach()))
        if "gap" in logs:  # a batch with no direction word has none
            gaps.append(logs["gap"])
        return ObjectiveOutput(loss=loss, logs=logs)

    def exported(step: int) -> None:
        transformer.eval(), text_encoder.eval()
        with average.applied() if average is not None else nullcontext():
            export(pipe, out / "model", step, recipe=recipe, world=world_of(plan))
        transformer.train(), text_encoder.train(learns_text)

    def every(step: int) -> None:  # after each optimizer step
        if average is not None:
            if not started[2]:  # the first step of this run: the average of the step it resumed from
                started[2] = True
                resumed = average.load(out / "denoiser" / EMA_FILE, step - 1)
                print(json.dumps({"moving_average": "resumed" if resumed else "new", "step": offset + step - 1}), flush=True)
                if not resumed:
                    average.shadow = [p.detach().clone() for p in params]
            average.update()
            if step % plan.checkpoint_every == 0:
                average.save(out / "denoiser" / EMA_FILE, step)  # beside the trainer's checkpoint of this step
        if step % plan.log_every == 0:
            elapsed = time.time() - started[0]
            done = step - started[1]
            started[:2] = [time.time(), step]
            print(json.dumps({"phase": "denoiser", "step": offset + step, "loss": round(sum(window) / max(1, len(window)), 5),
                              "lr": round(lr_at(plan, offset + step), 6),
                              **({"direction_gap": round(sum(gaps) / max(1, len(gaps)), 5)} if plan.direction_weight > 0 else {}),
                              "s_per_step": round(elapsed / max(1, done), 3),
                              "time": time.strftime("%H:%M:%S")}), flush=True)
            window.clear(), gaps.clear()
        if step % plan.export_every == 0:
            exported(offset + step)

    config = TrainerConfig(steps=plan.steps - offset, checkpoint_every=plan.checkpoint_every, seed=plan.seed,
                           description="v2 denoiser",
                           validate_every=1 if average is not None else math.gcd(plan.log_every, plan.export_every),
                           mixed_precision=plan.mixed_precision)
    groups = [ParamGroup(name="transformer", params=list(transformer.parameters()), lr=plan.lr)]
    if learns_text:
        groups.append(ParamGroup(name="text_encoder", params=list(text_encoder.parameters()), lr=plan.lr))
    trainer = Trainer(config, groups, step_loss, checkpoint_dir=out / "denoiser", validate=every)
    trainer.fit()
    if average is not None and not started[2]:  # nothing left to train: the average of the last run
        if not average.load(out / "denoiser" / EMA_FILE, trainer.step):
            average.shadow = [p.detach().clone() for p in params]
    elif average is not None:
        average.save(out / "denoiser" / EMA_FILE, trainer.step)
    exported(plan.steps)


def heads_to_train(out: Path, plan: Plan, warm: Path | None) -> int:
    """The attention heads a run trains with: a begun run's own (refusing another split, whose
    weights would load unchanged and be read otherwise), else ``plan.heads``, else the warm model's,
    else the model's default."""
    began, denoiser = out / "plan.json", out / "denoiser"
    # Begun: a checkpoint, or a warm restart's record of the model it started from.
    if ((denoiser / "checkpoint.safetensors").exists() or (denoiser / "offset.json").exists()) and began.exists():
        recorded = json.loads(began.read_text()).get("heads") or wan_model.split_heads(tiny=plan.tiny)[0]
        if plan.heads is not None and plan.heads != recorded:
            raise SystemExit(f"{out} holds a denoiser trained with {recorded} attention heads; --heads {plan.heads} "
                             f"would resume it split otherwise (the same weights, read by other heads). Give "
                             f"--heads {recorded}, or another --out (with --warm {out / 'model'}) for a new split")
        return recorded
    if plan.heads is not None:
        return plan.heads
    return heads_of(warm) if warm is not None else wan_model.split_heads(tiny=plan.tiny)[0]


def train(out: str | Path, plan: Plan, *, warm: Path | None = None, blocks: Path | None = None) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    began = out / "plan.json"
    if (out / "denoiser" / "checkpoint.safetensors").exists() and began.exists():
        began_on = json.loads(began.read_text())
        # Resuming otherwise would train a denoiser of one world on another, or restore a
        # checkpoint of other trained weights (a frozen text encoder is not in it).
        for key, own in {**WORLD_OPTIONS, "text_encoder": "trained"}.items():
            was, flag = began_on.get(key, own), "--" + key.replace("_", "-")
            if was != getattr(plan, key):
                raise SystemExit(f"{out} holds a run begun with {flag} {was}; {flag} {getattr(plan, key)} would "
                                 f"resume it otherwise. Give {flag} {was}, or another --out for a new run")
    plan = attrs.evolve(plan, heads=heads_to_train(out, plan, warm))
    began.write_text(json.dumps(attrs.asdict(plan), indent=1) + "\n")
    # The same seed builds the same initial weights on every run; checkpoints restore the trained ones.
    pipe = wan_model.build_pipeline(plan.seed, tiny=plan.tiny, latent_channels=plan.latent_channels,
                                    heads=plan.heads).to(plan.device)
    initial_text = ({k: v.clone() for k, v in pipe.text_encoder.state_dict().items()}
                    if plan.text_encoder == "frozen" else None)
    offset_file = out / "denoiser" / "offset.json"
    has_checkpoint = (out / "denoiser" / "checkpoint.safetensors").exists()
    recipe_file = out / "vae" / "recipe.json"
    if has_checkpoint or warm is None:
        offset = json.loads(offset_file.read_text())["offset"] if offset_file.exists() else 0
        if offset:  # a warm-restarted run: the VAE and its statistics came from the warm folder
            warm_folder = Path(json.loads(offset_file.read_text())["warm"])
            load_weights(pipe, warm_folder)
            recipe = json.loads(recipe_file.read_text()) if recipe_file.exists() else recipe_of(warm_folder)
        elif has_checkpoint and (out / "model" / "vae").is_dir():
            # The denoiser has begun: its VAE is the one exported beside it, whatever --vae-steps
            # says now (a longer VAE phase would change the latents under a trained denoiser).
            load_vae(pipe, out / "model")
            recipe = json.loads(recipe_file.read_text()) if recipe_file.exists() else recipe_of(out / "model")
        else:
            train_vae(pipe, plan, out)  # (and its latents' statistics)
            recipe = vae_recipe(plan)
            if blocks is not None and not has_checkpoint:  # a new denoiser from an older model's blocks
                print(json.dumps({"blocks_from": str(blocks), "fresh": load_blocks(pipe, blocks)}), flush=True)
    else:
        offset = load_weights(pipe, warm)
        recipe = recipe_of(warm)
        offset_file.parent.mkdir(parents=True, exist_ok=True)
        offset_file.write_text(json.dumps({"offset": offset, "warm": str(Path(warm).resolve())}) + "\n")
        print(json.dumps({"warm_restart": str(warm), "step": offset}), flush=True)
    if initial_text is not None:  # frozen: the seed's own, whatever a warm model or an older run held
        pipe.text_encoder.load_state_dict(initial_text)
    recipe_file.parent.mkdir(parents=True, exist_ok=True)
    recipe_file.write_text(json.dumps(recipe) + "\n")
    train_denoiser(pipe, plan, out, offset, recipe)
    return out / "model"


def main(argv: list[str] | None = None) -> None:
    d = Plan()
    parser = argparse.ArgumentParser(prog="python -m toyworld.train_v2", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="run folder: checkpoints and model/")
    parser.add_argument("--steps", type=int, default=d.steps)
    parser.add_argument("--decay-steps", type=int, default=d.decay_steps)
    parser.add_argument("--vae-steps", type=int, default=d.vae_steps)
    parser.add_argument("--object-weight", type=float, default=d.object_weight,
                        help="the VAE's reconstruction weight of pixels off the border colour (objects)")
    parser.add_argument("--high-noise-share", type=float, default=d.high_noise_share,
                        help="share of each batch whose noise level is drawn uniformly from [--high-noise-from, 1)")
    parser.add_argument("--high-noise-from", type=float, default=d.high_noise_from)
    parser.add_argument("--object-loss-weight", type=float, default=d.object_loss_weight,
                        help="the denoiser's loss weight on latents an object reaches (1: plain flow matching)")
    parser.add_argument("--direction-weight", type=float, default=d.direction_weight,
                        help="weight of the direction-ranking hinge (0: off)")
    parser.add_argument("--direction-margin", type=float, default=d.direction_margin,
                        help="how much worse, as a share of the own caption's object error, the opposite "
                             "direction word's must be before the hinge is zero")
    parser.add_argument("--colour-drop", type=float, default=d.colour_drop,
                        help="chance that a training caption leaves its colour word out")
    parser.add_argument("--image-share", type=float, default=d.image_share,
                        help="share of steps that train on still images (one-frame clips) instead of clips")
    parser.add_argument("--image-factor", type=int, default=d.image_factor,
                        help="an image step's batch, in multiples of --batch")
    parser.add_argument("--object-scale", type=float, default=d.object_scale,
                        help="train on a world whose actors are this many times their size (0.25 to 2)")
    parser.add_argument("--anchor-share", type=float, default=d.anchor_share,
                        help="share of clips denoised with one frame given clean and left out of the loss "
                             "(as image-to-video trains), so the caption tells where the other frames' object is")
    parser.add_argument("--text-encoder", choices=("trained", "frozen"), default=d.text_encoder,
                        help="trained: it learns with the transformer; frozen: it keeps the seed's initial weights "
                             "(a warm restart drops the warm model's), so every word keeps a distinct encoding")
    parser.add_argument("--layout", type=float, default=d.layout,
                        help=f"train on a world whose backgrounds carry ramps of this amplitude (0 to "
                             f"{world2.MAX_LAYOUT}) along the width, the height and the frames; 0: flat")
    parser.add_argument("--heads", type=int, default=None,
                        help="attention heads the transformer's width of 128 is split into (1, 2, 4, 8 or 16; "
                             "default: the warm model's, or 4); fewer, wider heads give 3D RoPE more frequencies")
    parser.add_argument("--batch", type=int, default=d.batch)
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--min-lr", type=float, default=None,
                        help="the rate the cosine decays to over --decay-steps and then keeps (default: a tenth of "
                             "--lr); a warm restart past --decay-steps trains at it")
    parser.add_argument("--reuse", type=int, default=d.reuse, help="steps each encoded batch of clips is trained on")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    parser.add_argument("--export-every", type=int, default=d.export_every)
    parser.add_argument("--log-every", type=int, default=d.log_every)
    parser.add_argument("--warm", type=Path, default=None,
                        help="when OUT holds no denoiser checkpoint, start from this saved model (e.g. the shipped one)")
    parser.add_argument("--ema-decay", type=float, default=d.ema_decay,
                        help="decay of the exported weights' moving average; 0 exports the trained weights")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (train on a GPU where there is one)")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (GPUs)")
    parser.add_argument("--tiny", action="store_true", help="unit-test sizes (32x32 frames, tiny model)")
    parser.add_argument("--latent-channels", type=int, default=d.latent_channels,
                        help="the VAE's latent channels per 4x4 pixel patch (48 keeps every number of it)")
    parser.add_argument("--blocks-from", type=Path, default=None,
                        help="a new run's denoiser starts from this saved model's transformer blocks and text "
                             "encoder where shapes match (another latent width: patch embedding and head stay fresh)")
    args = parser.parse_args(argv)
    if not 0 <= args.high_noise_share <= 1 or not 0 <= args.high_noise_from < 1:
        parser.error(f"--high-noise-share must lie in [0, 1] and --high-noise-from in [0, 1) (noise levels; 1 is pure "
                     f"noise), got {args.high_noise_share} and {args.high_noise_from}")
    if not 0 <= args.colour_drop <= 1:
        parser.error(f"--colour-drop is a chance and must lie in [0, 1], got {args.colour_drop}")
    if not 0 <= args.image_share <= 1 or args.image_factor < 1:
        parser.error(f"--image-share is a share of steps and must lie in [0, 1], and --image-factor be at least 1, "
                     f"got {args.image_share} and {args.image_factor}")
    if not 0.25 <= args.object_scale <= 2:
        parser.error(f"--object-scale must lie in [0.25, 2] (actors must fit a 64-pixel frame), got {args.object_scale}")
    if not 0 <= args.anchor_share <= 1:
        parser.error(f"--anchor-share is a share of clips and must lie in [0, 1], got {args.anchor_share}")
    if not 0 <= args.layout <= world2.MAX_LAYOUT:
        parser.error(f"--layout must lie in [0, {world2.MAX_LAYOUT}] (the evaluation must still tell the "
                     f"background), got {args.layout}")
    if args.object_loss_weight <= 0 or args.direction_weight < 0 or args.direction_margin < 0:
        parser.error(f"--object-loss-weight must be above 0 and --direction-weight, --direction-margin at least 0, "
                     f"got {args.object_loss_weight}, {args.direction_weight}, {args.direction_margin}")
    if args.min_lr is not None and not 0 <= args.min_lr <= args.lr:
        parser.error(f"--min-lr must lie in [0, --lr] (the cosine decays from --lr to it), got {args.min_lr} "
                     f"with --lr {args.lr}")
    if args.heads is not None:
        try:
            wan_model.split_heads(args.heads, tiny=args.tiny)
        except ValueError as error:
            parser.error(f"--heads {args.heads}: {error}")
    torch.set_num_threads(args.threads)
    plan = Plan(steps=args.steps, decay_steps=args.decay_steps, vae_steps=args.vae_steps, object_weight=args.object_weight, batch=args.batch, lr=args.lr, min_lr=args.min_lr, reuse=args.reuse,
                seed=args.seed, checkpoint_every=args.checkpoint_every, export_every=args.export_every,
                log_every=args.log_every, tiny=args.tiny, latent_channels=args.latent_channels, ema_decay=args.ema_decay, device=args.device, mixed_precision="bf16" if args.bf16 else "no",
                high_noise_share=args.high_noise_share, high_noise_from=args.high_noise_from,
                object_loss_weight=args.object_loss_weight, direction_weight=args.direction_weight,
                direction_margin=args.direction_margin, colour_drop=args.colour_drop,
                image_share=args.image_share, image_factor=args.image_factor, object_scale=args.object_scale,
                layout=args.layout, anchor_share=args.anchor_share,
                text_encoder=args.text_encoder, heads=args.heads)
    warm = args.warm if args.warm is None or (args.warm / "transformer").is_dir() else None
    if args.warm is not None and warm is None:
        print(f"warm folder {args.warm} holds no model; training from scratch", file=sys.stderr)
    blocks = args.blocks_from
    if warm is not None and recipe_of(warm) != vae_recipe(plan):
        # An older model whose VAE was made otherwise (another latent width, fewer or unweighted
        # steps): a new VAE, and the denoiser from its blocks.
        print(f"warm folder {warm} has a VAE of {recipe_of(warm)}, this run makes {vae_recipe(plan)}: "
              "training a new VAE and starting the denoiser from its blocks", file=sys.stderr)
        warm, blocks = None, blocks or warm
    print(f"model written to {train(args.out, plan, warm=warm, blocks=blocks)}")


def latent_channels_of(folder: Path) -> int:
    return int(json.loads((Path(folder) / "transformer" / "config.json").read_text())["in_channels"])


def heads_of(folder: Path) -> int:
    return int(json.loads((Path(folder) / "transformer" / "config.json").read_text())["num_attention_heads"])


if __name__ == "__main__":
    main()
