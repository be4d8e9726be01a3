"""Every stage of the method and both samplers, end to end on a tiny Wan model, unchanged.

A few steps each: these tests prove the stages run on a flow-matching transformer with a
time-compressing VAE and a T5 text encoder, and that each stage touches only its own part.
"""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from videomage.config import FusionConfig, MotionConfig, SubjectConfig
from videomage.loading import load_backbone, make_adapter
from videomage.stages.fusion import fuse
from videomage.stages.generate import generate
from videomage.stages.motion import learn_motion
from videomage.stages.subject import StageOptions, learn_subject

OPTS = StageOptions(progress=False, prior_count=1, prior_steps=2)


def frame(h, w, x, y, colour):
    out = np.full((h, w, 3), 30, dtype=np.uint8)
    out[max(0, y - 5) : y + 5, max(0, x - 5) : x + 5] = colour
    return out


def images(folder, spec, colour):
    folder.mkdir()
    for i, (x, y) in enumerate([(10, 10), (30, 18)]):
        iio.imwrite(folder / f"{i}.png", frame(spec.height, spec.width, x, y, colour))
    return folder


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    """Two subjects and one motion, learned on the tiny Wan model (shared by the tests below)."""
    from videomage_wan.tiny import save_tiny_wan

    root = tmp_path_factory.mktemp("wan-stages")
    model = str(save_tiny_wan(root / "model"))
    backbone, adapter = load_backbone(model), make_adapter()
    spec = backbone.video_spec
    base = {k: v.clone() for k, v in backbone.denoiser.state_dict().items()}
    rows = backbone.token_embedding_weight().shape[0]
    weights_before = backbone.token_embedding_weight().detach().clone()
    subjects = []
    for token, word, colour in (("<toy>", "toy", (220, 40, 40)), ("<pup>", "dog", (40, 40, 220))):
        config = SubjectConfig(token=token, class_word=word, images=images(root / word, spec, colour), steps=2, lr=1e-2,
                               text_lr=1e-2, rank=2)
        art = learn_subject(backbone, adapter, config, OPTS)
        subjects.append(art.save(root / f"{word}.safetensors"))
    clip = root / "clip.mp4"
    frames = [frame(spec.height, spec.width, 8 + 6 * i, spec.height // 2, (40, 200, 40)) for i in range(spec.frames)]
    iio.imwrite(clip, np.stack(frames), fps=8, plugin="FFMPEG", codec="libx264", macro_block_size=2)
    motion = learn_motion(backbone, adapter, MotionConfig(video=clip, prompt="a person is riding a horse",
                                                          entities=["person", "horse"], steps=2, inversion_steps=2, rank=2), OPTS)
    return {"model": model, "root": root, "subjects": subjects, "motion": motion, "base": base, "rows": rows,
            "weights_before": weights_before, "backbone": backbone}


def test_learning_stages_touch_only_their_role_and_token_rows(learned):
    backbone, motion = learned["backbone"], learned["motion"]
    spatial, temporal = set(backbone.role_modules("spatial")), set(backbone.role_modules("temporal"))
    from videomage.artifact import Artifact

    for path in learned["subjects"]:
        art = Artifact.load(path)
        assert art.roles == ("spatial",) and art.backbone == "wan"
        assert all(k.rsplit(".lora_", 1)[0] in spatial for k in art.adapter_tensors)
    assert motion.roles == ("temporal",)
    assert all(k.rsplit(".lora_", 1)[0] in temporal for k in motion.adapter_tensors)
    assert motion.info["motion_prompt"] == "a <motion:person> is riding a <motion:horse>"
    for key, value in backbone.denoiser.state_dict().items():
        if "lora_" not in key:  # every base weight is bit-exact
            assert torch.equal(value, learned["base"][key.replace(".base_layer", "")]), key
    weight = backbone.token_embedding_weight().detach()
    old = learned["rows"]
    assert torch.equal(weight, learned["weights_before"])  # the vocabulary is untouched, never resized
    learned_ids = set(backbone.token_ids(["<toy>", "<pup>", "<motion:person>", "<motion:horse>"]))
    assert learned_ids == set(range(old - 1, old + 3))  # the spare row's id, then ids past the matrix
    assert set(backbone.text.rows) == {"<toy>", "<pup>", "<motion:person>", "<motion:horse>"}  # each its own row


def test_fusion_and_both_samplers_run(learned, tmp_path):
    backbone, adapter = load_backbone(learned["model"]), make_adapter()
    fused = fuse(backbone, adapter, learned["subjects"], FusionConfig(steps=2, videos_per_subject=1, lr=1e-2), OPTS)
    assert fused.roles == ("spatial",) and set(fused.tokens) == {"<toy>", "<pup>"}
    assert fused.info["final_loss"] is not None
    fused_path = fused.save(tmp_path / "fused.safetensors")
    motion_path = learned["motion"].save(tmp_path / "motion.safetensors")
    spec = backbone.video_spec
    for sampler, options in (("cfg", {"steps": 2}), ("scs", {"steps": 3, "tau": 2, "alpha_cross": 0.01, "alpha_temporal": 0.01})):
        record = generate(backbone, adapter, prompt="<toy> is riding <pup> in the snow", out=tmp_path / f"{sampler}.mp4",
                          subjects=fused_path, motion=motion_path, sampler=sampler, options={"progress": False, **options})
        assert (tmp_path / f"{sampler}.mp4").is_file(), record
        video = iio.imread(tmp_path / f"{sampler}.mp4", plugin="FFMPEG")
        assert video.shape[0] == spec.frames and video.shape[1:3] == (spec.height, spec.width)
