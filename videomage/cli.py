"""The ``videomage`` command line: core commands plus those plugins register.

Plugin commands are [`Command`][videomage.components.Command] classes; a command named
``learn_subject`` is invoked as ``videomage learn-subject``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from videomage._version import __version__
from videomage.errors import PluginError, VideomageError
from videomage.plugins import get_commands, get_plugin_manager, get_registry, plugin_versions

CORE_COMMANDS = ("plugins", "learn-subject", "learn-motion", "fuse", "generate", "run", "plan")

#: Exit statuses, as ``videomage --help`` and the docs' command-line page list them.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

EPILOG = """\
exit status:
  0    success
  1    the run failed: a bad input, an unknown component, a stage that could
       not finish (the message says which, and how to fix it)
  2    the command line is wrong: an unknown option, a missing or malformed value
  130  interrupted (Ctrl-C); re-running a training stage resumes from its last
       checkpoint

Run 'videomage COMMAND --help' for the options of one command."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default, or says that it is required.

    Like ``argparse.ArgumentDefaultsHelpFormatter``, except that a help text which already
    explains its default is left alone, an off switch reads "(default: off)" rather than
    "(default: False)", and an option without a default adds nothing (its help says what
    happens when it is omitted).
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or action.default is argparse.SUPPRESS or "(default:" in text:
            return text
        if action.required:
            return f"{text} (required)"
        if action.nargs == 0 and action.default is False:
            return f"{text} (default: off)"
        if action.default is None:
            return text
        return f"{text} (default: %(default)s)"


def cli_name(name: str) -> str:
    return name.replace("_", "-")


def plugins_report(options: bool = False) -> dict:
    """What ``videomage plugins --json`` prints: plugins, versions and components by kind
    (with ``options``: each component's options with their defaults)."""
    pm = get_plugin_manager()
    registry = get_registry()
    versions = plugin_versions(pm)
    plugins = {name: {"name": name, "version": versions[name], "components": {}} for name in versions}
    components: dict[str, list[dict]] = {kind: [] for kind in registry.kinds()}
    for entry in registry:
        item = {"name": entry.name, "plugin": entry.plugin, "class": f"{entry.cls.__module__}.{entry.cls.__qualname__}"}
        if options:
            item["options"] = component_options(registry, entry.kind, entry.name)
        components[entry.kind].append(item)
        if entry.plugin in plugins:
            plugins[entry.plugin]["components"].setdefault(entry.kind, []).append(entry.name)
    return {"videomage": __version__, "plugins": sorted(plugins.values(), key=lambda p: p["name"]), "components": components}


def component_options(registry, kind: str, name: str) -> list[dict]:
    from videomage.options import build_describe

    return build_describe(registry.options_class(kind, name))


def _print_plugins(as_json: bool, options: bool = False) -> int:
    report = plugins_report(options)
    if as_json:
        print(json.dumps(report, indent=2, default=repr))
        return 0
    print(f"videomage {report['videomage']}")
    print("\nPlugins:")
    for p in report["plugins"]:
        print(f"  {p['name']} {p['version']}")
    if not report["plugins"]:
        print("  (none loaded)")
    print("\nComponents:")
    for kind, items in report["components"].items():
        if options:
            print(f"  {kind}:" + ("" if items else " -"))
            for c in items:
                print(f"    {c['name']} ({c['plugin']})" + ("" if c["options"] else ": no options"))
                for o in c["options"]:
                    note = f"  {o['help']}" if o["help"] else ""
                    print(f"      {o['name']} = {o['default']!r}{note}")
            continue
        names = ", ".join(f"{c['name']} ({c['plugin']})" for c in items) or "-"
        print(f"  {kind}: {names}")
    return 0


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, object]]:
    parser = argparse.ArgumentParser(
        prog="videomage",
        description="Customize text-to-video diffusion models with several subjects and their interactive motion.",
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"videomage {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("plugins", help="list installed plugins, their versions and components",
                       description="List installed plugins, their versions and components.", formatter_class=HelpFormatter)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--options", action="store_true", help="also list every component's options with their defaults")
    commands: dict[str, object] = {}
    from videomage.commands import STAGE_COMMANDS

    for cls in STAGE_COMMANDS:
        command = cls()
        cp = sub.add_parser(cli_name(cls.name), help=cls.help, description=cls.__doc__, formatter_class=HelpFormatter)
        command.add_arguments(cp)
        commands[cli_name(cls.name)] = command
    for entry in get_commands().entries("command"):
        name = cli_name(entry.name)
        if name in CORE_COMMANDS:
            raise PluginError(
                f"plugin {entry.plugin!r} registers command {entry.name!r}, which shadows a core command; rename it"
            )
        command = entry.cls()
        cp = sub.add_parser(name, help=command.help, description=command.help, formatter_class=HelpFormatter)
        command.add_arguments(cp)
        commands[name] = command
    return parser, commands


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (argparse itself exits 2 on a bad command line)."""
    try:
        parser, commands = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 0
        if args.command == "plugins":
            return _print_plugins(args.json, args.options)
        return int(commands[args.command].run(args) or 0)
    except VideomageError as exc:
        print(f"videomage: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("videomage: interrupted; long jobs resume from their last checkpoint when re-run", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
