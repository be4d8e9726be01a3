"""Test-time fusion of N subject adapters into one (VideoMage §3.3).

Teachers: each subject's adapter with its token, all installed in the one model. Data: K videos
per teacher generated from "A <tok>" (cached). Student: one adapter on the spatial roles whose
initial weight change is the teachers' average (``Adapter.attach_average``). Loss:
``L_fusion + lambda_attn * L_attn``, where ``L_attn`` is computed on CutMix composites: a strip
of each subject's video, centred on the subject's mask, pasted side by side, with the prompt
"A <toy> and a <dog>" and each subject's mask in its strip.

The batches this stage hands its objectives (its contract with any loss), context
``trained = ("student",)``:

* ``distill_objective``: ``subjects``, a list with per subject ``latents`` ``[1, C, F, h, w]`` (one
  of its teacher's videos), ``prompts`` (``["A <toy>"]``) and ``teacher`` (the teacher adapter's name);
* ``attention_objective`` (when ``lambda_attn > 0``): ``latents`` (one composite clip),
  ``prompts`` (``["A <toy> and a <dog>"]``), ``masks`` ``[1, N, F, H, W]`` in ``[0, 1]`` and
  ``token_positions`` (per subject, its token's positions in the prompt).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import attrs
import torch

from videomage.artifact import Artifact
from videomage.components import Adapter, Backbone, ObjectiveOutput, TrainingContext
from videomage.config import FusionConfig
from videomage.experts import experts_of_roles
from videomage.errors import ArtifactError, ConfigError
from videomage.plugins import get_registry
from videomage.sampling import Concept, SamplingRequest
from videomage.stages.common import (
    StageOptions,
    cached_tensors,
    content_hash,
    encode_batched,
    pick,
    refuse_token_collisions,
    sampling_settings,
    validation,
    weights_digest,
)
from videomage.stages.subject import _jsonable
from videomage.text import release_text_encoder
from videomage.trainer import ParamGroup, Trainer, backward_now, stream_seed


def load_subjects(paths: Sequence[str | Path]) -> list[Artifact]:
    arts = [Artifact.load(p) for p in paths]
    if len(arts) < 2:
        raise ConfigError(f"fusion needs at least two subject artifacts, got {len(arts)}")
    for path, art in zip(paths, arts):
        if art.kind != "subject":
            raise ArtifactError(f"{str(path)!r} holds a {art.kind!r} concept; fusion takes subject artifacts")
    refuse_token_collisions([(str(p), a) for p, a in zip(paths, arts)])
    return arts


def strip(video: torch.Tensor, mask: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A full-height strip ``width`` wide centred on the mask's mean column (clamped to the frame)."""
    w = video.shape[-1]
    cols = mask.float().mean(dim=(0, 1))  # [W]
    centre = int((cols * torch.arange(w, device=cols.device)).sum() / cols.sum().clamp_min(1e-6)) if cols.sum() > 0 else w // 2
    left = min(max(centre - width // 2, 0), w - width)
    return video[..., left : left + width], mask[..., left : left + width]


def cutmix(videos: Sequence[torch.Tensor], masks: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste one strip per subject side by side: ``[F, 3, H, W]`` and masks ``[N, F, H, W]``."""
    n, w = len(videos), videos[0].shape[-1]
    widths = [w // n + (1 if i < w % n else 0) for i in range(n)]
    parts, out_masks, left = [], torch.zeros(n, *masks[0].shape, device=masks[0].device), 0
    for i, (video, mask) in enumerate(zip(videos, masks)):
        v, m = strip(video, mask, widths[i])
        parts.append(v)
        out_masks[i, ..., left : left + widths[i]] = m
        left += widths[i]
    return torch.cat(parts, dim=-1), out_masks


def fuse(backbone: Backbone, adapter: Adapter, subjects: Sequence[str | Path], config: FusionConfig,
         opts: StageOptions = StageOptions()) -> Artifact:
    """Distil the subject adapters into one student with attention regularisation."""
    arts = load_subjects(subjects)
    registry = get_registry()
    mask_source = registry.create("mask_source", config.mask_source, **config.mask_source_options)
    sampler = registry.create("sampler", opts.sampler)
    distill = registry.create("objective", config.distill_objective, **config.distill_options)
    attn = registry.create("objective", config.attention_objective, **config.attention_options)
    frames = opts.frames or backbone.video_spec.frames
    teachers, tokens, words = [], [], []
    for i, (path, art) in enumerate(zip(subjects, arts)):
        name = f"teacher_{i}"
        art.install(backbone, adapter, name, source=str(path))
        teachers.append(name)
        (token, word), = art.tokens.items()
        tokens.append(token)
        words.append(word)

    # Every prompt of the stage is known now (teachers, composite, validation).
    release_text_encoder(backbone, [*(f"A {t}" for t in tokens), "A " + " and a ".join(tokens)], opts.release_text_encoder)

    # Teacher videos (latents, pixels, masks), generated once per artifact and settings.
    data = []
    for i, (path, name) in enumerate(zip(subjects, teachers)):
        prompt = f"A {tokens[i]}"
        # Each teacher draws its own videos: seeds from (seed, "teacher", token).
        seeds = [stream_seed(opts.seed, f"teacher/{tokens[i]}", k) for k in range(config.videos_per_subject)]
        key = content_hash("teacher", weights_digest(backbone), sampling_settings(backbone, opts.sampler), Path(path), prompt,
                           seeds, opts.prior_steps, frames, config.mask_source, "trailing",
                           *([config.mask_source_options] if config.mask_source_options else []))

        def generate(name=name, prompt=prompt, token=tokens[i], word=words[i], seeds=seeds):
            from tqdm.auto import tqdm  # minutes on a real model: show them

            lat = []
            for seed in tqdm(seeds, desc=f"teacher videos ({prompt})", unit="video", disable=not opts.progress):
                adapter.activate(backbone, {name: 1.0})
                request = SamplingRequest(prompt=prompt, steps=opts.prior_steps, seed=seed, frames=frames, progress=False,
                                          subjects=[Concept(adapter=name, tokens={token: word})],
                                          timestep_spacing="trailing")
                lat.append(sampler.sample(backbone, adapter, request))
            lat = torch.cat(lat)
            with torch.no_grad():
                pixels = backbone.decode_latents(lat)
            masks = torch.stack([mask_source.masks(v, subject=word) for v in pixels])
            return {"latents": lat, "pixels": pixels, "masks": masks}

        data.append(cached_tensors(opts.path(f"cache/teacher-{key}.safetensors"), generate))

    # Composites: the k-th video of every subject side by side, encoded once.
    composites, composite_masks = [], []
    for k in range(config.videos_per_subject):
        video, masks = cutmix([d["pixels"][k] for d in data], [d["masks"][k] for d in data])
        composites.append(video)
        composite_masks.append(masks)
    composite_latents = encode_batched(backbone, torch.stack(composites))
    composite_masks = torch.stack(composite_masks)  # [K, N, F, H, W]
    composite_prompt = "A " + " and a ".join(tokens)
    positions = [backbone.word_positions(composite_prompt, t) for t in tokens]

    name = "student"
    if name in adapter.adapter_names(backbone):
        adapter.remove(backbone, name)
    adapter.attach_average(backbone, name, teachers)
    adapter.activate(backbone, {name: 1.0})
    # The student lives where its teachers live (in a two-expert model, the subjects' expert).
    roles = list(dict.fromkeys(r for a in arts for r in a.roles))
    ctx = TrainingContext(backbone=backbone, adapter=adapter, trained=(name,), experts=experts_of_roles(roles))

    def step_loss(step, generator):
        ctx.generator = generator
        items = []
        for i, d in enumerate(data):
            k = pick(generator, len(d["latents"]))
            items.append({"latents": d["latents"][k : k + 1], "prompts": [f"A {tokens[i]}"], "teacher": teachers[i]})
        # One term per forward pass, each backpropagated as soon as it is computed (backward_now):
        # the step holds one pass's graph, not N + 1, and the gradients are the sum's. L_fusion is
        # the mean over subjects, so each subject's term is its one-subject loss over N.
        loss = sum(backward_now(distill.loss(ctx, {"subjects": [item]}).loss / len(items)) for item in items)
        logs = {"l_fusion": float(loss)}
        if config.lambda_attn > 0:
            k = pick(generator, len(composite_latents))
            a = attn.loss(ctx, {"latents": composite_latents[k : k + 1], "prompts": [composite_prompt],
                                "masks": composite_masks[k : k + 1], "token_positions": positions})
            loss = loss + backward_now(config.lambda_attn * a.loss)
            logs.update(a.logs)
        return ObjectiveOutput(loss=loss, logs=logs)

    opts.prepare(backbone)
    history = Trainer(
        opts.trainer_config(config.steps, "fusion", stream="fusion/" + "+".join(tokens), backbone=backbone),
        [ParamGroup(name=adapter.name, params=adapter.parameters(backbone, name), lr=config.lr)],
        step_loss, checkpoint_dir=opts.path("ckpt-fusion"),
        validate=validation(backbone, adapter, opts, name="fusion", prompt=composite_prompt, adapters={name: 1.0}),
    ).fit()
    rank = sum(int(a.adapter_config.get("rank", 4)) for a in arts)
    return Artifact(
        kind="fused",
        backbone=backbone.name,
        fingerprint=backbone.fingerprint(),
        adapter=adapter.name,
        adapter_config={"rank": rank},
        roles=roles,
        tokens=dict(zip(tokens, words)),
        adapter_tensors=adapter.state_dict(backbone, name),
        embeddings=backbone.token_embeddings(tokens),
        info={"model": backbone.model_ref, "config": attrs.asdict(config, value_serializer=_jsonable),
              "subjects": [str(p) for p in subjects], "seed": opts.seed,
              "final_loss": history[-1]["loss"] if history else None},
    )
