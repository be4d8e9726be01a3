"""SCS on both bundled backbones: refinements survive every scheduler, tokens match their own spans,
one step size fits every video size, temporal maps keep the motion, float32 in a bf16 model."""

from __future__ import annotations

import pytest
import torch

import videomage_samplers.scs as scs_module
from benchmarks.scs_guidance import guided_update, two_branch_adapters
from videomage.config import SamplingConfig
from videomage.errors import ConfigError
from videomage.loading import load_backbone
from videomage.plugins import get_registry
from videomage_samplers.cfg import initial_latents, make_scheduler
from videomage_samplers.scs import SCS_DEFAULTS, SCSSampler, matched_positions, motion_prompt_for

PROMPT = "<toy> is chasing <dog> on the grass"
TOKENS = {"<toy>": "toy", "<dog>": "dog"}
FAMILIES = ("zeroscope", "wan")


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory, tiny_model_dir):
    from videomage_wan.tiny import save_tiny_wan

    return {"zeroscope": tiny_model_dir, "wan": save_tiny_wan(tmp_path_factory.mktemp("tiny-wan"))}


def loaded(model_dirs, family: str, dtype: str = "float32"):
    """A tiny backbone of ``family`` with the subject tokens and two random adapters."""
    return two_branch_adapters(load_backbone(str(model_dirs[family]), dtype=dtype), None,
                               {**TOKENS, "<a>": "dog", "<b>": "dog"})


def scs(backbone, adapter, **kw):
    request = {"prompt": PROMPT, "steps": 3, "seed": 5, "progress": False, "subject_adapter": "subjects",
               "motion_adapter": "motion", "tokens": TOKENS, **kw}
    return get_registry().create("sampler", "scs").sample(backbone, adapter, request)


# -- 1. a refinement survives the scheduler --------------------------------------------------
SCHEDULERS = [("zeroscope", n) for n in ("DDIMScheduler", "DDPMScheduler", "DPMSolverMultistepScheduler",
                                         "UniPCMultistepScheduler", "DEISMultistepScheduler", "EulerDiscreteScheduler",
                                         "EulerAncestralDiscreteScheduler")]
SCHEDULERS += [("wan", n) for n in ("UniPCMultistepScheduler", "DPMSolverMultistepScheduler", "FlowMatchEulerDiscreteScheduler")]


def sample_with_offset(backbone, adapter, monkeypatch, scheduler: str, offset: torch.Tensor | None, at: int = 2):
    """SCS's own loop with a constant model output and a guidance that only adds ``offset`` before step ``at``;
    returns the sample each step produced."""
    steps = []
    calls = iter(range(100))

    def guide(self, backbone, adapter, latents, *args, **kwargs):
        x = latents + offset if next(calls) == at and offset is not None else latents
        return x, x

    def step(*args, **kwargs):
        steps.append(real_step(*args, **kwargs))
        return steps[-1]

    real_step = scs_module.scheduler_step
    monkeypatch.setattr(SCSSampler, "guide", guide)
    monkeypatch.setattr(scs_module, "scheduler_step", step)
    monkeypatch.setattr(backbone, "predict", lambda x, t, e: torch.full_like(x, 0.3))
    scs(backbone, adapter, steps=10, tau=at + 1, scheduler=scheduler)
    return steps


@pytest.mark.parametrize("family, scheduler", SCHEDULERS)
def test_an_offset_added_before_step_survives_into_the_next_sample(model_dirs, monkeypatch, family, scheduler):
    backbone, adapter = loaded(model_dirs, family)
    spec = backbone.video_spec
    shape = (1, *backbone.latent_shape(spec.frames, spec.height, spec.width))
    offset = torch.randn(shape, generator=torch.Generator().manual_seed(3)) * 0.01
    plain = sample_with_offset(backbone, adapter, monkeypatch, scheduler, None)
    moved = sample_with_offset(backbone, adapter, monkeypatch, scheduler, offset)
    assert torch.equal(plain[1], moved[1])  # nothing differs before the offset
    survival = float(((moved[2] - plain[2]) * offset).sum() / offset.square().sum())
    assert survival >= 0.9, f"{scheduler} kept {survival:.0%} of the refinement"


@pytest.mark.parametrize("scheduler", ["HeunDiscreteScheduler", "PNDMScheduler"])
def test_schedulers_that_drop_a_refinement_are_refused(model_dirs, scheduler):
    backbone, adapter = loaded(model_dirs, "zeroscope")
    with pytest.raises(ConfigError, match=f"scheduler {scheduler} keeps only 0% of a refinement"):
        scs(backbone, adapter, tau=2, steps=10, scheduler=scheduler)
    scs(backbone, adapter, tau=1, steps=10, frames=2, height=32, width=32, scheduler=scheduler,
        step_from="shared")  # the refinement unused: no problem


# -- 2. tokens match the spans that replaced them --------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_two_subjects_of_one_class_get_their_own_class_word(model_dirs, family):
    backbone, _ = loaded(model_dirs, family)
    prompt, tokens = "<a> is chasing <b>", {"<a>": "dog", "<b>": "dog"}
    motion = motion_prompt_for(prompt, tokens)
    assert motion == "dog is chasing dog"
    sub, mot = matched_positions(backbone, prompt, None, tokens)
    assert sub == [backbone.word_positions(prompt, "<a>"), backbone.word_positions(prompt, "<b>")]
    assert mot == [backbone.word_positions(motion, "dog"), backbone.word_positions(motion, "dog", occurrence=1)]
    assert mot[0] and mot[1] and mot[0][-1] < mot[1][0]


@pytest.mark.parametrize("family", FAMILIES)
def test_a_class_word_already_in_the_prompt_is_not_the_subjects(model_dirs, family):
    backbone, _ = loaded(model_dirs, family)
    prompt, tokens = "a dog is chasing <a> and <toy>", {"<a>": "dog", "<toy>": "toy"}
    motion = motion_prompt_for(prompt, tokens)
    _, mot = matched_positions(backbone, prompt, None, tokens)
    first_dog = backbone.word_positions(motion, "dog")
    assert mot[0] == backbone.word_positions(motion, "dog", occurrence=1) and mot[0] != first_dog
    assert mot[1] == backbone.word_positions(motion, "toy")
    # a motion prompt of one's own: the k-th subject of a class gets the k-th occurrence of its word
    _, mine = matched_positions(backbone, prompt, "a toy is chasing a dog", tokens)
    assert mine == [backbone.word_positions("a toy is chasing a dog", "dog"), backbone.word_positions("a toy is chasing a dog", "toy")]


def test_a_token_glued_to_a_word_is_a_clear_error(model_dirs):
    backbone, _ = loaded(model_dirs, "zeroscope")
    with pytest.raises(ConfigError, match="'<toy>' becomes .* not a word of its own"):
        matched_positions(backbone, "<toy>s are chasing <dog>", None, TOKENS)


# -- 3. one step size for every video size ----------------------------------------------------
SIZES = {"zeroscope": ((2, 32, 32), (4, 32, 64), (4, 64, 64)), "wan": ((5, 32, 48), (9, 32, 96), (9, 64, 96))}


@pytest.mark.parametrize("family", FAMILIES)
def test_the_update_per_latent_element_stays_within_2x_across_three_video_sizes(model_dirs, family):
    backbone, adapter = loaded(model_dirs, family)
    defaults = (SCS_DEFAULTS["alpha_temporal"], SCS_DEFAULTS["alpha_cross"])
    normalised = [guided_update(backbone, adapter, *size, defaults, "rms") for size in SIZES[family]]
    paper = [guided_update(backbone, adapter, *size, 1e4, "none") for size in SIZES[family]]
    for term in (0, 1):  # temporal (x_sub), cross (x_mot)
        values = [u[term] for u in normalised]
        assert min(values) > 0 and max(values) / min(values) <= 2, (term, values)
    # the paper's rule does not: its temporal step shrinks about as fast as the video grows
    assert max(u[0] for u in paper) / min(u[0] for u in paper) > 2


def test_defaults_agree_between_the_sampler_the_config_and_the_cli():
    import argparse

    from videomage.commands import Generate

    config = SamplingConfig(prompt="x")
    parser = argparse.ArgumentParser()
    Generate().add_arguments(parser)
    cli = parser.parse_args(["--model", "m", "--prompt", "x", "--out", "o.mp4"])
    assert config.sampler == cli.sampler == "scs" and config.options == {} and cli.option == []
    record = get_registry().build_options("sampler", config.sampler, config.options)  # the options' one source
    for key in ("alpha_cross", "alpha_temporal", "guidance_norm", "tau", "beta_s", "beta_m"):
        assert getattr(record, key) == SCS_DEFAULTS[key], key
        assert getattr(cli, key) is None  # the deprecated flag sets nothing unless given


# -- 5. the mixture weights sum to one ---------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_betas_that_do_not_sum_to_one_are_refused(model_dirs, family):
    backbone, adapter = loaded(model_dirs, family)
    with pytest.raises(ConfigError, match=r"beta_s \+ beta_m must be 1.*0.5 \+ beta_m = 0.6 = 1.1"):
        scs(backbone, adapter, tau=0, beta_s=0.5, beta_m=0.6)
    with pytest.raises(ConfigError, match=r"sampler 'scs'.*beta_s \+ beta_m must be 1.*0.7 \+ beta_m = 0.5"):
        get_registry().build_options("sampler", "scs", SamplingConfig(prompt="x", options={"beta_s": 0.7}).options)
    scs(backbone, adapter, tau=0, beta_s=0.25, beta_m=0.75)


# -- float32 latents and refinements in a bf16 model -----------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_latents_and_refinements_stay_float32_in_a_bf16_model(model_dirs, family):
    backbone, adapter = loaded(model_dirs, family, dtype="bfloat16")
    assert backbone.dtype == torch.bfloat16
    assert scs(backbone, adapter, tau=1, steps=2).dtype == torch.float32
    scheduler = backbone.make_scheduler()
    noise, _ = initial_latents(backbone, {"frames": None, "height": None, "width": None, "seed": 0}, scheduler)
    assert noise.dtype == torch.float32  # the starting noise is not rounded to bf16 either
    spec = backbone.video_spec
    latents = torch.randn(1, *backbone.latent_shape(spec.frames, spec.height, spec.width),
                          generator=torch.Generator().manual_seed(1)) + 4  # bf16 spacing at 4 is 1/32
    scheduler = backbone.make_scheduler()
    scheduler.set_timesteps(10)
    motion = motion_prompt_for(PROMPT, TOKENS)
    with torch.no_grad():
        embeds = (backbone.encode_prompt([PROMPT]), backbone.encode_prompt([motion]))
    pos = matched_positions(backbone, PROMPT, motion, TOKENS)
    x_sub, x_mot = SCSSampler().guide(backbone, adapter, latents, scheduler.timesteps[2], embeds,
                                      ({"subjects": 1.0}, {"motion": 1.0}), pos, 1e-3, tuple(latents.shape[-2:]), scheduler)
    for x in (x_sub, x_mot):
        assert x.dtype == torch.float32
        change = float((x - latents).square().mean().sqrt())
        assert change == pytest.approx(1e-3, rel=1e-3)  # a step far below bf16's resolution, kept whole


# -- 6. internal few-step generations start at pure noise --------------------------------------
def test_trailing_spacing_starts_few_step_samples_at_the_last_timestep(model_dirs):
    backbone, _ = loaded(model_dirs, "zeroscope")
    request = {"scheduler": None, "steps": 25}
    assert int(make_scheduler(backbone, {**request, "timestep_spacing": None}).timesteps[0]) == 961  # the model's config
    assert int(make_scheduler(backbone, {**request, "timestep_spacing": "trailing"}).timesteps[0]) == 999
    with pytest.raises(ConfigError, match="timestep_spacing: expected one of"):
        get_registry().create("sampler", "cfg").sample(backbone, None, {"prompt": "x", "timestep_spacing": "last"})


def test_stages_ask_for_trailing_spacing_and_user_sampling_keeps_the_model_config(model_dirs, monkeypatch, tmp_path):
    from videomage.config import SubjectConfig
    from videomage.stages.subject import StageOptions, prior_latents
    from videomage_samplers.cfg import CFGSampler

    backbone, adapter = loaded(model_dirs, "zeroscope")
    seen = []
    monkeypatch.setattr(CFGSampler, "sample", lambda self, b, a, request: seen.append(request) or
                        torch.zeros(1, *b.latent_shape(2, 64, 64)))
    config = SubjectConfig(token="<toy>", class_word="toy", images=tmp_path, steps=1)
    prior_latents(backbone, adapter, config, StageOptions(prior_count=1, prior_steps=2, frames=2, progress=False))
    assert seen and all(r.timestep_spacing == "trailing" for r in seen)
    assert SCS_DEFAULTS["timestep_spacing"] is None  # a user's own sampling: the model's scheduler config


# -- 4. temporal maps keep the motion -----------------------------------------------------------
def content_tokens(frames: int, moving: bool, colours: tuple[int, int], h: int = 2, w: int = 4, sharp: float = 3.0):
    """``[F, h, w, d]``: an object one cell large on a background, static or moving one cell per
    frame; each colour is a direction of the feature space (queries = keys = these features: an
    attention that matches by content, as trained ones do)."""
    eye = torch.eye(8) * sharp
    x = eye[colours[1]].expand(frames, h, w, 8).clone()
    for f in range(frames):
        x[f, 0, f if moving else 0] = eye[colours[0]]
    return x


def temporal_maps(family: str, tokens: torch.Tensor) -> torch.Tensor:
    frames, h, w, d = tokens.shape
    if family == "wan":
        from videomage_wan.attention import CaptureState, same_location

        q = tokens.reshape(1, 1, frames * h * w, d)  # one head, frame-major tokens
        return same_location(q, q, CaptureState(grid=(1, frames, h, w)))
    from diffusers.models.attention_processor import Attention

    from videomage.components import AttentionStore
    from videomage_zeroscope.attention import CaptureProcessor, _Capture

    attn = Attention(query_dim=d, heads=1, dim_head=d)
    with torch.no_grad():
        attn.to_q.weight.copy_(torch.eye(d))
        attn.to_k.weight.copy_(torch.eye(d))
    store, capture = AttentionStore(), _Capture(batch=1, frames=frames)
    with torch.no_grad():
        CaptureProcessor("temporal", store, capture)(attn, tokens.permute(1, 2, 0, 3).reshape(h * w, frames, d))
    return store.temporal[0]


@pytest.mark.parametrize("family", FAMILIES)
def test_static_and_moving_clips_differ_more_than_the_same_motion_in_other_colours(family):
    static = temporal_maps(family, content_tokens(4, False, (0, 1)))
    moving = temporal_maps(family, content_tokens(4, True, (0, 1)))
    recoloured = temporal_maps(family, content_tokens(4, True, (2, 3)))
    assert static.shape == moving.shape == (1, 8, 4, 4)
    assert torch.allclose(moving.sum(-1), torch.ones(()), atol=1e-5)
    motion_gap, colour_gap = (static - moving).square().mean(), (moving - recoloured).square().mean()
    assert motion_gap > 10 * colour_gap and motion_gap > 1e-3, (motion_gap, colour_gap)
