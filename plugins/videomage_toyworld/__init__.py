"""The toy world: a synthetic world of coloured shapes, the tiny base model trained on it, the
customisation cases it never saw, weight-free metrics and the ``videomage demo`` command.

Real text-to-video backbones cannot be downloaded on a laptop without a model hub, and random
weights show nothing. This plugin makes the whole method measurable on a CPU in minutes.
"""

from __future__ import annotations

from videomage import hookimpl


@hookimpl
def register_metrics() -> list[type]:
    from videomage_toyworld.metrics import METRICS

    return list(METRICS)


@hookimpl
def register_commands() -> list[type]:
    from videomage_toyworld.demo import DemoCommand

    return [DemoCommand]
