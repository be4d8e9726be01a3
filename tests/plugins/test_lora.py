"""The LoRA adapter: roles, switching, weights, merging, averaging and artifacts."""

from __future__ import annotations

import pytest
import torch

from videomage.artifact import Artifact
from videomage.errors import ArtifactError, ConfigError
from videomage.loading import load_backbone
from videomage.testing import AdapterContract
from videomage_lora.adapter import LoRA, lora_layers


@pytest.fixture
def backbone(tiny_model_dir):
    return load_backbone(str(tiny_model_dir))


class TestLoRAContract(AdapterContract):
    @pytest.fixture
    def component_class(self):
        return LoRA


def randomise(adapter, backbone, name, seed=0, scale=0.3):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in adapter.parameters(backbone, name):
            p.copy_(torch.randn(p.shape, generator=g) * scale)


def forward(backbone, seed=0):
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(1, 4, 2, 16, 16, generator=g)
    with torch.no_grad():
        return backbone.predict(latents, torch.tensor([300]), backbone.encode_prompt(["a red circle"]))


@pytest.mark.parametrize(("role", "other"), [("spatial", "temporal"), ("temporal", "spatial")])
def test_an_adapter_touches_only_its_role(backbone, role, other):
    adapter = LoRA()
    adapter.attach(backbone, "a", roles=[role])
    mine, theirs = set(backbone.role_modules(role)), set(backbone.role_modules(other))
    wrapped = {n for n, layer in lora_layers(backbone) if "a" in layer.lora_A}
    assert wrapped == mine and not wrapped & theirs
    # Functionally too: a loss through the active adapter gives gradients to its own tensors only,
    # and every one of them sits in a layer of its role.
    adapter.activate(backbone, {"a": 1.0})
    randomise(adapter, backbone, "a")
    latents = torch.randn(1, 4, 2, 16, 16, generator=torch.Generator().manual_seed(0))
    backbone.predict(latents, torch.tensor([300]), backbone.encode_prompt(["a red circle"])).square().mean().backward()
    graded = {n.rsplit(".lora_", 1)[0] for n, p in backbone.denoiser.named_parameters() if p.grad is not None}
    assert graded and graded <= mine


def test_targets_narrow_the_layers(backbone):
    adapter = LoRA()
    adapter.attach(backbone, "q", roles=["spatial"], targets=[r"attn2\.to_[kv]$"])
    names = {n for n, layer in lora_layers(backbone) if "q" in layer.lora_A}
    assert names and all(n.endswith(("attn2.to_k", "attn2.to_v")) for n in names)
    with pytest.raises(ConfigError, match="no layer of roles"):
        adapter.attach(backbone, "none", roles=["spatial"], targets=["nothing_matches_this"])


def test_weights_switching_and_disabling(backbone):
    base = forward(backbone)
    adapter = LoRA()
    adapter.attach(backbone, "a", roles=["spatial"])
    adapter.attach(backbone, "b", roles=["temporal"])
    randomise(adapter, backbone, "a", seed=1)
    randomise(adapter, backbone, "b", seed=2)
    adapter.activate(backbone, {"a": 1.0})
    only_a = forward(backbone)
    adapter.activate(backbone, {"a": 1.0, "b": 1.0})
    both = forward(backbone)
    adapter.activate(backbone, {"a": 0.0})
    assert torch.allclose(forward(backbone), base, atol=1e-6)  # weight zero is the base model
    assert not torch.allclose(only_a, base) and not torch.allclose(both, only_a)
    adapter.activate(backbone, {"a": 1.0, "b": 1.0})
    with adapter.disabled(backbone):
        assert torch.allclose(forward(backbone), base, atol=1e-6)
    assert torch.allclose(forward(backbone), both, atol=1e-6)  # the previous state returns
    with pytest.raises(ConfigError, match="no adapter named 'c'"):
        adapter.activate(backbone, {"c": 1.0})


def test_a_weight_scales_the_layer_delta_linearly(backbone):
    adapter = LoRA()
    adapter.attach(backbone, "a", roles=["spatial"], rank=2)
    randomise(adapter, backbone, "a")
    name, layer = next((n, m) for n, m in lora_layers(backbone) if "a" in m.lora_A)
    x = torch.randn(5, layer.base_layer.in_features)
    base = layer.base_layer(x)
    delta = x @ layer.lora_A["a"].weight.T @ layer.lora_B["a"].weight.T  # alpha = rank: scale one
    adapter.activate(backbone, {"a": 0.5})
    assert torch.allclose(layer(x), base + 0.5 * delta, atol=1e-5), name


def test_switching_copies_no_weights_and_keeps_requires_grad(backbone):
    adapter = LoRA()
    adapter.attach(backbone, "a", roles=["spatial"])
    adapter.attach(backbone, "b", roles=["temporal"])
    tensors = [p for p in backbone.denoiser.parameters()]
    pointers = [p.data_ptr() for p in tensors]
    for weights in ({"a": 1.0}, {"b": 0.5}, {}, {"a": 1.0, "b": 1.0}):
        adapter.activate(backbone, weights)
    assert [p.data_ptr() for p in backbone.denoiser.parameters()] == pointers
    assert all(p.requires_grad for n in ("a", "b") for p in adapter.parameters(backbone, n))
    adapter.remove(backbone, "b")
    assert all(p.requires_grad for p in adapter.parameters(backbone, "a"))
    assert adapter.adapter_names(backbone) == ["a"]


def test_merge_matches_the_active_adapter_and_unmerge_restores_the_base(backbone):
    base_weights = {k: v.clone() for k, v in backbone.denoiser.state_dict().items() if "lora_" not in k}
    adapter = LoRA()
    adapter.attach(backbone, "a", roles=["spatial", "temporal"])
    randomise(adapter, backbone, "a", scale=0.1)
    adapter.activate(backbone, {"a": 0.7})
    unmerged = forward(backbone)
    adapter.merge(backbone, {"a": 0.7})
    assert torch.allclose(forward(backbone), unmerged, atol=1e-4)
    with pytest.raises(ConfigError, match="merged already"):
        adapter.merge(backbone, {"a": 1.0})
    adapter.unmerge(backbone)
    for k, v in backbone.denoiser.state_dict().items():
        if "lora_" not in k:
            assert torch.allclose(v, base_weights[k.replace(".base_layer", "")], atol=1e-5), k


def test_average_reproduces_the_mean_weight_change_exactly(backbone):
    adapter = LoRA()
    adapter.attach(backbone, "t0", roles=["spatial"], rank=2)
    adapter.attach(backbone, "t1", roles=["spatial"], rank=3, alpha=6.0)  # scale 2
    randomise(adapter, backbone, "t0", seed=1)
    randomise(adapter, backbone, "t1", seed=2)
    adapter.attach_average(backbone, "avg", ["t0", "t1"])
    for _, layer in lora_layers(backbone):
        if "avg" not in layer.lora_A:
            continue
        delta = {n: layer.lora_B[n].weight @ layer.lora_A[n].weight * layer.scaling[n] for n in ("t0", "t1", "avg")}
        assert layer.r["avg"] == 5
        assert torch.allclose(delta["avg"], (delta["t0"] + delta["t1"]) / 2, atol=1e-6)


def test_artifact_round_trip_is_bit_exact(tiny_model_dir, tmp_path):
    first = load_backbone(str(tiny_model_dir))
    adapter = LoRA()
    first.add_tokens(["<toy>"], ["circle"])
    adapter.attach(first, "s", roles=["spatial"], rank=3)
    randomise(adapter, first, "s")
    art = Artifact(kind="subject", backbone=first.name, fingerprint=first.fingerprint(), adapter="lora",
                   adapter_config={"rank": 3}, roles=["spatial"], tokens={"<toy>": "circle"},
                   adapter_tensors=adapter.state_dict(first, "s"), embeddings=first.token_embeddings(["<toy>"]))
    path = art.save(tmp_path / "toy.safetensors")
    adapter.activate(first, {"s": 1.0})
    expected = forward(first)

    second = load_backbone(str(tiny_model_dir))
    Artifact.load(path).install(second, LoRA(), "s", source=str(path))
    LoRA().activate(second, {"s": 1.0})
    loaded = LoRA().state_dict(second, "s")
    assert loaded.keys() == art.adapter_tensors.keys()
    assert all(torch.equal(loaded[k], art.adapter_tensors[k]) for k in loaded)
    assert torch.equal(second.token_embeddings(["<toy>"])["<toy>"], art.embeddings["<toy>"])
    assert torch.equal(forward(second), expected)


def test_artifact_for_another_model_config_is_refused(tiny_model_dir, any_tiny_model_dir, tmp_path):
    first = load_backbone(str(tiny_model_dir))
    other = load_backbone(str(any_tiny_model_dir))
    adapter = LoRA()
    adapter.attach(first, "s", roles=["spatial"])
    art = Artifact(kind="subject", backbone=first.name, fingerprint=first.fingerprint(), adapter="lora",
                   adapter_config={"rank": 4}, roles=["spatial"], adapter_tensors=adapter.state_dict(first, "s"))
    if other.fingerprint() == first.fingerprint():
        art.install(other, LoRA(), "s")  # the same config: accepted
        return
    with pytest.raises(ArtifactError, match="another zeroscope model config"):
        art.install(other, LoRA(), "s")


def test_missing_or_misshapen_keys_are_reported(backbone):
    adapter = LoRA()
    adapter.attach(backbone, "s", roles=["spatial"])
    tensors = adapter.state_dict(backbone, "s")
    dropped = dict(tensors)
    key = sorted(dropped)[0]
    del dropped[key]
    with pytest.raises(ArtifactError, match="1 expected LoRA tensors are missing"):
        adapter.load_state_dict(backbone, "s", dropped)
    wrong = {**tensors, key: torch.zeros(1, 1)}
    with pytest.raises(ArtifactError, match="another rank or model"):
        adapter.load_state_dict(backbone, "s", wrong)
