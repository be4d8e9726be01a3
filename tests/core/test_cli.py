"""The command line."""

from __future__ import annotations

import argparse
import json
import re
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
    assert cli.main(["plugins"]) == 1
    assert "shadows a core command" in capsys.readouterr().err


def test_errors_are_printed_not_raised(monkeypatch, capsys):
    monkeypatch.setenv(plugins.ENV_VAR, "no_such_plugin")
    plugins.reset()
    assert cli.main(["plugins"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("videomage: error:") and "no_such_plugin" in err


class Interrupted(Hello):
    """Stands for a long job the user stops with Ctrl-C."""

    name = "long_job"

    def run(self, args):
        raise KeyboardInterrupt


def test_exit_status_tells_usage_from_failure_from_interrupt(monkeypatch, capsys):
    use_plugins(monkeypatch, module_with("jobs", register_commands=lambda: [Interrupted]))
    with pytest.raises(SystemExit) as usage:
        cli.main(["learn-subject", "--images", "x"])  # required options missing
    assert usage.value.code == cli.EXIT_USAGE == 2
    assert "required" in capsys.readouterr().err
    assert cli.main(["long-job"]) == cli.EXIT_INTERRUPTED == 130
    assert "resume" in capsys.readouterr().err
    # A well-formed command line whose run fails: 1, with the error printed, not raised.
    assert cli.main(["generate", "--model", "no/such/folder", "--prompt", "x", "--out", "x.mp4"]) == cli.EXIT_FAILED == 1
    err = capsys.readouterr().err
    assert err.startswith("videomage: error: model folder 'no/such/folder' does not exist")


def test_top_level_help_documents_the_exit_status(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for status in ("0 ", "1 ", "2 ", "130 "):
        assert re.search(rf"^  {status}", out, re.M), f"exit status {status.strip()} is not explained"


def option_entries(help_text: str) -> dict[str, str]:
    """Each option of a --help text, by its first flag, with its help joined into one line."""
    entries: dict[str, str] = {}
    current = None
    for line in help_text.splitlines():
        m = re.match(r"^  (-[-\w]+)", line)
        if m:
            current = m.group(1)
            entries[current] = line[m.end():]
        elif current and line.startswith("    "):
            entries[current] += " " + line.strip()
        else:
            current = None
    return {flag: " ".join(text.split()) for flag, text in entries.items()}


def test_every_option_of_every_command_has_help_and_a_default():
    parser, _ = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert {"learn-subject", "learn-motion", "fuse", "generate", "run", "plugins", "demo"} <= set(sub.choices)
    missing = []
    for name, command in sub.choices.items():
        entries = option_entries(command.format_help())
        # Deprecated aliases are hidden from the help (argparse.SUPPRESS) and still accepted.
        options = [a for a in command._actions if a.option_strings and a.option_strings[0] != "-h"
                   and a.help is not argparse.SUPPRESS]
        assert options, name
        for action in options:
            flag = action.option_strings[0]
            text = entries.get(flag, "")
            if len((action.help or "").split()) < 2:
                missing.append(f"{name} {flag}: no help line ({text!r})")
            if not re.search(r"\(default: [^)]+\)|\(required\)", text) or "(default: None)" in text:
                missing.append(f"{name} {flag}: no default shown ({text!r})")
    assert not missing, "\n".join(missing)
