"""Wan's roles: spatial = cross-attention + feed-forward, temporal = 3D self-attention."""

from __future__ import annotations

import pytest
import torch

from videomage.components import TrainingContext
from videomage.loading import make_adapter
from videomage.plugins import get_registry
from videomage.testing import AdapterContract


def test_roles_are_the_documented_layers(backbone):
    blocks = len(backbone.denoiser.blocks)
    spatial, temporal = backbone.role_modules("spatial"), backbone.role_modules("temporal")
    assert len(spatial) == 6 * blocks and len(temporal) == 4 * blocks
    assert all(".attn2." in n or ".ffn." in n for n in spatial)
    assert all(".attn1." in n for n in temporal)
    assert all(isinstance(m, torch.nn.Linear) for m in {**spatial, **temporal}.values())
    # Every linear layer of every block has a role; nothing outside the blocks has one.
    linears = {n for n, m in backbone.denoiser.named_modules() if isinstance(m, torch.nn.Linear)}
    in_blocks = {n for n in linears if n.startswith("blocks.")}
    assert in_blocks == set(spatial) | set(temporal)


class TestLoRAOnWan(AdapterContract):
    @pytest.fixture
    def component_class(self):
        return get_registry().get("adapter", "lora")


@pytest.mark.parametrize("role", ["spatial", "temporal"])
def test_an_adapter_trains_only_its_role(backbone, role):
    adapter = make_adapter()
    adapter.attach(backbone, "a", roles=[role], rank=2)
    adapter.activate(backbone, {"a": 1.0})
    names = set(backbone.role_modules(role))
    lora = {n for n, _ in backbone.denoiser.named_parameters() if "lora_" in n}
    assert lora and all(n.split(".lora_")[0] in names for n in lora)
    ctx = TrainingContext(backbone=backbone, adapter=adapter, trained=("a",), generator=torch.Generator().manual_seed(0))
    latents = backbone.encode_video(torch.rand(1, 5, 3, 32, 48, generator=torch.Generator().manual_seed(0)))
    out = get_registry().create("objective", "denoise").loss(ctx, {"latents": latents, "prompts": ["a toy"]})
    out.loss.backward()
    trained = [p for p in adapter.parameters(backbone, "a")]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trained)
    with_grad = [n for n, p in backbone.denoiser.named_parameters() if p.grad is not None]
    assert with_grad and all(".lora_" in n and n.split(".lora_")[0] in names for n in with_grad)
