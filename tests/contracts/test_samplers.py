"""`SamplerContract` over every registered sampler, on the tiny ZeroScope with two LoRAs."""

from __future__ import annotations

import pytest
import torch

from videomage import get_registry
from videomage.testing import SamplerContract

#: Few steps and a small size: the contract checks shapes and determinism, not quality.
COMMON = {"prompt": "a toy is riding a dog", "steps": 2, "guidance_scale": 3.0, "seed": 0, "progress": False,
          "timestep_spacing": "trailing"}

#: Sampler name -> its request on top of COMMON. A sampler registered without one fails below.
REQUESTS = {
    "cfg": {"adapters": {"trained": 1.0, "motion": 1.0}},
    "scs": {"subject_adapter": "trained", "motion_adapter": "motion", "tokens": {"toy": "toy", "dog": "dog"}, "tau": 1,
            "guidance_checkpointing": False, "frames": 2},
}


def test_every_registered_sampler_has_a_case():
    assert set(get_registry().names("sampler")) <= set(REQUESTS)


@pytest.mark.parametrize("name", sorted(REQUESTS))
class TestEverySampler(SamplerContract):
    @pytest.fixture
    def component_class(self, name):
        return get_registry().get("sampler", name)

    @pytest.fixture
    def sampler_case(self, name, tiny_backbone_with_lora):
        ctx = tiny_backbone_with_lora
        ctx.adapter.attach(ctx.backbone, "motion", roles=["temporal"])
        with torch.no_grad():  # non-zero adapters, so that switching between them matters
            for adapter in ("trained", "motion"):
                for p in ctx.adapter.parameters(ctx.backbone, adapter):
                    p.normal_(0, 0.1, generator=torch.Generator().manual_seed(2))
        return ctx.backbone, ctx.adapter, {**COMMON, **REQUESTS[name]}
