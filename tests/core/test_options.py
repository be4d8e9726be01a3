"""Component options: records built from plain data, 0.1-style plugins, listings, deprecated aliases."""

from __future__ import annotations

import json
import warnings

import attrs
import pytest

import videomage
from videomage import cli, plugins
from videomage.config import SamplingConfig, SubjectConfig
from videomage.errors import ConfigError, PluginError, RegistryError
from videomage.options import build, keyed, parse_assignments
from videomage.registry import Registry


@pytest.fixture(autouse=True)
def _reset():
    yield
    plugins.reset()


class OldStyle(videomage.Objective):
    """A plugin written against videomage 0.1: options are constructor keywords with defaults."""

    name = "old_style"

    def __init__(self, scale: float = 1.0, steps: int = 3, mode: str = "a", on: bool = True) -> None:
        self.scale, self.steps, self.mode, self.on = scale, steps, mode, on

    def loss(self, ctx, batch):
        raise NotImplementedError


def registry_with(*classes) -> Registry:
    registry = Registry()
    for cls in classes:
        registry.add(cls.kind if hasattr(cls, "kind") else "objective", cls, plugin="test")
    return registry


def test_unknown_option_gets_did_you_mean_and_the_valid_options():
    registry = plugins.get_registry()
    with pytest.raises(ConfigError) as err:
        registry.build_options("sampler", "scs", {"taw": 10})
    text = str(err.value)
    assert "sampler 'scs'" in text and "unknown option 'taw'" in text and "Did you mean 'tau'?" in text
    assert "'alpha_cross'" in text and "'beta_s'" in text  # the valid options are listed


def test_wrong_value_names_field_expectation_and_value():
    registry = plugins.get_registry()
    with pytest.raises(ConfigError, match=r"sampler 'scs'.*tau: expected a whole number >= 0, got -1"):
        registry.build_options("sampler", "scs", {"tau": -1})
    with pytest.raises(ConfigError, match=r"objective 'denoise'.*lambda_reg: expected a finite number >= 0, got 'x'"):
        registry.create("objective", "denoise", lambda_reg="x")
    with pytest.raises(ConfigError, match=r"guidance_norm: expected one of 'none', 'rms', got 'rns'.*Did you mean 'rms'"):
        registry.build_options("sampler", "scs", {"guidance_norm": "rns"})
    record = registry.build_options("sampler", "scs", {"tau": 10, "alpha_cross": 5})  # an int where a float goes
    assert record.tau == 10 and record.alpha_cross == 5.0 and isinstance(record.alpha_cross, float)
    assert attrs.has(type(record)) and type(record).__setattr__ is not object.__setattr__  # frozen
    with pytest.raises(TypeError):
        type(record)(10)  # keyword-only


def test_a_0_1_plugin_gets_a_record_derived_from_its_constructor():
    registry = registry_with(OldStyle)
    record = registry.build_options("objective", "old_style", {"scale": 2, "mode": "b"})
    assert (record.scale, record.steps, record.mode, record.on) == (2.0, 3, "b", True)
    made = registry.create("objective", "old_style", steps=5)
    assert (made.scale, made.steps) == (1.0, 5)
    with pytest.raises(ConfigError, match=r"unknown option 'scal'.*Did you mean 'scale'"):
        registry.create("objective", "old_style", scal=2)
    with pytest.raises(ConfigError, match=r"steps: expected a whole number, got 2.5"):
        registry.create("objective", "old_style", steps=2.5)
    with pytest.raises(ConfigError, match=r"on: expected true or false, got 'yes'"):
        registry.create("objective", "old_style", on="yes")


def test_a_constructor_argument_without_default_is_refused_at_registration():
    class NoDefault(OldStyle):
        name = "no_default"

        def __init__(self, size) -> None:
            self.size = size

    with pytest.raises(PluginError, match=r"plugin 'test'.*'size' has no default"):
        registry_with(NoDefault)


def test_plugins_options_lists_every_component_with_defaults(capsys):
    assert cli.main(["plugins", "--options", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    by_name = {c["name"]: c for kind in report["components"].values() for c in kind}
    scs = {o["name"]: o for o in by_name["scs"]["options"]}
    assert scs["tau"]["default"] == 15 and scs["guidance_norm"]["default"] == "rms" and scs["tau"]["help"]
    assert scs["guidance_checkpointing"]["neutral"] is True
    assert {o["name"]: o["default"] for o in by_name["denoise"]["options"]} == {"lambda_reg": 0.25}
    assert {o["name"]: o["default"] for o in by_name["foreground"]["options"]} == {"threshold": 0.2}
    assert all("options" in c for c in by_name.values())
    assert cli.main(["plugins", "--options"]) == 0
    assert "tau = 15" in capsys.readouterr().out


def test_options_from_the_command_line_are_read_as_toml_values():
    assert parse_assignments(["tau=10", "alpha_cross=5e3", "guidance_norm=none", "guidance_checkpointing=false",
                              "motion_prompt=a dog"]) == {
        "tau": 10, "alpha_cross": 5e3, "guidance_norm": "none", "guidance_checkpointing": False, "motion_prompt": "a dog"}
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_assignments(["tau"])


def test_neutral_options_leave_result_keys():
    record = build(plugins.get_registry().get("sampler", "scs"), {"guidance_checkpointing": False})
    assert "guidance_checkpointing" not in keyed(record) and "tau" in keyed(record)


def test_deprecated_config_fields_map_to_options_with_a_warning():
    with pytest.warns(FutureWarning, match=r"tau, beta_s, beta_m: deprecated.*options = \{ tau = 3"):
        s = SamplingConfig(prompt="x", tau=3, beta_s=0.25, beta_m=0.75)
    assert s.options == {"tau": 3, "beta_s": 0.25, "beta_m": 0.75} and s.tau is None
    with pytest.warns(FutureWarning, match="lambda_reg"):
        sub = SubjectConfig(token="<a>", class_word="a", images=".", lambda_reg=0.0)
    assert sub.objective == "denoise" and sub.objective_options == {"lambda_reg": 0.0}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SamplingConfig(prompt="x", options={"tau": 3})  # the new spelling warns nothing


def test_deselected_plugin_is_named_as_the_provider(monkeypatch):
    monkeypatch.setenv(plugins.ENV_VAR, "zeroscope,lora")
    plugins.reset()
    with pytest.raises(RegistryError) as err:
        plugins.get_registry().get("sampler", "scs")
    text = str(err.value)
    assert "provided by plugin 'samplers'" in text and "not loaded" in text and "VIDEOMAGE_LOAD_PLUGINS" in text
    with pytest.raises(RegistryError, match="provided by plugin 'objectives'"):
        plugins.get_registry().create("objective", "denoise")
    with pytest.raises(RegistryError, match=r"unknown sampler 'nope'"):  # nobody provides it: the usual message
        plugins.get_registry().get("sampler", "nope")


def test_docs_render_every_bundled_components_options():
    from pathlib import Path

    from videomage.options import markdown

    text = markdown(plugins.get_registry())
    for name in ("scs", "cfg", "denoise", "negative_cfg_motion", "fusion_distill", "attention_reg", "foreground", "lora"):
        assert f"`{name}`" in text, name
    assert "| `tau` | `15` |" in text and "| `lambda_reg` | `0.25` |" in text and "| `omega` | `0.5` |" in text
    root = Path(__file__).resolve().parents[2]
    assert "<!-- component-options -->" in (root / "docs" / "reference" / "components.md").read_text()
    assert "docs/_hooks/component_options.py" in (root / "mkdocs.yml").read_text()


def test_a_recipe_names_its_components_and_the_workflow_uses_its_adapter(tmp_path, tiny_model_dir, monkeypatch):
    import imageio.v3 as iio
    import numpy as np

    from videomage import workflow
    from videomage.config import ModelConfig, Recipe

    (tmp_path / "toy").mkdir()
    iio.imwrite(tmp_path / "toy" / "0.png", np.zeros((16, 16, 3), np.uint8))

    def recipe(**model):
        return Recipe(model=ModelConfig(id=str(tiny_model_dir), **model),
                      subjects=[SubjectConfig(token="<toy>", class_word="toy", images=tmp_path / "toy",
                                              objective_options={"lambda_reg": 0.5})],
                      sampling=SamplingConfig(prompt="a <toy>", sampler="cfg"))

    with pytest.raises(RegistryError, match=r"\[model\] adapter: unknown adapter 'lorra'.*Did you mean 'lora'"):
        workflow.check_components(recipe(adapter="lorra"))
    with pytest.raises(ConfigError, match=r"\[model\] adapter: adapter 'lora': unknown option 'rank'"):
        workflow.check_components(recipe(adapter_options={"rank": 4}))
    bad = attrs.evolve(recipe(), subjects=[SubjectConfig(token="<toy>", class_word="toy", images=tmp_path / "toy",
                                                         objective_options={"lambda_rg": 0.5})])
    with pytest.raises(ConfigError, match=r"\[\[subjects\]\] 1 objective: objective 'denoise': unknown option "
                                          r"'lambda_rg'. Did you mean 'lambda_reg'"):
        workflow.check_components(bad)
    made = []

    class Stop(Exception):
        pass

    def fake_make_adapter(name, options):
        made.append((name, options))
        raise Stop

    monkeypatch.setattr(workflow, "load_backbone", lambda *a, **k: None)
    monkeypatch.setattr(workflow, "make_adapter", fake_make_adapter)
    with pytest.raises(Stop):
        workflow._run(recipe(adapter="lora", adapter_options={}), progress=False, log=lambda _: None)
    assert made == [("lora", {})]


def test_fuse_names_its_three_components_and_passes_each_its_options(monkeypatch, tmp_path, capsys):
    """``fuse`` takes each fusion component by name with its own ``--X-option``; an option the
    component lacks is refused before anything is loaded."""
    import videomage.commands as commands
    import videomage.stages.fusion as fusion
    from videomage.cli import main

    seen = {}
    monkeypatch.setattr(fusion, "load_subjects", lambda paths: None)
    monkeypatch.setattr(fusion, "fuse", lambda bb, ad, subjects, config, opts: seen.setdefault("config", config))
    monkeypatch.setattr(commands, "_check_job", lambda *a, **k: None)
    monkeypatch.setattr(commands, "_setup", lambda *a, **k: (None, None, None))
    monkeypatch.setattr(commands, "_save", lambda artifact, out: 0)
    monkeypatch.setattr(commands, "_release", lambda args: None)
    base = ["fuse", "--model", str(tmp_path), "--subjects", "a.safetensors", "b.safetensors", "--out", str(tmp_path / "f.safetensors")]
    assert main([*base, "--mask-source-option", "threshold=0.3"]) == 0
    config = seen["config"]
    assert config.mask_source_options == {"threshold": 0.3}
    assert (config.mask_source, config.distill_objective, config.attention_objective) == ("foreground", "fusion_distill", "attention_reg")
    seen.clear()
    assert main([*base, "--mask-source-option", "treshold=0.3"]) == 1  # an unknown component option: a bad input
    assert "Did you mean 'threshold'" in capsys.readouterr().err and "config" not in seen
    assert main([*base, "--distill", "no_such_loss"]) == 1
    assert "no_such_loss" in capsys.readouterr().err
