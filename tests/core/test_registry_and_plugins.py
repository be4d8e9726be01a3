"""The plugin kernel: registration, validation, selection and the errors that teach."""

from __future__ import annotations

import types

import pytest

import videomage
from videomage import plugins
from videomage.components import Metric
from videomage.errors import PluginError, RegistryError
from videomage.registry import Registry
from videomage.testing import MetricContract, registry_with


class Brightness(Metric):
    """Mean pixel value: the simplest weight-free metric."""

    name = "brightness"

    def compute(self, video, context):
        return {"brightness": float(video.mean())}


class OtherBrightness(Brightness):
    """Same name, different class: must collide."""


def make_plugin(name, **hooks):
    module = types.ModuleType(name)
    for hook_name, fn in hooks.items():
        fn = videomage.hookimpl(fn)
        setattr(module, hook_name, fn)
    return module


def returns(*classes):
    def register():
        return list(classes)

    return register


def test_registered_component_is_found_by_name():
    registry = registry_with(make_plugin("p", register_metrics=returns(Brightness)))
    assert registry.get("metric", "brightness") is Brightness
    assert registry.names("metric") == ["brightness"]


def test_duplicate_name_error_names_both_classes_and_plugins():
    a = make_plugin("plugin_a", register_metrics=returns(Brightness))
    b = make_plugin("plugin_b", register_metrics=returns(OtherBrightness))
    with pytest.raises(PluginError) as info:
        registry_with(a, b)
    message = str(info.value)
    assert "'brightness'" in message
    assert "Brightness" in message and "OtherBrightness" in message
    assert "plugin_a" in message and "plugin_b" in message


def test_unknown_hook_fails_at_start_naming_the_plugin():
    bad = make_plugin("sloppy_plugin", register_metric=returns(Brightness))  # missing the "s"
    with pytest.raises(PluginError, match="sloppy_plugin") as info:
        registry_with(bad)
    assert "register_metric" in str(info.value)
    assert "register_metrics" in str(info.value)  # lists the valid hooks


def test_wrong_return_type_names_the_plugin_and_base_class():
    bad = make_plugin("typo_plugin", register_metrics=returns(object))
    with pytest.raises(PluginError, match="typo_plugin.*not a subclass of videomage.Metric"):
        registry_with(bad)


def test_non_list_return_is_refused():
    def register():
        return Brightness

    with pytest.raises(PluginError, match="expected a list"):
        registry_with(make_plugin("p", register_metrics=register))


@pytest.mark.parametrize("bad_name", ["Bright", "bright-ness", "", "1bright", None])
def test_names_must_be_snake_case(bad_name):
    cls = type("Bad", (Brightness,), {"name": bad_name, "__doc__": "x"})
    with pytest.raises(PluginError, match="snake_case"):
        Registry().add("metric", cls, plugin="p")


def test_abstract_component_is_refused_listing_missing_methods():
    cls = type("Half", (Metric,), {"name": "half"})
    with pytest.raises(PluginError, match="does not implement compute"):
        Registry().add("metric", cls, plugin="p")


def test_unknown_name_lists_valid_choices_and_suggests():
    registry = registry_with(make_plugin("p", register_metrics=returns(Brightness)))
    with pytest.raises(RegistryError) as info:
        registry.get("metric", "brightnes")
    assert "Did you mean 'brightness'" in str(info.value)
    assert "Valid metrics: 'brightness'" in str(info.value)


def test_unknown_kind_is_a_clear_error():
    with pytest.raises(RegistryError, match="Valid kinds"):
        Registry().names("metrics")


def test_env_var_loads_none(monkeypatch):
    monkeypatch.setenv(plugins.ENV_VAR, "")
    pm = plugins.create_plugin_manager()
    assert pm.list_name_plugin() == []


def test_env_var_loads_only_named(monkeypatch):
    installed = sorted(ep.name for ep in plugins.importlib.metadata.entry_points(group=plugins.ENTRY_POINT_GROUP))
    if not installed:
        pytest.skip("no plugin installed")
    monkeypatch.setenv(plugins.ENV_VAR, installed[0])
    pm = plugins.create_plugin_manager()
    assert [name for name, _ in pm.list_name_plugin()] == [installed[0]]


def test_env_var_with_unknown_plugin_lists_installed(monkeypatch):
    monkeypatch.setenv(plugins.ENV_VAR, "no_such_plugin")
    with pytest.raises(PluginError, match="no_such_plugin.*not installed"):
        plugins.create_plugin_manager()


def test_nothing_is_loaded_at_import_time():
    import subprocess
    import sys

    code = "import videomage, videomage.plugins as p; print(len(p._state))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0"


class TestBrightnessContract(MetricContract):
    """The contract tests run against a metric defined here (and so can fail)."""

    @pytest.fixture
    def component_class(self):
        return Brightness

    @pytest.fixture
    def sample(self):
        import torch

        return torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)), {}


HOOK_KINDS = [
    ("register_backbones", "backbone"),
    ("register_adapters", "adapter"),
    ("register_objectives", "objective"),
    ("register_samplers", "sampler"),
    ("register_mask_sources", "mask_source"),
    ("register_metrics", "metric"),
    ("register_commands", "command"),
]


@pytest.mark.parametrize("hook,kind", HOOK_KINDS)
def test_each_registration_hook_feeds_its_kind_only(hook, kind):
    from videomage.registry import BASES

    base = BASES[kind]
    body = {name: (lambda *a, **k: None) for name in base.__abstractmethods__}
    body.update(name=f"minimal_{kind}", __doc__="A minimal component.")
    cls = type(f"Minimal{base.__name__}", (base,), body)
    registry = registry_with(make_plugin("p", **{hook: returns(cls)}))
    assert registry.get(kind, f"minimal_{kind}") is cls
    assert all(registry.names(other) == [] for _, other in HOOK_KINDS if other != kind)
