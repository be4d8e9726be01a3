"""Random streams per (seed, stage, concept), and generated-video caches keyed on the weights."""

from __future__ import annotations

import torch

from videomage.config import MotionConfig, SubjectConfig
from videomage.loading import load_backbone, make_adapter
from videomage.plugins import get_registry
from videomage.stages.motion import learn_motion
from videomage.stages.subject import StageOptions, learn_subject, prior_latents


def record_timesteps(backbone, monkeypatch):
    drawn: list[int] = []
    original = backbone.sample_timesteps

    def spy(batch, generator=None):
        t = original(batch, generator)
        drawn.extend(t.tolist())
        return t

    monkeypatch.setattr(backbone, "sample_timesteps", spy)
    return drawn


def record_sample_seeds(monkeypatch):
    seeds: list[int] = []
    cls = get_registry().get("sampler", "cfg")
    original = cls.sample

    def spy(self, backbone, adapter, request):
        seeds.append(int(request.seed))
        return original(self, backbone, adapter, request)

    monkeypatch.setattr(cls, "sample", spy)
    return seeds


def test_each_subject_and_stage_draws_its_own_stream(backbone, adapter, subject_images, motion_clip, monkeypatch, tmp_path):
    drawn = record_timesteps(backbone, monkeypatch)
    streams = {}
    for token in ("<a>", "<b>"):
        drawn.clear()
        config = SubjectConfig(token=token, class_word="toy", images=subject_images, steps=4, lambda_reg=0.0)
        learn_subject(backbone, adapter, config, StageOptions(progress=False))
        adapter.remove(backbone, "subject")
        streams[token] = list(drawn)
    drawn.clear()
    config = MotionConfig(video=motion_clip, prompt="a square is chasing a circle", entities=["square", "circle"],
                          steps=4, inversion_steps=4, omega=0.0)
    learn_motion(backbone, adapter, config, StageOptions(progress=False))
    streams["inversion"], streams["motion"] = drawn[:4], drawn[4:]
    assert len({tuple(v) for v in streams.values()}) == 4, streams  # four stages, four streams


def test_prior_and_validation_seeds_differ_per_subject_and_from_the_sampling_seed(backbone, adapter, subject_images,
                                                                                  monkeypatch, tmp_path):
    seeds = record_sample_seeds(monkeypatch)
    per_subject = {}
    for token in ("<a>", "<b>"):
        seeds.clear()
        config = SubjectConfig(token=token, class_word="toy", images=subject_images, steps=1)
        opts = StageOptions(progress=False, prior_count=2, prior_steps=1, frames=2, validate_every=1,
                            work_dir=tmp_path / token.strip("<>"))
        learn_subject(backbone, adapter, config, opts)
        adapter.remove(backbone, "subject")
        per_subject[token] = list(seeds)
    assert [len(v) for v in per_subject.values()] == [3, 3]  # two prior videos and one validation sample each
    every = per_subject["<a>"] + per_subject["<b>"]
    assert len(set(every)) == 6, per_subject
    assert 0 not in every  # the final video (sampling seed 0) never starts from a prior video's noise


def test_prior_videos_are_cached_per_model_weights(tiny_model_dir, tmp_path, subject_images):
    from videomage_toyworld.model import ToyModelConfig, build_components, save_model

    folder = tmp_path / "fine-tuned"  # the same config as the tiny model, other weights
    other = save_model(build_components(ToyModelConfig.tiny(), folder / "tokenizer", seed=1), folder, frames=4)
    opts = StageOptions(progress=False, prior_count=1, prior_steps=1, frames=2, work_dir=tmp_path / "work")
    config = SubjectConfig(token="<toy>", class_word="toy", images=subject_images)
    latents = []
    for model in (tiny_model_dir, other):
        backbone, adapter = load_backbone(str(model)), make_adapter()
        with torch.no_grad():
            latents.append(prior_latents(backbone, adapter, config, opts)[0])
    assert len(list((tmp_path / "work" / "cache").glob("prior-*.safetensors"))) == 2
    assert not torch.equal(latents[0], latents[1])  # the second model's own videos, not the first's
