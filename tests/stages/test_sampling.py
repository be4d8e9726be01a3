"""CFG and SCS sampling on a tiny model: equivalences, guidance that lowers its losses, seeds."""

from __future__ import annotations

import imageio.v3 as iio
import pytest
import torch

from benchmarks.scs_guidance import two_branch_adapters
from videomage.errors import ConfigError
from videomage.plugins import get_registry
from videomage_samplers.scs import SCSSampler, matched_positions, motion_prompt_for

PROMPT = "<toy> is chasing <dog> on the grass"
TOKENS = {"<toy>": "toy", "<dog>": "dog"}


@pytest.fixture
def two_adapters(backbone, adapter):
    return two_branch_adapters(backbone, adapter, TOKENS)


def cfg(backbone, adapter, adapters, prompt=PROMPT, **kw):
    request = {"prompt": prompt, "steps": 3, "frames": 2, "seed": 5, "progress": False, "adapters": adapters, **kw}
    return get_registry().create("sampler", "cfg").sample(backbone, adapter, request)


def scs(backbone, adapter, **kw):
    request = {"prompt": PROMPT, "steps": 3, "frames": 2, "seed": 5, "progress": False, "subject_adapter": "subjects",
               "motion_adapter": "motion", "tokens": TOKENS, **kw}
    return get_registry().create("sampler", "scs").sample(backbone, adapter, request)


def test_scs_reduces_to_plain_sampling_with_the_subject_adapter(two_adapters):
    backbone, adapter = two_adapters
    expected = cfg(backbone, adapter, {"subjects": 1.0})
    assert torch.equal(scs(backbone, adapter, tau=0, beta_s=1.0, beta_m=0.0), expected)


def test_scs_reduces_to_plain_sampling_with_the_motion_adapter(two_adapters):
    backbone, adapter = two_adapters
    expected = cfg(backbone, adapter, {"motion": 1.0}, prompt=motion_prompt_for(PROMPT, TOKENS))
    assert torch.equal(scs(backbone, adapter, tau=0, beta_s=0.0, beta_m=1.0), expected)


def guidance_case(two_adapters):
    backbone, adapter = two_adapters
    scheduler = backbone.make_scheduler()
    scheduler.set_timesteps(10)
    t = scheduler.timesteps[2]
    spec = backbone.video_spec
    latents = torch.randn(1, *backbone.latent_shape(3, spec.height, spec.width), generator=torch.Generator().manual_seed(1))
    motion_prompt = motion_prompt_for(PROMPT, TOKENS)
    with torch.no_grad():
        embeds = (backbone.encode_prompt([PROMPT]), backbone.encode_prompt([motion_prompt]))
    pos = matched_positions(backbone, PROMPT, motion_prompt, TOKENS)
    args = (t, embeds, ({"subjects": 1.0}, {"motion": 1.0}), pos, tuple(latents.shape[-2:]))
    return backbone, adapter, scheduler, latents, args


@pytest.mark.parametrize("checkpointing", [False, True])
def test_one_guidance_step_lowers_both_alignment_losses(two_adapters, checkpointing):
    backbone, adapter, scheduler, latents, (t, embeds, adapters, pos, size) = guidance_case(two_adapters)
    sampler = SCSSampler()

    def losses(x_sub, x_mot):
        with torch.no_grad():
            return [v.item() for v in sampler.alignment_losses(backbone, adapter, x_sub, x_mot, t.reshape(1), embeds, adapters, pos, size)]

    l_sm0, l_ms0 = losses(latents, latents)
    x_sub, x_mot = sampler.guide(backbone, adapter, latents, t, embeds, adapters, pos, 20.0, size, scheduler, norm="none",
                                 checkpointing=checkpointing)
    l_sm1, l_ms1 = losses(x_sub, x_mot)
    assert l_sm1 < l_sm0 and l_ms1 < l_ms0
    assert not torch.equal(x_sub, latents) and not torch.equal(x_mot, latents)


def test_checkpointed_guidance_takes_the_same_step(two_adapters):
    backbone, adapter, scheduler, latents, (t, embeds, adapters, pos, size) = guidance_case(two_adapters)
    plain = SCSSampler().guide(backbone, adapter, latents, t, embeds, adapters, pos, 20.0, size, scheduler, norm="none",
                               checkpointing=False)
    checkpointed = SCSSampler().guide(backbone, adapter, latents, t, embeds, adapters, pos, 20.0, size, scheduler, norm="none",
                                      checkpointing=True)
    for a, b in zip(plain, checkpointed):
        assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("request_value, used", [(None, True), (True, True), (False, False)])
def test_guided_steps_checkpoint_by_default(two_adapters, monkeypatch, request_value, used):
    backbone, adapter = two_adapters
    entered = []
    original = type(backbone).activation_checkpointing

    def spy(self):
        entered.append(True)
        return original(self)

    monkeypatch.setattr(type(backbone), "activation_checkpointing", spy)
    extra = {} if request_value is None else {"guidance_checkpointing": request_value}
    scs(backbone, adapter, tau=2, **extra)
    assert entered == ([True, True] if used else [])  # once per guided step


def test_fixed_seed_gives_identical_latents(two_adapters):
    backbone, adapter = two_adapters
    assert torch.equal(scs(backbone, adapter, tau=1), scs(backbone, adapter, tau=1))
    assert not torch.equal(scs(backbone, adapter, tau=0, seed=6), scs(backbone, adapter, tau=0, seed=7))


def test_positions_are_grouped_per_subject_in_prompt_order(two_adapters):
    backbone, _ = two_adapters
    motion_prompt = motion_prompt_for(PROMPT, TOKENS)
    reversed_tokens = dict(reversed(list(TOKENS.items())))  # the order of the mapping must not matter
    sub, mot = matched_positions(backbone, PROMPT, motion_prompt, reversed_tokens)
    assert sub == [backbone.word_positions(PROMPT, "<toy>"), backbone.word_positions(PROMPT, "<dog>")]
    assert mot == [backbone.word_positions(motion_prompt, "toy"), backbone.word_positions(motion_prompt, "dog")]
    assert sub[0][0] < sub[1][0] and mot[0][0] < mot[1][0]


def test_unmatched_tokens_are_clear_errors(two_adapters):
    backbone, adapter = two_adapters
    with pytest.raises(ConfigError, match="'<cat>' does not appear in the prompt"):
        scs(backbone, adapter, tau=1, tokens={**TOKENS, "<cat>": "cat"})
    with pytest.raises(ConfigError, match="cannot match subject token '<toy>'"):
        scs(backbone, adapter, tau=1, motion_prompt="a bird is chasing dog")


def test_unknown_request_key_is_refused(two_adapters):
    backbone, adapter = two_adapters
    with pytest.raises(ConfigError, match="unknown request key 'stpes'"):
        cfg(backbone, adapter, {}, stpes=3)


def test_generate_writes_mp4_with_requested_frames_and_size(two_adapters, tmp_path):
    from videomage.artifact import Artifact
    from videomage.stages.generate import generate

    backbone, adapter = two_adapters
    paths = {}
    for name, kind, role in (("subjects", "fused", "spatial"), ("motion", "motion", "temporal")):
        art = Artifact(kind=kind, backbone=backbone.name, fingerprint=backbone.fingerprint(), adapter=adapter.name,
                       adapter_config={"rank": 2}, roles=[role], tokens=TOKENS if kind == "fused" else {},
                       adapter_tensors=adapter.state_dict(backbone, name),
                       embeddings=backbone.token_embeddings(list(TOKENS)) if kind == "fused" else {})
        paths[name] = art.save(tmp_path / f"{name}.safetensors")
    spec = backbone.video_spec
    record = generate(backbone, adapter, prompt=PROMPT, out=tmp_path / "out" / "video.mp4", subjects=paths["subjects"],
                      motion=paths["motion"], options={"steps": 2, "frames": 3, "tau": 1, "progress": False}, gif=True)
    frames = iio.imread(record["files"]["mp4"], index=None, plugin="FFMPEG")
    assert frames.shape == (3, spec.height, spec.width, 3)
    assert (tmp_path / "out" / "video.json").exists() and (tmp_path / "out" / "video-frames.png").exists()
    assert (tmp_path / "out" / "video.gif").exists()


def test_batched_guidance_equals_one_video_at_a_time(backbone):
    from videomage_samplers.cfg import guided

    scheduler = backbone.make_scheduler()
    scheduler.set_timesteps(3)
    t = scheduler.timesteps[1]
    latents = torch.randn(2, 4, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    prompts = ["a red circle", "a blue square"]
    with torch.no_grad():
        both = guided(backbone, latents, t, backbone.encode_prompt(["", ""] + prompts), 7.5, scheduler)
        each = [guided(backbone, latents[i : i + 1], t, backbone.encode_prompt(["", p]), 7.5, scheduler)
                for i, p in enumerate(prompts)]
    assert not torch.allclose(each[0], each[1])
    assert torch.allclose(both, torch.cat(each), atol=1e-5)


# -- the typed request: concepts, and what each sampler does with them --------------------------
def test_typed_request_cfg_activates_every_concept_and_scs_splits_them(two_adapters):
    from videomage.sampling import Concept, SamplingRequest

    backbone, adapter = two_adapters
    concepts = {"subjects": (Concept(adapter="subjects", tokens=TOKENS),), "motion": Concept(adapter="motion")}
    request = SamplingRequest(prompt=PROMPT, steps=3, frames=2, seed=5, progress=False, **concepts)
    seen = []
    activate = type(adapter).activate

    def spy(self, b, weights):
        seen.append(dict(weights))
        return activate(self, b, weights)

    type(adapter).activate = spy
    try:
        both = get_registry().create("sampler", "cfg").sample(backbone, adapter, request)
        assert seen == [{"subjects": 1.0, "motion": 1.0}]  # CFG: every concept at once
        seen.clear()
        split = get_registry().create("sampler", "scs", tau=0).sample(backbone, adapter, request)
        assert {"subjects": 1.0} in seen and {"motion": 1.0} in seen  # SCS: one branch each
        assert {"subjects": 1.0, "motion": 1.0} not in seen
    finally:
        type(adapter).activate = activate
    assert torch.equal(both, cfg(backbone, adapter, {"subjects": 1.0, "motion": 1.0}))  # the same as 0.1's dict
    assert torch.equal(split, scs(backbone, adapter, tau=0))
    # Starting latents given in the request replace the seeded draw.
    noise = torch.randn(both.shape, generator=torch.Generator().manual_seed(9))
    own = get_registry().create("sampler", "cfg").sample(backbone, adapter, attrs_evolve(request, latents=noise, seed=0))
    again = get_registry().create("sampler", "cfg").sample(backbone, adapter, attrs_evolve(request, latents=noise, seed=1))
    assert torch.equal(own, again) and not torch.equal(own, both)


def attrs_evolve(record, **changes):
    import attrs

    return attrs.evolve(record, **changes)


def test_scs_refuses_a_request_without_both_concepts(two_adapters):
    from videomage.sampling import Concept, SamplingRequest

    backbone, adapter = two_adapters
    request = SamplingRequest(prompt=PROMPT, steps=2, frames=2, subjects=[Concept(adapter="subjects", tokens=TOKENS)])
    with pytest.raises(ConfigError, match="sampler 'scs' needs .* a subjects and a motion concept"):
        get_registry().create("sampler", "scs").sample(backbone, adapter, request)
