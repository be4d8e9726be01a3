"""Releasing the text encoder once a stage's prompts are encoded (``--release-text-encoder``)."""

from __future__ import annotations

import torch

from videomage.loading import load_backbone
from videomage.memory import LiveBytes, storage_bytes


def test_a_released_encoder_serves_the_kept_prompts_and_comes_back_to_train_a_row(tiny_model_dir, monkeypatch):
    bb = load_backbone(str(tiny_model_dir))
    bb.add_tokens(["<toy>"], ["toy"])
    prompt = "a <toy> on a table"
    before = bb.encode_prompt(["", prompt])  # as a sampler encodes: negative and prompt together
    encoder = bb.text.encoder
    size = storage_bytes([*encoder.parameters(), *encoder.buffers()])
    calls = []
    forward = encoder.forward
    monkeypatch.setattr(encoder, "forward", lambda *a, **k: calls.append(1) or forward(*a, **k))
    with LiveBytes() as live:
        bb.release_text_encoder(["", prompt])
        kept = storage_bytes(bb.text._kept.values())
        assert bb.text.released and live.current == kept - size  # the counters saw the encoder leave
        calls.clear()
        bb.text._cache.clear()
        after = bb.encode_prompt(["", prompt])
        assert not calls and torch.allclose(after, before, atol=1e-5)  # assembled from the kept encodings
        other = bb.encode_prompt(["a prompt nobody kept"])  # encoded where the encoder lies
        assert len(calls) == 1 and other.device == after.device
        bb.token_parameters(["<toy>"])  # a row to train: its gradient passes through the encoder
        assert not bb.text.released and live.current >= 0


def test_the_plan_of_a_stage_counts_the_released_encoder(tmp_path, monkeypatch):
    """Motion learning releases the encoder after its textual inversion; the plan sees the bytes leave."""
    from videomage import memory
    from videomage.planning import PlanRequest, plan

    from tests.conftest import save_tiny_model, tiny_configs

    path = str(save_tiny_model(tmp_path / "zs", tiny_configs()["tiny"]))
    moved = []
    off = memory.moved_off_device
    monkeypatch.setattr(memory, "moved_off_device", lambda n: moved.append(n) or off(n))
    (estimate,) = plan(PlanRequest(model=path, dtype="float32", release_text_encoder=True), ["motion"])
    encoder = load_backbone(path).text.encoder
    assert moved == [storage_bytes([*encoder.parameters(), *encoder.buffers()])]
    assert estimate.released_bytes == moved[0]  # and it stays on the host to the end of the stage
    assert estimate.device_bytes > estimate.weights_bytes
