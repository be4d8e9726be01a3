"""The command line."""

from __future__ import annotations

import json
import types

import pytest

import videomage
from videomage import cli, plugins
from videomage.components import Command


class Hello(Command):
    """Say hello (a test command)."""

    name = "say_hello"
    help = "print a greeting"

    def add_arguments(self, parser):
        parser.add_argument("--who", default="world")

    def run(self, args):
        print(f"hello {args.who}")
        return 0


class Shadow(Hello):
    """Tries to replace the core `plugins` command."""

    name = "plugins"


def use_plugins(monkeypatch, *extra):
    monkeypatch.setenv(plugins.ENV_VAR, "")
    pm = plugins.create_plugin_manager(extra=list(extra))
    plugins.reset()
    monkeypatch.setitem(plugins._state, "pm", pm)


def module_with(name, **hooks):
    m = types.ModuleType(name)
    for k, fn in hooks.items():
        setattr(m, k, videomage.hookimpl(fn))
    return m


@pytest.fixture(autouse=True)
def _reset():
    yield
    plugins.reset()


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert videomage.__version__ in capsys.readouterr().out


def test_plugins_json_lists_every_kind(monkeypatch, capsys):
    use_plugins(monkeypatch)
    assert cli.main(["plugins", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["components"]) == {"backbone", "adapter", "objective", "sampler", "mask_source", "metric", "command"}


def test_plugin_command_runs_under_its_hyphenated_name(monkeypatch, capsys):
    use_plugins(monkeypatch, module_with("greeter", register_commands=lambda: [Hello]))
    assert cli.main(["say-hello", "--who", "toy"]) == 0
    assert capsys.readouterr().out.strip() == "hello toy"


def test_plugin_may_not_shadow_a_core_command(monkeypatch, capsys):
    use_plugins(monkeypatch, module_with("shadow", register_commands=lambda: [Shadow]))
    assert cli.main(["plugins"]) == 2
    assert "shadows a core command" in capsys.readouterr().err


def test_errors_are_printed_not_raised(monkeypatch, capsys):
    monkeypatch.setenv(plugins.ENV_VAR, "no_such_plugin")
    plugins.reset()
    assert cli.main(["plugins"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("videomage: error:") and "no_such_plugin" in err
