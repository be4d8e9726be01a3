"""Wan 2.2 on tiny models: the two-expert A14B shape and the 5B TI2V shape.

The experts: each prediction runs the expert of its timestep, a stage trains only its expert's
adapter at its expert's timesteps, artifacts keep the expert in their roles and are refused
elsewhere, and the sampler switches expert at the boundary timestep.
"""

from __future__ import annotations

import json

import pytest
import torch

from videomage.artifact import Artifact
from videomage.config import MotionConfig, SubjectConfig
from videomage.errors import ArtifactError, ConfigError
from videomage.loading import detect_backbone, load_backbone, make_adapter
from videomage.plugins import get_registry
from videomage.stages.motion import learn_motion
from videomage.stages.subject import StageOptions, learn_subject
from videomage.testing import AdapterContract, BackboneContract
from videomage_lora.adapter import LoRA
from videomage_wan.backbone import WanBackbone
from videomage_wan.experts import Wan22Backbone
from videomage_wan.tiny import save_tiny_wan22

from test_stages import frame, images

OPTS = StageOptions(progress=False, prior_count=1, prior_steps=2)


@pytest.fixture(scope="module")
def a14b_dir(tmp_path_factory):
    return save_tiny_wan22(tmp_path_factory.mktemp("tiny-a14b"), kind="a14b")


@pytest.fixture(scope="module")
def ti2v_dir(tmp_path_factory):
    return save_tiny_wan22(tmp_path_factory.mktemp("tiny-ti2v"), kind="ti2v5b")


# A14B meets the backbone contract through Wan22Backbone.tiny() (tests/contracts/test_backbones.py).


class TestTI2VContract(BackboneContract):
    @pytest.fixture
    def backbone(self, ti2v_dir):
        return load_backbone(str(ti2v_dir))


class TestLoRAOnTwoExperts(AdapterContract):
    @pytest.fixture
    def component_class(self):
        return LoRA

    @pytest.fixture
    def backbone(self, a14b_dir):
        return load_backbone(str(a14b_dir))


def test_each_shape_is_claimed_by_one_backbone(a14b_dir, ti2v_dir):
    assert detect_backbone(str(a14b_dir)) == "wan22"
    assert detect_backbone(str(ti2v_dir)) == "wan"
    # The published ids are recognised without a download, each by its own backbone only.
    assert Wan22Backbone.detect("Wan-AI/Wan2.2-T2V-A14B-Diffusers")
    assert not WanBackbone.detect("Wan-AI/Wan2.2-T2V-A14B-Diffusers")
    assert WanBackbone.detect("Wan-AI/Wan2.2-TI2V-5B-Diffusers")
    assert not Wan22Backbone.detect("Wan-AI/Wan2.2-TI2V-5B-Diffusers")
    with pytest.raises(ConfigError, match="two experts"):
        WanBackbone.from_pretrained(str(a14b_dir))


def test_ti2v_uses_its_16x_vae_with_48_channels_and_per_token_timesteps(ti2v_dir):
    backbone = load_backbone(str(ti2v_dir))
    assert backbone.expand_timesteps and backbone.space_scale == 16
    assert backbone.latent_shape(5, 64, 64) == (48, 2, 4, 4)
    with pytest.raises(ConfigError, match="multiples of 32"):
        backbone.latent_shape(5, 48, 64)
    latents = backbone.encode_video(torch.rand(1, 5, 3, 64, 64))
    assert latents.shape == (1, 48, 2, 4, 4)
    embeds = backbone.encode_prompt(["a video"])
    with torch.no_grad():
        ours = backbone.predict(latents, torch.tensor([700.0]), embeds)
        # What WanPipeline passes with expand_timesteps and no image: one timestep per token.
        tokens = 2 * 2 * 2
        theirs = backbone.denoiser(hidden_states=latents, timestep=torch.full((1, tokens), 700.0),
                                   encoder_hidden_states=embeds, return_dict=False)[0]
    assert torch.equal(ours, theirs)


def test_predict_runs_the_expert_of_each_timestep(a14b_dir):
    backbone = load_backbone(str(a14b_dir))
    assert backbone.boundary_timestep == pytest.approx(875.0)
    latents = torch.randn(2, 4, 2, 4, 6, generator=torch.Generator().manual_seed(0))
    embeds = backbone.encode_prompt(["a video", "a dog"])
    high, low = backbone.denoiser.high_noise, backbone.denoiser.low_noise

    def direct(model, t):
        return model(hidden_states=latents, timestep=t, encoder_hidden_states=embeds, return_dict=False)[0]

    with torch.no_grad():
        t_high, t_low = torch.tensor([900.0, 875.0]), torch.tensor([874.0, 10.0])
        assert torch.equal(backbone.predict(latents, t_high, embeds), direct(high, t_high))
        assert torch.equal(backbone.predict(latents, t_low, embeds), direct(low, t_low))
        assert not torch.allclose(direct(high, t_low), direct(low, t_low))  # the experts differ
        mixed = torch.tensor([10.0, 900.0])  # one batch, both experts (as in training)
        out = backbone.predict(latents, mixed, embeds)
        assert torch.allclose(out[0], direct(low, mixed)[0], atol=1e-5)
        assert torch.allclose(out[1], direct(high, mixed)[1], atol=1e-5)


def test_expert_timesteps_keep_the_training_distribution(a14b_dir):
    backbone = load_backbone(str(a14b_dir))
    g = torch.Generator().manual_seed(0)
    every = backbone.sample_timesteps(20000, g)
    high = backbone.sample_expert_timesteps(20000, ["high_noise"], g)
    low = backbone.sample_expert_timesteps(20000, ["low_noise"], g)
    b = backbone.boundary_timestep
    assert bool((high >= b).all()) and bool((low < b).all())
    # Restricting the draw is conditioning the full draw on the expert's range.
    for part, mask in ((high, every >= b), (low, every < b)):
        assert float(part.median()) == pytest.approx(float(every[mask].median()), rel=0.03)
    both = backbone.sample_expert_timesteps(20000, ["high_noise", "low_noise"], g)
    assert float((both >= b).float().mean()) == pytest.approx(float((every >= b).float().mean()), abs=0.02)


def test_the_sampler_switches_expert_at_the_boundary(a14b_dir):
    backbone = load_backbone(str(a14b_dir))
    calls = []
    for expert in backbone.experts:
        model = getattr(backbone.denoiser, expert)
        model.register_forward_pre_hook(
            lambda module, args, kwargs, e=expert: calls.append((e, float(kwargs["timestep"].flatten()[0]))),
            with_kwargs=True)
    sampler = get_registry().create("sampler", "cfg")
    sampler.sample(backbone, make_adapter(), {"prompt": "a dog", "steps": 8, "seed": 0, "progress": False})
    experts = [e for e, _ in calls]
    assert "high_noise" in experts and "low_noise" in experts
    switch = experts.index("low_noise")
    assert set(experts[:switch]) == {"high_noise"} and set(experts[switch:]) == {"low_noise"}  # once, never back
    assert all(t >= 875.0 for e, t in calls if e == "high_noise")
    assert all(t < 875.0 for e, t in calls if e == "low_noise")


@pytest.fixture(scope="module")
def learned(a14b_dir, tmp_path_factory):
    """A subject and a motion learned on the tiny A14B model with the default experts."""
    import imageio.v3 as iio
    import numpy as np

    root = tmp_path_factory.mktemp("a14b-stages")
    backbone, adapter = load_backbone(str(a14b_dir)), make_adapter()
    spec = backbone.video_spec
    base = {k: v.clone() for k, v in backbone.denoiser.state_dict().items()}
    drawn: list[float] = []
    predict = backbone.predict

    def recording(latents, timesteps, embeds):
        if torch.is_grad_enabled():
            drawn.extend(float(t) for t in torch.as_tensor(timesteps).flatten())
        return predict(latents, timesteps, embeds)

    backbone.predict = recording
    subject = learn_subject(backbone, adapter, SubjectConfig(token="<toy>", class_word="toy", steps=3, lr=1e-2,
                                                             images=images(root / "toy", spec, (220, 40, 40)), rank=2,
                                                             lambda_reg=0.0), OPTS)
    subject_times, drawn[:] = list(drawn), []
    clip = root / "clip.mp4"
    frames = [frame(spec.height, spec.width, 8 + 6 * i, spec.height // 2, (40, 200, 40)) for i in range(spec.frames)]
    iio.imwrite(clip, np.stack(frames), fps=8, plugin="FFMPEG", codec="libx264", macro_block_size=2)
    motion = learn_motion(backbone, adapter, MotionConfig(video=clip, prompt="a person is riding a horse", rank=2,
                                                          entities=["person", "horse"], steps=3, inversion_steps=0), OPTS)
    return {"backbone": backbone, "subject": subject, "motion": motion, "base": base, "root": root,
            "subject_times": subject_times, "motion_times": list(drawn), "images": root / "toy"}


def test_stages_train_only_their_experts_adapter_at_its_timesteps(learned):
    backbone, subject, motion = learned["backbone"], learned["subject"], learned["motion"]
    assert subject.roles == ("low_noise.spatial",) and motion.roles == ("high_noise.temporal",)
    low_spatial = set(backbone.role_modules("low_noise.spatial"))
    high_temporal = set(backbone.role_modules("high_noise.temporal"))
    assert subject.adapter_tensors and all(k.rsplit(".lora_", 1)[0] in low_spatial for k in subject.adapter_tensors)
    assert motion.adapter_tensors and all(k.rsplit(".lora_", 1)[0] in high_temporal for k in motion.adapter_tensors)
    # The adapters learned something; the base weights of both experts did not move.
    assert any(float(v.abs().max()) > 0 for k, v in subject.adapter_tensors.items() if "lora_B" in k)
    for key, value in backbone.denoiser.state_dict().items():
        if "lora_" not in key:
            assert torch.equal(value, learned["base"][key.replace(".base_layer", "")]), key
    b = backbone.boundary_timestep
    assert learned["subject_times"] and all(t < b for t in learned["subject_times"])
    assert learned["motion_times"] and all(t >= b for t in learned["motion_times"])


def test_an_adapter_can_be_put_in_another_expert(learned):
    backbone, adapter = learned["backbone"], make_adapter()
    config = SubjectConfig(token="<toy2>", class_word="toy", steps=1, images=learned["images"], rank=2,
                           lambda_reg=0.0, experts=["high_noise", "low_noise"])
    art = learn_subject(backbone, adapter, config, OPTS)
    assert art.roles == ("high_noise.spatial", "low_noise.spatial")
    prefixes = {k.split(".", 1)[0] for k in art.adapter_tensors}
    assert prefixes == {"high_noise", "low_noise"}  # one tensor set per expert
    with pytest.raises(ConfigError, match="'mid_noise' is not an expert.*high_noise, low_noise"):
        learn_subject(backbone, adapter, SubjectConfig(token="<t3>", class_word="toy", steps=1, images=learned["images"],
                                                       experts=["mid_noise"]), OPTS)


def test_loading_onto_the_wrong_expert_or_model_is_refused_naming_both(learned, tmp_path):
    from videomage_wan.tiny import save_tiny_wan

    path = learned["subject"].save(tmp_path / "toy.safetensors")
    art = Artifact.load(path)
    assert art.roles == ("low_noise.spatial",)
    backbone, adapter = load_backbone(learned["backbone"].model_ref), make_adapter()
    with pytest.raises(ArtifactError, match=r"lives in expert\(s\) low_noise.*into expert\(s\) high_noise"):
        art.install(backbone, adapter, "subject", source="toy", experts=["high_noise"])
    art.install(backbone, adapter, "subject", source="toy", experts=["low_noise"])  # where it was trained
    wan21 = load_backbone(str(save_tiny_wan(tmp_path / "wan21")))
    with pytest.raises(ArtifactError, match="'wan22'.*'wan'"):
        art.install(wan21, make_adapter(), "subject", source="toy")
    with pytest.raises(ArtifactError, match="lives in expert 'low_noise'.*no experts"):
        from videomage.experts import check_experts

        check_experts(wan21, art.roles, source="toy")


def test_boundary_ratio_comes_from_the_folder(a14b_dir, tmp_path):
    import shutil

    folder = tmp_path / "moved"
    shutil.copytree(a14b_dir, folder)
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**index, "boundary_ratio": 0.5}))
    backbone = load_backbone(str(folder))
    assert backbone.boundary_timestep == pytest.approx(500.0)
    assert backbone.fingerprint() != load_backbone(str(a14b_dir)).fingerprint()


def test_bfloat16_experts_route_and_backpropagate_to_the_adapter(a14b_dir):
    backbone = load_backbone(str(a14b_dir), dtype="bfloat16")
    assert backbone.dtype == torch.bfloat16
    adapter = make_adapter()
    adapter.attach(backbone, "motion", roles=["high_noise.temporal"], rank=2)
    adapter.activate(backbone, {"motion": 1.0})
    latents = torch.randn(2, 4, 2, 4, 6)
    embeds = backbone.encode_prompt(["a video", "a dog"])
    out = backbone.predict(latents, torch.tensor([950.0, 100.0]), embeds)
    assert out.shape == latents.shape and torch.isfinite(out.float()).all()
    out.float().square().mean().backward()
    grads = [p.grad for p in adapter.parameters(backbone, "motion")]
    assert grads and all(g is not None and torch.isfinite(g.float()).all() for g in grads)


def test_scs_guides_only_in_the_high_noise_expert(a14b_dir, monkeypatch):
    from videomage_samplers.scs import SCSSampler as SCS

    backbone, adapter = load_backbone(str(a14b_dir)), make_adapter()
    backbone.add_tokens(["<toy>"], ["toy"])
    adapter.attach(backbone, "subject", roles=["low_noise.spatial"], rank=2)
    adapter.attach(backbone, "motion", roles=["high_noise.temporal"], rank=2)
    guided_at = []
    guide = SCS.guide

    def counting(self, backbone, adapter, latents, t, *args, **kwargs):
        guided_at.append(float(t))
        return guide(self, backbone, adapter, latents, t, *args, **kwargs)

    monkeypatch.setattr(SCS, "guide", counting)
    scheduler = backbone.make_scheduler()
    scheduler.set_timesteps(8)
    high_steps = [float(t) for t in scheduler.timesteps if float(t) >= backbone.boundary_timestep]
    assert 0 < len(high_steps) < 8
    SCS().sample(backbone, adapter, {"prompt": "<toy> is riding a horse", "tokens": {"<toy>": "toy"}, "steps": 8,
                                     "tau": 8, "seed": 0, "progress": False,
                                     "subject_adapter": "subject", "motion_adapter": "motion"})
    assert guided_at == high_steps  # tau = 8 asks for every step; the switch ends the guidance
