"""Contract tests per component kind.

Subclass a contract in your own test module and provide the fixtures it names; pytest then
runs every check below against your component. Example::

    from videomage.testing import MetricContract

    class TestMyMetric(MetricContract):
        @pytest.fixture
        def component_class(self):
            return MyMetric

        @pytest.fixture
        def sample(self):
            return video, {"prompt": "a red circle"}

Each check asserts a property of the interface that a broken component would violate.
"""

from __future__ import annotations

import argparse
import math

import pytest
import torch

from videomage.components import Adapter, Backbone
from videomage.errors import VideomageError
from videomage.registry import BASES, Registry


class ComponentContract:
    """Checks every component kind shares. Fixture: ``component_class``."""

    kind: str = ""

    def test_registers_cleanly(self, component_class):
        registry = Registry()
        registry.add(self.kind, component_class, plugin="contract-test")
        assert registry.get(self.kind, component_class.name) is component_class

    def test_is_the_right_kind(self, component_class):
        assert issubclass(component_class, BASES[self.kind])

    def test_has_a_docstring(self, component_class):
        # Components are documented from their docstrings; an undocumented one is a bug.
        assert (component_class.__doc__ or "").strip(), f"{component_class.__qualname__} has no docstring"


class MetricContract(ComponentContract):
    """Fixtures: ``component_class``; ``sample`` -> ``(video [F,3,H,W] in [0,1], context)``."""

    kind = "metric"

    def test_scores_are_finite_floats(self, component_class, sample):
        video, context = sample
        scores = component_class().compute(video, context)
        assert scores, "a metric must return at least one score"
        for key, value in scores.items():
            assert isinstance(key, str) and isinstance(value, float), (key, value)
            assert math.isfinite(value), f"score {key} is {value}"

    def test_is_deterministic(self, component_class, sample):
        video, context = sample
        assert component_class().compute(video, context) == component_class().compute(video.clone(), context)


class MaskSourceContract(ComponentContract):
    """Fixtures: ``component_class``; ``sample`` -> ``(video [F,3,H,W] in [0,1], subject word)``."""

    kind = "mask_source"

    def test_mask_shape_and_range(self, component_class, sample):
        video, subject = sample
        masks = component_class().masks(video, subject=subject)
        f, _, h, w = video.shape
        assert masks.shape == (f, h, w)
        assert float(masks.min()) >= 0.0 and float(masks.max()) <= 1.0


class CommandContract(ComponentContract):
    """Fixture: ``component_class``."""

    kind = "command"

    def test_declares_arguments_and_help(self, component_class):
        command = component_class()
        parser = argparse.ArgumentParser(prog=component_class.name)
        command.add_arguments(parser)
        assert component_class.help, "a command needs a one-line help text for `videomage --help`"
        assert parser.format_help()


class ObjectiveContract(ComponentContract):
    """Fixtures: ``component_class``; ``objective_case`` -> ``(ctx, batch)``.

    ``ctx.trained`` names the adapters whose parameters the loss trains.
    """

    kind = "objective"

    def test_loss_is_a_finite_scalar(self, component_class, objective_case):
        ctx, batch = objective_case
        out = component_class().loss(ctx, batch)
        assert out.loss.ndim == 0 and torch.isfinite(out.loss)
        for key, value in out.logs.items():
            assert isinstance(key, str) and math.isfinite(float(value))

    def test_gradients_reach_trained_parameters_only(self, component_class, objective_case):
        ctx, batch = objective_case
        params = [p for name in ctx.trained for p in ctx.adapter.parameters(ctx.backbone, name)]
        for p in params:
            p.grad = None
        component_class().loss(ctx, batch).loss.backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params), "no trained parameter got a gradient"
        frozen = [p for p in ctx.backbone.denoiser.parameters() if not p.requires_grad]
        assert all(p.grad is None for p in frozen), "a frozen base weight received a gradient"


class BackboneContract:
    """Fixture: ``backbone`` (a loaded instance, tiny)."""

    def test_is_a_backbone(self, backbone):
        assert isinstance(backbone, Backbone)
        Registry().add("backbone", type(backbone), plugin="contract-test")

    def test_roles_are_non_empty_and_disjoint(self, backbone):
        seen: dict[str, str] = {}
        for role in backbone.roles:
            modules = backbone.role_modules(role)
            assert modules, f"role {role!r} has no modules"
            for name in modules:
                assert name not in seen, f"{name} is in roles {seen[name]!r} and {role!r}"
                seen[name] = role

    def test_unknown_role_is_a_clear_error(self, backbone):
        with pytest.raises(VideomageError, match="role"):
            backbone.role_modules("no_such_role")

    def test_base_weights_are_frozen(self, backbone):
        assert not any(p.requires_grad for p in backbone.denoiser.parameters())

    def test_video_round_trip_shapes(self, backbone):
        # The native frame count, which every VAE takes whole (one that compresses time may
        # refuse others); latent_shape must agree with what encode_video produces.
        spec = backbone.video_spec
        video = torch.rand(1, spec.frames, 3, spec.height, spec.width)
        latents = backbone.encode_video(video)
        assert latents.ndim == 5 and latents.shape[0] == 1
        assert tuple(latents.shape[1:]) == tuple(backbone.latent_shape(spec.frames, spec.height, spec.width))
        decoded = backbone.decode_latents(latents)
        assert decoded.shape == video.shape
        assert float(decoded.min()) >= 0.0 and float(decoded.max()) <= 1.0

    def test_prediction_matches_latent_shape(self, backbone):
        spec = backbone.video_spec
        latents = backbone.encode_video(torch.rand(2, spec.frames, 3, spec.height, spec.width))
        embeds = backbone.encode_prompt(["a photo", "a video"])
        t = backbone.sample_timesteps(2, torch.Generator().manual_seed(0))
        with torch.no_grad():
            out = backbone.predict(latents, t, embeds)
        assert out.shape == latents.shape

    def test_fingerprint_is_stable(self, backbone):
        assert isinstance(backbone.fingerprint(), str) and backbone.fingerprint() == backbone.fingerprint()

    def test_learned_token_round_trip(self, backbone):
        backbone.add_tokens(["<contract>"], ["photo"])
        vec = torch.full_like(next(iter(backbone.token_embeddings(["<contract>"]).values())), 0.25)
        backbone.set_token_embeddings({"<contract>": vec})
        assert torch.equal(backbone.token_embeddings(["<contract>"])["<contract>"], vec)
        assert backbone.word_positions("a <contract> video", "<contract>")
        # The trainable row is the token's own, in float32 whatever the model's dtype.
        (row,) = backbone.token_parameters(["<contract>"]).values()
        assert row.dtype == torch.float32 and torch.equal(row.detach(), vec.float())

    def test_word_positions_by_occurrence(self, backbone):
        import inspect

        if "occurrence" not in inspect.signature(backbone.word_positions).parameters:
            pytest.skip("word_positions takes no 'occurrence' (SCS then matches first occurrences only)")
        first, second = (backbone.word_positions("a video and a video", "video", occurrence=k) for k in (0, 1))
        assert first and second and first[-1] < second[0]
        assert backbone.word_positions("a video and a video", "video", occurrence=2) == []

    def test_attention_capture_shapes(self, backbone):
        spec = backbone.video_spec
        latents = backbone.encode_video(torch.rand(1, spec.frames, 3, spec.height, spec.width))
        frames = latents.shape[2]  # maps have one entry per *latent* frame
        embeds = backbone.encode_prompt(["a photo"])
        t = backbone.sample_timesteps(1, torch.Generator().manual_seed(0))
        with torch.no_grad(), backbone.capture_attention(cross_tokens=[1, 2], temporal=True) as store:
            backbone.predict(latents, t, embeds)
        assert store.cross and store.temporal
        for m in store.cross:
            assert m.shape[:3] == (1, 2, frames)
        for m in store.temporal:
            assert m.shape[0] == 1 and m.shape[-2:] == (frames, frames)
            assert torch.allclose(m.sum(-1), torch.ones(()), atol=1e-4)


    def test_experts_partition_roles_and_timesteps(self, backbone):
        # A mixture-of-experts backbone: each expert's roles split the plain role, each expert
        # draws training timesteps only where it denoises, and the defaults name real experts.
        if not backbone.experts:
            assert backbone.expert_at(500.0) is None
            return
        g = torch.Generator().manual_seed(0)
        for role in backbone.roles:
            parts = [set(backbone.role_modules(f"{e}.{role}")) for e in backbone.experts]
            assert all(parts) and sum(map(len, parts)) == len(set().union(*parts))
            assert set().union(*parts) == set(backbone.role_modules(role))
            assert set(backbone.default_experts(role)) <= set(backbone.experts)
        for expert in backbone.experts:
            t = backbone.sample_expert_timesteps(64, [expert], g)
            assert {backbone.expert_at(float(x)) for x in t} == {expert}


class AdapterContract(ComponentContract):
    """Fixtures: ``component_class`` and ``backbone`` (a fresh tiny instance per test)."""

    kind = "adapter"

    def _forward(self, backbone):
        spec = backbone.video_spec
        g = torch.Generator().manual_seed(0)
        latents = backbone.encode_video(torch.rand(1, spec.frames, 3, spec.height, spec.width, generator=g))
        with torch.no_grad():
            return backbone.predict(latents, torch.tensor([10]), backbone.encode_prompt(["a video"]))

    def test_fresh_adapter_leaves_outputs_unchanged(self, component_class, backbone):
        before = self._forward(backbone)
        adapter: Adapter = component_class()
        adapter.attach(backbone, "fresh", roles=[backbone.roles[0]])
        adapter.activate(backbone, {"fresh": 1.0})
        assert torch.allclose(self._forward(backbone), before, atol=1e-6)

    def test_state_dict_round_trip(self, component_class, backbone):
        adapter: Adapter = component_class()
        adapter.attach(backbone, "a", roles=[backbone.roles[0]])
        with torch.no_grad():
            for p in adapter.parameters(backbone, "a"):
                p.normal_()
        saved = adapter.state_dict(backbone, "a")
        adapter.attach(backbone, "b", roles=[backbone.roles[0]])
        adapter.load_state_dict(backbone, "b", saved)
        loaded = adapter.state_dict(backbone, "b")
        assert saved.keys() == loaded.keys()
        assert all(torch.equal(saved[k], loaded[k]) for k in saved)


class SamplerContract(ComponentContract):
    """Fixtures: ``component_class``; ``sampler_case`` -> ``(backbone, adapter, request)``."""

    kind = "sampler"

    def test_latent_shape_and_seed_determinism(self, component_class, sampler_case):
        backbone, adapter, request = sampler_case
        a = component_class().sample(backbone, adapter, request)
        b = component_class().sample(backbone, adapter, request)
        assert a.ndim == 5 and torch.isfinite(a).all()
        assert torch.equal(a, b), "the same request and seed must give the same latents"


__all__ = [
    "AdapterContract",
    "BackboneContract",
    "CommandContract",
    "ComponentContract",
    "MaskSourceContract",
    "MetricContract",
    "ObjectiveContract",
    "SamplerContract",
]
