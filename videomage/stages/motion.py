"""Appearance-agnostic motion learning (VideoMage §3.2).

1. **Textual inversion**: one token per entity (``person`` -> ``<motion:person>``) learned on one frame
   (the middle one) of the reference clip, base model frozen, no adapter, prompt ``c_ap``.
2. **Motion adapter** on the temporal roles, trained with the config's ``objective``, by default
   the paper's negative-CFG loss: the target ``(1 + omega) * eps - omega * eps_base(x_t, c_ap, t)``
   removes what the base model explains by the actors' appearance, so the adapter keeps the
   motion only.

The batches this stage hands its objectives (its contract with any loss):

* inversion (``inversion_objective``, context ``trained = ()``, every adapter off): ``latents``
  ``[1, C, 1, h, w]`` (the middle frame as a one-frame video), ``prompts`` ``[c_ap]``;
* motion (``objective``, context ``trained = ("motion",)``): ``latents`` ``[1, C, F, h, w]``
  (the whole clip), ``prompts`` ``[c_m]``, ``appearance_prompts`` ``[c_ap]``.

``c_ap`` = the appearance template with the entity tokens ("A static video of <motion:person>
and <motion:horse>"); ``c_m`` = the motion prompt with each entity word replaced by its token
("a <motion:person> is riding a <motion:horse>").

Entity tokens live in their own namespace (``<motion:...>``; subject tokens may not start so):
the reference clip "a lady is walking a dog" learns ``<motion:dog>``, which can never overwrite
the embedding of a subject called ``<dog>`` when both artifacts are installed to generate.
"""

from __future__ import annotations

import re

import attrs

from videomage.artifact import Artifact
from videomage.components import Adapter, Backbone, TrainingContext
from videomage.config import MotionConfig
from videomage.experts import expert_roles, resolve as resolve_experts
from videomage.errors import ConfigError
from videomage.media import read_video
from videomage.plugins import get_registry
from videomage.stages.common import StageOptions, TokenRows, encode_batched, seeded, validation
from videomage.stages.subject import _jsonable
from videomage.text import release_text_encoder
from videomage.trainer import ParamGroup, Trainer


#: How every entity token begins; subject tokens are refused when they begin so.
ENTITY_PREFIX = "<motion:"


def entity_token(word: str) -> str:
    """The motion stage's token for an entity word: ``person`` -> ``<motion:person>``."""
    return f"{ENTITY_PREFIX}{word.strip().replace(' ', '-')}>"


def motion_prompts(config: MotionConfig) -> tuple[str, str, dict[str, str]]:
    """``(c_m, c_ap, token -> entity word)`` for a motion config."""
    tokens = {entity_token(w): w for w in config.entities}
    c_m = config.prompt
    for token, word in tokens.items():
        pattern = rf"\b{re.escape(word)}\b"
        if not re.search(pattern, c_m):
            raise ConfigError(
                f"motion entity {word!r} does not appear in the motion prompt {config.prompt!r}; "
                f"list the words of the prompt that name the actors (e.g. --entities person,horse)"
            )
        c_m = re.sub(pattern, token, c_m, count=1)
    c_ap = config.appearance_template.format(entities=" and ".join(tokens))
    return c_m, c_ap, tokens


def learn_motion(backbone: Backbone, adapter: Adapter, config: MotionConfig, opts: StageOptions = StageOptions()) -> Artifact:
    """Invert the entity tokens, then train the motion adapter; return the artifact."""
    spec = backbone.video_spec
    frames = opts.frames or spec.frames
    clip = read_video(config.video, frames, spec.height, spec.width)  # checked before any work
    c_m, c_ap, tokens = motion_prompts(config)
    backbone.add_tokens(list(tokens), list(tokens.values()))
    registry = get_registry()
    objective = registry.create("objective", config.objective, **config.objective_options)
    inversion_objective = registry.create("objective", config.inversion_objective, **config.inversion_objective_options)
    latents = encode_batched(backbone, clip[None])
    opts.prepare(backbone)

    # 1. Textual inversion on the middle frame, with every adapter off. The frame is encoded
    # as a one-frame video (an image), which is also right for VAEs that compress time.
    if config.inversion_steps:
        middle = encode_batched(backbone, clip[None, frames // 2 : frames // 2 + 1])
        rows = TokenRows(backbone, list(tokens), config.inversion_lr)
        ctx = TrainingContext(backbone=backbone, adapter=adapter)

        def inversion_loss(step, generator):
            ctx.generator = generator
            return inversion_objective.loss(ctx, {"latents": middle, "prompts": [c_ap]})

        try:
            with adapter.disabled(backbone):
                # No validation samples here: the adapters are off, there is nothing to look at yet.
                inversion = opts.trainer_config(config.inversion_steps, "textual inversion", backbone=backbone,
                                                stream=f"motion-inversion/{c_m}")
                inversion = attrs.evolve(inversion, validate_every=None)
                Trainer(inversion, [rows.group], inversion_loss, checkpoint_dir=opts.path("ckpt-motion-inversion")).fit()
        finally:
            rows.close()

    # 2. The motion adapter on the temporal roles against the appearance-free target. The tokens
    # are fixed now: the text encoder has two prompts left to encode.
    release_text_encoder(backbone, [c_m, c_ap], opts.release_text_encoder)
    name = "motion"
    if name in adapter.adapter_names(backbone):
        adapter.remove(backbone, name)
    experts = resolve_experts(backbone, "temporal", config.experts)  # one expert of a two-expert model
    roles = expert_roles("temporal", experts)
    with seeded(opts.seed, name):  # the adapter's initial weights: a function of the seed
        adapter.attach(backbone, name, roles=roles, rank=config.rank)
    adapter.activate(backbone, {name: 1.0})
    ctx = TrainingContext(backbone=backbone, adapter=adapter, trained=(name,), experts=experts)

    def motion_loss(step, generator):
        ctx.generator = generator
        return objective.loss(ctx, {"latents": latents, "prompts": [c_m], "appearance_prompts": [c_ap]})

    history = Trainer(
        opts.trainer_config(config.steps, "motion", stream=f"motion/{c_m}", backbone=backbone),
        [ParamGroup(name=adapter.name, params=adapter.parameters(backbone, name), lr=config.lr)],
        motion_loss, checkpoint_dir=opts.path("ckpt-motion"),
        validate=validation(backbone, adapter, opts, name="motion", prompt=c_m, adapters={name: 1.0}),
    ).fit()
    return Artifact(
        kind="motion",
        backbone=backbone.name,
        fingerprint=backbone.fingerprint(),
        adapter=adapter.name,
        adapter_config={"rank": config.rank},
        roles=roles,
        tokens=tokens,
        adapter_tensors=adapter.state_dict(backbone, name),
        embeddings=backbone.token_embeddings(list(tokens)),
        info={"model": backbone.model_ref, "config": attrs.asdict(config, value_serializer=_jsonable),
              "motion_prompt": c_m, "appearance_prompt": c_ap, "seed": opts.seed,
              "final_loss": history[-1]["loss"] if history else None},
    )
