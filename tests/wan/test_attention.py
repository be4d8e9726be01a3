"""Attention maps read out of Wan's 3D self-attention and cross-attention."""

from __future__ import annotations

import contextlib

import pytest
import torch

from videomage.errors import ConfigError
from videomage_wan.attention import queries_and_keys


@pytest.fixture
def inputs(backbone):
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 4, 2, 4, 6, generator=g)  # 2 latent frames, 2x3 token grid
    return latents, torch.tensor([600.0]), backbone.encode_prompt(["a toy is riding a horse"])


def block_inputs(backbone, latents, embeds):
    """What block 0's attention layers see: (normed video tokens, text states, rotary embedding)."""
    model = backbone.denoiser
    seen = {}
    hook = model.blocks[0].attn1.register_forward_pre_hook(lambda m, args: seen.setdefault("attn1", args))
    hook2 = model.blocks[0].attn2.register_forward_pre_hook(lambda m, args: seen.setdefault("attn2", args))
    with torch.no_grad():
        backbone.predict(latents, torch.tensor([600.0]), embeds)
    hook.remove(), hook2.remove()
    return seen


def test_queries_and_keys_are_the_layers_own(backbone, inputs):
    # softmax(q k^T / sqrt(d)) v through to_out must reproduce each layer's real output.
    latents, _, embeds = inputs
    seen = block_inputs(backbone, latents, embeds)
    for name in ("attn1", "attn2"):
        attn = getattr(backbone.denoiser.blocks[0], name)
        hidden, context, _, rotary = seen[name]
        with torch.no_grad():
            q, k = queries_and_keys(attn, hidden, context, rotary)
            probs = (q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5).softmax(-1)
            v = attn.to_v(hidden if context is None else context).unflatten(2, (attn.heads, -1)).transpose(1, 2)
            mine = attn.to_out[0]((probs @ v).transpose(1, 2).flatten(2))
            assert torch.allclose(mine, attn(hidden, context, None, rotary), atol=1e-5), name


def test_documented_shapes_and_normalisation(backbone, inputs):
    latents, t, embeds = inputs
    everything = list(range(embeds.shape[1]))
    with torch.no_grad(), backbone.capture_attention(cross_tokens=everything, temporal=True) as store:
        backbone.predict(latents, t, embeds)
    blocks = len(backbone.denoiser.blocks)
    assert len(store.cross) == len(store.temporal) == blocks
    for m in store.cross:  # [B, T, F, h/2, w/2]
        assert m.shape == (1, len(everything), 2, 2, 3)
        assert torch.allclose(m.sum(1), torch.ones(()), atol=1e-5)  # softmax over all text keys
    for m in store.temporal:  # [B, (h/2)*(w/2), F, F]
        assert m.shape == (1, 6, 2, 2)
        assert torch.allclose(m.sum(-1), torch.ones(()), atol=1e-5)
    assert store.cross_maps((4, 6)).shape == (1, len(everything), 2, 4, 6)


def test_temporal_map_is_the_same_location_slice_renormalised_over_frames(backbone, inputs):
    latents, t, embeds = inputs
    seen = block_inputs(backbone, latents, embeds)
    attn = backbone.denoiser.blocks[0].attn1
    hidden, _, _, rotary = seen["attn1"]
    with torch.no_grad():
        q, k = queries_and_keys(attn, hidden, None, rotary)
        probs = (q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5).softmax(-1)[0]  # [heads, N, N], N = 2 frames x 6
        grid = probs.reshape(-1, 2, 6, 2, 6)  # [heads, query frame, query location, key frame, key location]
        same = torch.stack([grid[:, :, p, :, p] for p in range(6)], 1)  # [heads, location, query frame, key frame]
        expected = (same / same.sum(-1, keepdim=True)).mean(0)  # renormalised over key frames, then head mean
        with backbone.capture_attention(temporal=True) as store:
            backbone.predict(latents, t, embeds)
    assert torch.allclose(store.temporal[0][0], expected, atol=1e-5)


def test_chunking_changes_nothing(backbone, inputs):
    latents, t, embeds = inputs
    results = []
    for chunk in (2**25, 1):  # everything at once, then one query per chunk
        backbone.attention_chunk_elements = chunk
        with torch.no_grad(), backbone.capture_attention(cross_tokens=[1, 2], temporal=True) as store:
            backbone.predict(latents, t, embeds)
        results.append(store)
    for a, b in zip(results[0].cross + results[0].temporal, results[1].cross + results[1].temporal):
        assert torch.allclose(a, b, atol=1e-6)


def test_capture_leaves_outputs_and_processors_alone(backbone, inputs):
    latents, t, embeds = inputs
    processors = [(b.attn1.processor, b.attn2.processor) for b in backbone.denoiser.blocks]
    with torch.no_grad():
        plain = backbone.predict(latents, t, embeds)
        with backbone.capture_attention() as store:  # nothing requested: nothing swapped
            assert [(b.attn1.processor, b.attn2.processor) for b in backbone.denoiser.blocks] == processors
            backbone.predict(latents, t, embeds)
        assert not store.cross and not store.temporal
        with backbone.capture_attention(cross_tokens=[1], temporal=True):
            captured = backbone.predict(latents, t, embeds)
    assert torch.equal(plain, captured)
    assert [(b.attn1.processor, b.attn2.processor) for b in backbone.denoiser.blocks] == processors


@pytest.mark.parametrize("chunk", [2**25, 3])
def test_gradients_reach_the_latents_through_the_maps(backbone, inputs, chunk):
    latents, t, embeds = inputs
    backbone.attention_chunk_elements = chunk  # 3: checkpointed chunks of one query
    x = latents.clone().requires_grad_(True)
    with backbone.capture_attention(cross_tokens=[1, 2], temporal=True) as store:
        backbone.predict(x, t, embeds)
    for maps in (store.cross, store.temporal):
        target = torch.rand(maps[0].shape, generator=torch.Generator().manual_seed(1))
        (grad,) = torch.autograd.grad(((maps[-1] - target) ** 2).mean(), x, retain_graph=True)
        assert grad.abs().sum() > 0


def test_capture_blocks_narrow_the_layers(backbone, inputs):
    latents, t, embeds = inputs
    backbone.capture_blocks = [1]
    with torch.no_grad(), backbone.capture_attention(cross_tokens=[1], temporal=True) as store:
        backbone.predict(latents, t, embeds)
    assert len(store.cross) == len(store.temporal) == 1
    backbone.capture_blocks = [7]
    with pytest.raises(ConfigError, match="past the last"), backbone.capture_attention(temporal=True):
        pass


def test_gradient_checkpointing_keeps_each_map_once(backbone, inputs):
    # The fusion stage with --gradient-checkpointing: diffusers runs each block again in the
    # backward pass, and the capture must not keep a second copy of its maps then.
    latents, t, embeds = inputs
    backbone.enable_gradient_checkpointing()
    backbone.denoiser.train()
    x = latents.clone().requires_grad_(True)
    with backbone.capture_attention(cross_tokens=[1, 2], temporal=True) as store:
        backbone.predict(x, t, embeds)
        kept = (len(store.cross), len(store.temporal))
        loss = sum(m.square().mean() for m in [*store.cross, *store.temporal])
        (grad,) = torch.autograd.grad(loss, x)
        assert (len(store.cross), len(store.temporal)) == kept
    assert kept[0] > 0 and grad.abs().sum() > 0


def test_activation_checkpointing_keeps_the_gradient_and_holds_less(backbone, inputs):
    from benchmarks.live_bytes import LiveBytes

    latents, t, embeds = inputs
    results = []
    for on in (False, True):
        x = latents.clone().requires_grad_(True)
        with LiveBytes() as live, backbone.capture_attention(cross_tokens=[1, 2], temporal=True) as store:
            context = backbone.activation_checkpointing() if on else contextlib.nullcontext(False)
            with context as active:
                assert active == on
                backbone.predict(x, t, embeds)
                kept = len(store.cross) + len(store.temporal)
                (grad,) = torch.autograd.grad(sum(m.square().mean() for m in [*store.cross, *store.temporal]), x)
                assert len(store.cross) + len(store.temporal) == kept  # each map kept once
        results.append((grad, live.peak))
    (g_plain, peak_plain), (g_ckpt, peak_ckpt) = results
    assert torch.allclose(g_plain, g_ckpt, atol=1e-6) and g_plain.abs().sum() > 0
    assert peak_ckpt < peak_plain, (peak_ckpt, peak_plain)
    assert all("forward" not in block.__dict__ for block in backbone.denoiser.blocks)


def test_a_capture_reads_the_maps_from_the_layers_own_queries_and_keys(backbone, inputs):
    """The maps come from the q and k the layer attends with: no layer projects its queries twice."""
    latents, t, embeds = inputs
    calls = []
    hooks = [getattr(block, name).to_q.register_forward_hook(lambda *_: calls.append(1))
             for block in backbone.denoiser.blocks for name in ("attn1", "attn2")]
    with torch.no_grad():
        backbone.predict(latents, t, embeds)
        plain = len(calls)
        with backbone.capture_attention(cross_tokens=[1, 2], temporal=True) as store:
            backbone.predict(latents, t, embeds)
    for h in hooks:
        h.remove()
    assert len(store.cross) == len(store.temporal) == len(backbone.denoiser.blocks)
    assert len(calls) == 2 * plain
