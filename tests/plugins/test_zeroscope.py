"""The ZeroScope backbone on tiny UNet3D models of two configs, loaded from disk by path."""

from __future__ import annotations

import contextlib
import json
import shutil

import pytest
import torch
from diffusers.models.attention_processor import Attention

from videomage.errors import ConfigError
from videomage.loading import detect_backbone, load_backbone
from videomage.testing import BackboneContract
from videomage_zeroscope.backbone import ZeroScopeBackbone


# The contract runs on ZeroScopeBackbone.tiny() in tests/contracts/test_backbones.py; here on the
# deeper config too, whose module names differ.
@pytest.mark.parametrize("any_tiny_model_dir", ["deeper"], indirect=True)
class TestZeroScopeContract(BackboneContract):
    @pytest.fixture
    def backbone(self, any_tiny_model_dir):
        return load_backbone(str(any_tiny_model_dir))


@pytest.fixture
def backbone(tiny_model_dir):
    return load_backbone(str(tiny_model_dir))


def test_roles_come_from_structure_in_both_configs(any_tiny_model_dir):
    bb = load_backbone(str(any_tiny_model_dir))
    spatial, temporal = bb.role_modules("spatial"), bb.role_modules("temporal")
    assert all(".attentions." in n for n in spatial)
    assert all(n.startswith("transformer_in.") or ".temp_attentions." in n for n in temporal)
    assert any(n.startswith("transformer_in.") for n in temporal)
    # Every attention projection and feed-forward linear of each role, and no in/out projection.
    assert all(isinstance(m, torch.nn.Linear) for m in {**spatial, **temporal}.values())
    assert not any(n.endswith(("proj_in", "proj_out")) for n in {**spatial, **temporal})
    for suffix in ("attn1.to_q", "attn2.to_k", "attn1.to_out.0", "ff.net.2"):
        assert any(n.endswith(suffix) for n in spatial) and any(n.endswith(suffix) for n in temporal)


def test_detects_its_folders_and_refuses_others(tiny_model_dir, tmp_path):
    assert detect_backbone(str(tiny_model_dir)) == "zeroscope"
    assert ZeroScopeBackbone.detect("cerspense/zeroscope_v2_576w")
    other = tmp_path / "other"
    shutil.copytree(tiny_model_dir, other)
    config = json.loads((other / "unet" / "config.json").read_text())
    (other / "unet" / "config.json").write_text(json.dumps({**config, "_class_name": "WanTransformer3DModel"}))
    assert not ZeroScopeBackbone.detect(str(other))
    shutil.rmtree(other / "vae")
    with pytest.raises(ConfigError, match="no 'vae' subfolder"):
        ZeroScopeBackbone.from_pretrained(str(other))


def test_uncached_hub_id_is_a_clear_error(monkeypatch, tmp_path):
    import diffusers.utils.constants
    import huggingface_hub.constants

    # Offline, as on a machine without network: the libraries read these at import time.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(diffusers.utils.constants, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ConfigError, match="`hf download cerspense/zeroscope_v2_576w`"):
        ZeroScopeBackbone.from_pretrained("cerspense/zeroscope_v2_576w")


def test_declared_video_spec_and_latent_shape(backbone):
    spec = backbone.video_spec
    assert (spec.height, spec.width, spec.frames, spec.fps) == (32, 32, 4, 8)
    video = torch.rand(1, 3, 3, 32, 32)
    assert backbone.encode_video(video).shape[1:] == backbone.latent_shape(3, 32, 32)
    with pytest.raises(ConfigError, match="multiples of 2"):
        backbone.latent_shape(3, 31, 32)


def test_vae_chunks_do_not_change_the_result(backbone):
    video = torch.rand(2, 5, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    backbone.vae_chunk = 8
    whole = backbone.encode_video(video)
    backbone.vae_chunk = 2
    chunked = backbone.encode_video(video)
    assert torch.allclose(whole, chunked, atol=1e-5)
    assert torch.allclose(backbone.decode_latents(whole), backbone.decode_latents(chunked), atol=1e-5)


def test_learned_token_starts_at_its_init_word_and_encoding_follows_its_row(backbone):
    rows = backbone.token_embedding_weight().shape[0]
    (tid,) = backbone.add_tokens(["<toy>"], ["circle"])
    weight = backbone.token_embedding_weight()
    (circle,) = backbone.text.tokenizer("circle", add_special_tokens=False).input_ids
    assert tid == rows and weight.shape[0] == rows  # the id lies past the matrix, which never grows
    assert torch.equal(backbone.token_embeddings(["<toy>"])["<toy>"], weight[circle])
    assert backbone.word_positions("a <toy> is moving", "<toy>") == [2]
    before = backbone.encode_prompt(["a <toy>"]).clone()
    assert torch.equal(backbone.encode_prompt(["a <toy>"]), before)  # cached, same value
    backbone.set_token_embeddings({"<toy>": torch.ones(weight.shape[1])})
    assert not torch.allclose(backbone.encode_prompt(["a <toy>"]), before)  # the cache saw the new row


def test_word_positions_of_a_word_split_into_pieces(backbone):
    positions = backbone.word_positions("a zqx circle", "zqx")
    assert len(positions) == 3 and positions == list(range(positions[0], positions[0] + 3))
    assert backbone.word_positions("a red circle", "camel") == []


def test_cross_maps_are_probabilities_over_all_text_keys(backbone):
    latents = backbone.encode_video(torch.rand(1, 2, 3, 32, 32))
    length = backbone.text.tokenizer.model_max_length
    with torch.no_grad(), backbone.capture_attention(cross_tokens=list(range(length))) as store:
        backbone.predict(latents, torch.tensor([300]), backbone.encode_prompt(["a red circle"]))
    assert store.cross and not store.temporal
    for m in store.cross:
        assert m.shape[:3] == (1, length, 2)
        assert torch.allclose(m.sum(1), torch.ones(()), atol=1e-5)


def test_capture_restores_processors_and_costs_nothing_when_empty(backbone):
    attn = [m for m in backbone.denoiser.modules() if isinstance(m, Attention)]
    before = [m.processor for m in attn]
    with backbone.capture_attention() as store:
        assert [m.processor for m in attn] == before
    assert not store.cross and not store.temporal
    with backbone.capture_attention(cross_tokens=[1], temporal=True):
        assert [m.processor for m in attn] != before
    assert [m.processor for m in attn] == before


def test_captured_forward_equals_the_plain_forward(backbone):
    latents = backbone.encode_video(torch.rand(1, 3, 3, 32, 32))
    embeds = backbone.encode_prompt(["a red circle"])
    with torch.no_grad():
        plain = backbone.predict(latents, torch.tensor([400]), embeds)
        with backbone.capture_attention(cross_tokens=[1, 2], temporal=True):
            captured = backbone.predict(latents, torch.tensor([400]), embeds)
    assert torch.allclose(plain, captured, atol=1e-5)


def test_gradients_reach_the_latents_through_both_kinds_of_map(backbone):
    latents = backbone.encode_video(torch.rand(1, 3, 3, 32, 32)).requires_grad_(True)
    with backbone.capture_attention(cross_tokens=[2], temporal=True) as store:
        backbone.predict(latents, torch.tensor([400]), backbone.encode_prompt(["a red circle"]))
    (g_cross,) = torch.autograd.grad(store.cross_maps((8, 8)).square().sum(), latents, retain_graph=True)
    (g_temp,) = torch.autograd.grad(store.temporal[-1][..., 0].square().sum(), latents)
    assert g_cross.abs().sum() > 0 and g_temp.abs().sum() > 0


def test_schedulers_by_name(backbone):
    assert type(backbone.make_scheduler()).__name__ == "DDIMScheduler"
    assert type(backbone.make_scheduler("EulerDiscreteScheduler")).__name__ == "EulerDiscreteScheduler"
    with pytest.raises(ConfigError, match="unknown scheduler 'Nope'"):
        backbone.make_scheduler("Nope")
    with pytest.raises(ConfigError, match="dtype 'float8'"):
        ZeroScopeBackbone.from_pretrained(backbone.model_ref, dtype="float8")


def test_training_target_is_the_noise_and_add_noise_is_the_forward_process(backbone):
    x0, noise = torch.randn(1, 4, 2, 4, 4), torch.randn(1, 4, 2, 4, 4)
    t = torch.tensor([250])
    a = backbone.noise_scheduler.alphas_cumprod[250]
    assert torch.allclose(backbone.add_noise(x0, noise, t), a.sqrt() * x0 + (1 - a).sqrt() * noise, atol=1e-6)
    assert torch.equal(backbone.training_target(x0, noise, t), noise)


@pytest.mark.parametrize("role", ["spatial", "temporal"])
def test_gradient_checkpointing_covers_every_layer_and_keeps_the_gradients(tiny_model_dir, role):
    """Training checkpoints resnets, temporal convolutions and both kinds of transformer (a motion
    adapter lives in the temporal ones), with the gradients of the plain backward pass."""
    from diffusers.models.resnet import ResnetBlock2D, TemporalConvLayer
    from diffusers.models.transformers.transformer_2d import Transformer2DModel
    from diffusers.models.transformers.transformer_temporal import TransformerTemporalModel
    from videomage_lora.adapter import LoRA

    grads = []
    for checkpointing in (False, True):
        bb = load_backbone(str(tiny_model_dir))
        adapter = LoRA()
        adapter.attach(bb, "s", roles=[role])
        adapter.activate(bb, {"s": 1.0})
        with torch.no_grad():
            for p in adapter.parameters(bb, "s"):
                p.fill_(0.05)
        if checkpointing:
            bb.enable_gradient_checkpointing()
            kinds = (ResnetBlock2D, TemporalConvLayer, TransformerTemporalModel, Transformer2DModel)
            layers = [m for m in bb.denoiser.modules() if isinstance(m, kinds)]
            assert {type(m) for m in layers} == set(kinds)
            assert all("forward" in m.__dict__ for m in layers)  # each wrapped by the checkpoint
            with bb.activation_checkpointing():  # SCS's temporary checkpointing leaves training's on
                pass
            assert all("forward" in m.__dict__ for m in layers)
        g = torch.Generator().manual_seed(0)
        latents = torch.randn(1, 4, 2, 16, 16, generator=g)
        bb.predict(latents, torch.tensor([300]), bb.encode_prompt(["a red circle"])).square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in adapter.parameters(bb, "s")]))
    assert grads[0].abs().sum() > 0
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def _guidance_backward(backbone, store_kwargs, checkpointing):
    """A captured forward pass and the gradient of a map loss to the latents, as SCS guidance does it.

    Returns the gradient, the number of maps kept after the forward and after the backward pass,
    and the peak bytes of tensors alive during the whole (benchmarks.live_bytes)."""
    from benchmarks.live_bytes import LiveBytes

    latents = torch.randn(1, 4, 4, 16, 16, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    embeds = backbone.encode_prompt(["a red circle"])
    with LiveBytes() as live, backbone.capture_attention(**store_kwargs) as store:
        context = backbone.activation_checkpointing() if checkpointing else contextlib.nullcontext(False)
        with context as active:
            assert active == checkpointing
            backbone.predict(latents, torch.tensor([300]), embeds)
            kept = len(store.cross) + len(store.temporal)
            loss = sum(m.square().mean() for m in [*store.cross, *store.temporal])
            (grad,) = torch.autograd.grad(loss, latents)
        after = len(store.cross) + len(store.temporal)
    return grad, kept, after, live.peak


def test_activation_checkpointing_bounds_the_guidance_memory_and_keeps_the_gradient(backbone):
    capture = {"cross_tokens": [1, 2], "temporal": True}
    g_plain, kept_plain, _, peak_plain = _guidance_backward(backbone, capture, checkpointing=False)
    g_ckpt, kept_ckpt, after_ckpt, peak_ckpt = _guidance_backward(backbone, capture, checkpointing=True)
    assert torch.allclose(g_plain, g_ckpt, atol=1e-6) and g_plain.abs().sum() > 0
    # The layers run again in the backward pass; their maps are kept once, not twice (a second
    # copy would pin the recomputed activations and undo the checkpointing).
    assert kept_ckpt == kept_plain > 0 and after_ckpt == kept_ckpt
    assert peak_ckpt < peak_plain / 2, (peak_ckpt, peak_plain)
    assert all("forward" not in m.__dict__ for m in backbone.denoiser.modules())


def test_gradient_checkpointing_keeps_each_map_once(tiny_model_dir):
    bb = load_backbone(str(tiny_model_dir))
    bb.enable_gradient_checkpointing()  # the fusion stage's path: diffusers recomputes the transformers
    bb.denoiser.train()
    _, kept, after, _ = _guidance_backward(bb, {"cross_tokens": [1], "temporal": True}, checkpointing=False)
    assert after == kept > 0


