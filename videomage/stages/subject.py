"""Subject learning (VideoMage §3.1): a LoRA on the spatial roles plus a learned token.

Trainable: the subject adapter (spatial roles only) at ``lr`` and the token's embedding row at
``text_lr`` (about ten times lower). Loss: the config's ``objective``, by default the paper's
``L_sub + lambda_reg * L_reg`` (``denoise``): ``L_sub`` on the subject's images as one-frame
videos with prompt "A <toy>", ``L_reg`` on auxiliary videos with their captions. The auxiliary
videos come from ``prior_videos`` (a folder of clips, each with a same-named ``.txt`` caption) or
are generated once by the frozen base model from class-word prompts and cached.

The batch this stage hands its objective (its contract with any loss), one step at a time:

* ``latents``: ``[1, C, 1, h, w]``, one subject image encoded as a one-frame video;
* ``prompts``: ``["A <toy>"]`` (the config's ``prompt_template`` with the token);
* ``prior_latents`` ``[1, C, F, h, w]`` and ``prior_prompts`` (its caption): one auxiliary video,
  only for an objective whose ``reads("prior_latents")`` is true (making them costs sampling).

The context's ``trained`` is ``("subject",)``, the adapter being learned.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import torch

from videomage.artifact import Artifact
from videomage.components import Adapter, Backbone, TrainingContext
from videomage.config import SubjectConfig
from videomage.experts import expert_roles, resolve as resolve_experts
from videomage.errors import InputError
from videomage.media import VIDEO_SUFFIXES, read_images, read_video
from videomage.plugins import get_registry
from videomage.sampling import SamplingRequest
from videomage.stages.common import (
    StageOptions,
    TokenRows,
    cached_tensors,
    content_hash,
    encode_batched,
    pick,
    reads,
    sampling_settings,
    seeded,
    validation,
    weights_digest,
)
from videomage.trainer import ParamGroup, Trainer, stream_seed

__all__ = ["StageOptions", "learn_subject", "prior_latents"]


def prior_latents(backbone: Backbone, adapter: Adapter, config: SubjectConfig, opts: StageOptions) -> tuple[torch.Tensor, list[str]]:
    """Latents and captions of the auxiliary videos for ``L_reg``."""
    spec = backbone.video_spec
    frames = opts.frames or spec.frames
    if config.prior_videos is not None:
        folder = config.prior_videos
        clips = sorted(p for p in Path(folder).glob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
        if not clips:
            raise InputError(f"prior-video folder {str(folder)!r} has no videos ({', '.join(VIDEO_SUFFIXES)})")
        captions = []
        for clip in clips:
            caption = clip.with_suffix(".txt")
            if not caption.is_file():
                raise InputError(f"prior video {str(clip)!r} has no caption file {caption.name!r}; write its caption there")
            captions.append(caption.read_text().strip())
        videos = torch.stack([read_video(c, frames, spec.height, spec.width) for c in clips])
        return encode_batched(backbone, videos), captions

    prompt = config.prompt_template.format(token=config.class_word)
    # Each subject draws its own videos: seeds from (seed, "prior", token), never the raw --seed.
    seeds = [stream_seed(opts.seed, f"prior/{config.token}", i) for i in range(opts.prior_count)]
    key = content_hash("prior", weights_digest(backbone), sampling_settings(backbone, opts.sampler), prompt, seeds,
                       opts.prior_steps, frames, "trailing")
    sampler = get_registry().create("sampler", opts.sampler)

    def generate() -> dict[str, torch.Tensor]:
        from tqdm.auto import tqdm  # minutes on a real model: show them

        out = []
        for seed in tqdm(seeds, desc="prior videos", unit="video", disable=not opts.progress):
            request = SamplingRequest(prompt=prompt, steps=opts.prior_steps, seed=seed, frames=frames, progress=False,
                                      timestep_spacing="trailing")  # few steps: start at pure noise
            with adapter.disabled(backbone):
                out.append(sampler.sample(backbone, adapter, request))
        return {"latents": torch.cat(out)}

    latents = cached_tensors(opts.path(f"cache/prior-{key}.safetensors"), generate)["latents"]
    return latents.to(backbone.device, backbone.dtype), [prompt] * len(latents)


def learn_subject(backbone: Backbone, adapter: Adapter, config: SubjectConfig, opts: StageOptions = StageOptions()) -> Artifact:
    """Train one subject's adapter and token; return the artifact (the caller saves it)."""
    spec = backbone.video_spec
    images = read_images(config.images, spec.height, spec.width)  # inputs checked before any work
    objective = get_registry().create("objective", config.objective, **config.objective_options)
    name = "subject"
    backbone.add_tokens([config.token], [config.class_word])
    if name in adapter.adapter_names(backbone):
        adapter.remove(backbone, name)
    experts = resolve_experts(backbone, "spatial", config.experts)  # one expert of a two-expert model
    roles = expert_roles("spatial", experts)
    with seeded(opts.seed, config.token):  # the adapter's initial weights: a function of the seed
        adapter.attach(backbone, name, roles=roles, rank=config.rank)
    adapter.activate(backbone, {name: 1.0})

    image_latents = encode_batched(backbone, images)
    prior, prior_prompts = (None, None)
    if reads(objective, "prior_latents"):
        with torch.no_grad():
            prior, prior_prompts = prior_latents(backbone, adapter, config, opts)
    prompt = config.prompt_template.format(token=config.token)
    ctx = TrainingContext(backbone=backbone, adapter=adapter, trained=(name,), experts=experts)

    def step_loss(step: int, generator: torch.Generator):
        ctx.generator = generator
        i = pick(generator, len(image_latents))
        batch = {"latents": image_latents[i : i + 1], "prompts": [prompt]}
        if prior is not None:
            j = pick(generator, len(prior))
            batch.update(prior_latents=prior[j : j + 1], prior_prompts=[prior_prompts[j]])
        return objective.loss(ctx, batch)

    tokens = TokenRows(backbone, [config.token], config.text_lr)
    groups = [ParamGroup(name=adapter.name, params=adapter.parameters(backbone, name), lr=config.lr), tokens.group]
    opts.prepare(backbone)
    slug = config.token.strip("<>")
    validate = validation(backbone, adapter, opts, name=f"subject-{slug}", prompt=prompt, adapters={name: 1.0})
    try:
        trainer_config = opts.trainer_config(config.steps, f"subject {config.token}", stream=f"subject/{config.token}",
                                             backbone=backbone)
        history = Trainer(trainer_config, groups, step_loss,
                          checkpoint_dir=opts.path(f"ckpt-subject-{slug}"), validate=validate).fit()
    finally:
        tokens.close()
    return Artifact(
        kind="subject",
        backbone=backbone.name,
        fingerprint=backbone.fingerprint(),
        adapter=adapter.name,
        adapter_config={"rank": config.rank},
        roles=roles,
        tokens={config.token: config.class_word},
        adapter_tensors=adapter.state_dict(backbone, name),
        embeddings=backbone.token_embeddings([config.token]),
        info={"model": backbone.model_ref, "config": attrs.asdict(config, value_serializer=_jsonable),
              "seed": opts.seed, "final_loss": history[-1]["loss"] if history else None},
    )


def _jsonable(inst, field, value):
    return str(value) if isinstance(value, Path) else value
