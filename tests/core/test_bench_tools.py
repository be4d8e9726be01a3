"""The benchmarks' own tools: the real-size model builder and the CPU stand-in for
``torch.cuda.max_memory_allocated``."""

from __future__ import annotations

import torch

from benchmarks.live_bytes import LiveBytes, storage_bytes
from benchmarks.models import BenchConfig, build_real_backbone, parameter_count


def test_counts_each_storage_once_until_it_is_freed():
    with LiveBytes() as live:
        a = torch.ones(1000, dtype=torch.uint8)
        view = a[10:]
        assert live.current == 1000  # the view shares the storage
        del a
        assert live.current == 1000  # the view keeps it alive
        del view
        assert live.current == 0
        b = torch.ones(300, dtype=torch.uint8)
    assert live.peak == 1000 and live.current == 300
    del b


def test_sees_the_backward_pass_and_what_it_keeps():
    x = torch.randn(1000, 1000, requires_grad=True)  # 4 MB, alive before: not counted
    with LiveBytes() as live:
        y = x.exp()  # kept for backward: 4 MB
        z = (y * 2).sum()
        assert live.current == 4_000_000 + 4
        z.backward()
    # Backward allocates the gradients (x.grad stays: 4 MB) while the saved exp is still alive.
    assert live.current >= 4_000_000
    assert live.peak >= 8_000_000


def test_storage_bytes_counts_shared_storages_once():
    w = torch.zeros(10, 10)
    assert storage_bytes([w, w.t(), w[0]]) == 400
    assert storage_bytes([w, torch.zeros(5)]) == 420


def test_the_real_size_model_builds_with_the_published_parameter_count(tmp_path):
    # On the meta device: no memory, no compute; it catches a builder that no longer runs.
    backbone = build_real_backbone(BenchConfig(size="real", device="meta", dtype="bfloat16"), tmp_path / "tok")
    assert parameter_count(backbone.denoiser) == 1_411_233_860  # ZeroScope v2 / ModelScope 1.7B's UNet
    assert backbone.denoiser.dtype == torch.bfloat16
    assert backbone.role_modules("spatial") and backbone.role_modules("temporal")


def test_the_real_size_wan_builds_with_the_published_parameter_count(tmp_path):
    config = BenchConfig(size="real", backbone="wan", device="meta", dtype="bfloat16", frames=17, height=256, width=256)
    backbone = build_real_backbone(config, tmp_path / "tok")
    assert parameter_count(backbone.denoiser) == 1_418_996_800  # Wan 2.1 T2V 1.3B's transformer
    assert backbone.latent_shape(17, 256, 256) == (16, 5, 32, 32)
    assert backbone.role_modules("spatial") and backbone.role_modules("temporal")


def test_a_view_of_a_tensor_made_before_is_not_new_memory():
    """A linear layer takes ``t()`` of its weight: the view shares the weight's storage, which
    existed before counting began, so it costs nothing (it was once counted for as long as the weight lived)."""
    layer = torch.nn.Linear(256, 256)
    with LiveBytes() as live:
        out = layer(torch.ones(2, 256))
        layer.weight.data.mul_(1.0)  # in place on a storage made before: nothing new either
    assert live.current == out.untyped_storage().nbytes() + 2 * 256 * 4  # the output, and the input
