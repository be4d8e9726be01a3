"""Learned tokens across stages: entity tokens in their own namespace, collisions refused, and
a recipe resumed after a finished subject restores each token's row by its name."""

from __future__ import annotations

import pytest
import torch

from videomage.artifact import Artifact
from videomage.config import MotionConfig, SubjectConfig
from videomage.errors import ArtifactError, ConfigError
from videomage.stages.generate import install_concepts
from videomage.stages.motion import motion_prompts


def artifact(backbone, adapter, kind, tokens, value):
    width = backbone.token_embedding_weight().shape[1]
    return Artifact(kind=kind, backbone=backbone.name, fingerprint=backbone.fingerprint(), adapter=adapter.name,
                    adapter_config={"rank": 2}, roles=["spatial" if kind != "motion" else "temporal"],
                    tokens=tokens, embeddings={t: torch.full((width,), value) for t in tokens})


def test_the_papers_example_keeps_the_subjects_dog(backbone, adapter, tmp_path):
    # The reference clip "a lady is walking a dog" learns its own entity tokens, never '<dog>'.
    c_m, c_ap, tokens = motion_prompts(MotionConfig(video=tmp_path / "clip.mp4", prompt="a lady is walking a dog",
                                                    entities=["lady", "dog"]))
    assert tokens == {"<motion:lady>": "lady", "<motion:dog>": "dog"}
    assert c_m == "a <motion:lady> is walking a <motion:dog>"
    subject = artifact(backbone, adapter, "subject", {"<dog>": "dog"}, 0.5).save(tmp_path / "dog.safetensors")
    motion = artifact(backbone, adapter, "motion", tokens, -1.0).save(tmp_path / "walk.safetensors")
    install_concepts(backbone, adapter, subject, motion)
    assert torch.equal(backbone.token_embeddings(["<dog>"])["<dog>"], torch.full_like(backbone.token_embeddings(["<dog>"])["<dog>"], 0.5))


def test_an_install_whose_token_collides_is_refused_naming_both(backbone, adapter, tmp_path):
    subject = artifact(backbone, adapter, "subject", {"<dog>": "dog"}, 0.5).save(tmp_path / "dog.safetensors")
    old_motion = artifact(backbone, adapter, "motion", {"<lady>": "lady", "<dog>": "dog"}, -1.0)
    old_motion = old_motion.save(tmp_path / "walk.safetensors")
    with pytest.raises(ArtifactError, match=r"'<dog>' is learned by both '.*dog.safetensors' and '.*walk.safetensors'"):
        install_concepts(backbone, adapter, subject, old_motion)
    assert "<dog>" not in backbone.text.rows  # refused before anything was installed


def test_subject_tokens_may_not_enter_the_entity_namespace(tmp_path):
    with pytest.raises(ConfigError, match="expected a new word in angle brackets"):
        SubjectConfig(token="<motion:dog>", class_word="dog", images=tmp_path)


class StopBeforeFusion(Exception):
    pass


@pytest.mark.parametrize("family", ["clip", "t5"])
def test_a_recipe_resumed_after_a_finished_subject_resumes_the_right_token(family, tiny_model_dir, subject_images,
                                                                           tmp_path, monkeypatch):
    """Run 1 learns <a>, then is stopped in <b>; run 2 skips the finished <a>, so <b> gets <a>'s old
    token id. Its checkpoint must still give it <b>'s own row: the result equals an uninterrupted <b>.

    (Restoring by id, CLIP refused the resume, its matrix having one row fewer; UMT5 with spare
    rows resumed silently with <a>'s trained row.)"""
    import videomage.stages.fusion
    from videomage.config import ModelConfig, OutputConfig, Recipe
    from videomage.workflow import run_recipe

    if family == "t5":
        from transformers import UMT5EncoderModel

        from videomage_wan.tiny import save_tiny_wan

        model = str(save_tiny_wan(tmp_path / "wan"))
        # Spare rows past the tokenizer, as the published UMT5 has: ids shift without changing the matrix.
        encoder = UMT5EncoderModel.from_pretrained(model, subfolder="text_encoder")
        encoder.resize_token_embeddings(encoder.get_input_embeddings().weight.shape[0] + 8, mean_resizing=False)
        encoder.save_pretrained(f"{model}/text_encoder", safe_serialization=True)
    else:
        model = str(tiny_model_dir)

    def stop(*args, **kwargs):
        raise StopBeforeFusion

    monkeypatch.setattr(videomage.stages.fusion, "fuse", stop)  # the subjects are what this test is about

    def run(out, b_steps):
        subjects = [SubjectConfig(token=t, class_word="toy", images=subject_images, steps=s, lambda_reg=0.0, text_lr=1e-2)
                    for t, s in (("<a>", 2), ("<b>", b_steps))]
        recipe = Recipe(model=ModelConfig(id=model), subjects=subjects, output=OutputConfig(dir=out))
        logs = []
        with pytest.raises(StopBeforeFusion):
            run_recipe(recipe, progress=False, log=logs.append)
        return Artifact.load(out / "subjects" / "b.safetensors"), logs

    reference, _ = run(tmp_path / "uninterrupted", 4)
    run(tmp_path / "job", 2)  # "interrupted" at step 2 of <b>: its checkpoint holds step 2
    resumed, logs = run(tmp_path / "job", 4)
    assert logs[0].startswith("subject <a>: up to date") and logs[1] == "subject <b>: learning"
    assert torch.equal(resumed.embeddings["<b>"], reference.embeddings["<b>"])
    assert all(torch.equal(resumed.adapter_tensors[k], v) for k, v in reference.adapter_tensors.items())
