"""``videomage plan``: will a job fit, and how long will it take? Printed before anything loads.

See :mod:`videomage.planning` for how the figures are measured.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import attrs

from videomage.components import Command
from videomage.config import SamplingConfig, default
from videomage.errors import ConfigError
from videomage.planning import GIB, STAGES, PlanRequest, StageEstimate, plan, suggest

#: Sustained throughput the times assume unless ``--tflops`` says otherwise: about 40% of an
#: H100's dense bf16 peak, what a well-fed training step reaches.
DEFAULT_TFLOPS = 400.0


def _gib(n: float) -> str:
    return f"{n / GIB:.1f} GiB" if n >= GIB / 10 else f"{n / 2**20:.1f} MiB"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"


def report(request: PlanRequest, estimates: list[StageEstimate], tflops: float) -> str:
    size = "x".join(str(v) for v in (request.frames, request.height, request.width)) if request.frames else "native size"
    lines = [f"videomage plan: {request.model} ({request.dtype}), video {size}, "
             f"activation checkpointing {'on' if request.gradient_checkpointing else 'off'}, "
             f"text encoder {'released after encoding' if request.release_text_encoder else 'kept on the device'}",
             f"{'stage':<9} {'device peak':>12} {'weights':>10} {'working':>10} {'released':>10} {'host':>10} {'per step':>10} "
             f"{'steps':>6} {'stage time':>11}"]
    for e in estimates:
        lines.append(f"{e.stage:<9} {_gib(e.device_bytes):>12} {_gib(e.weights_bytes):>10} {_gib(e.working_bytes):>10} "
                     f"{_gib(e.released_bytes) if e.released_bytes else '-':>10} "
                     f"{_gib(e.host_bytes):>10} {_duration(e.seconds(tflops)):>10} {e.steps:>6} "
                     f"{_duration(e.total_seconds(tflops)):>11}")
    lines.append(f"times at {tflops:g} TFLOP/s sustained (--tflops); 'per step' of generate is a guided SCS step.")
    return "\n".join(lines)


def request_from_args(args: argparse.Namespace) -> tuple[PlanRequest, list[str]]:
    """The request and stages from the flags, or from ``--recipe`` with the flags overriding its size."""
    stages = list(args.stage or STAGES)
    size = {"frames": args.frames, "height": args.height, "width": args.width}
    if args.recipe is not None:
        from videomage.config import Recipe

        recipe = Recipe.from_toml(args.recipe)
        s = recipe.sampling
        options = {**(s.options if s else {}), **_sampler_options(args)}  # -o over the recipe's
        stages = [name for name, present in (("subject", bool(recipe.subjects)), ("motion", recipe.motion is not None),
                                             ("fusion", len(recipe.subjects) > 1), ("generate", s is not None)) if present]
        if s is not None:
            size = {k: v if v is not None else getattr(s, k) for k, v in size.items()}
        request = PlanRequest(model=recipe.model.id, backbone=recipe.model.backbone, dtype=args.dtype or recipe.model.dtype,
                              gradient_checkpointing=args.gradient_checkpointing or recipe.model.gradient_checkpointing,
                              subjects=max(len(recipe.subjects), 1),
                              release_text_encoder=args.release_text_encoder or recipe.model.release_text_encoder,
                              sampler=s.sampler if s else default(SamplingConfig, "sampler"), steps=s.steps if s else 50,
                              tau=_guided_steps(s.sampler, options) if s else 15, sampler_options=options, **size)
        return request, stages
    if not args.model:
        raise ConfigError("plan: pass --model (a Hub id or a local folder) or --recipe (a .toml recipe)")
    options = _sampler_options(args)
    request = PlanRequest(model=args.model, backbone=args.backbone, dtype=args.dtype or "bfloat16",
                          gradient_checkpointing=args.gradient_checkpointing, rank=args.rank, subjects=args.subjects,
                          release_text_encoder=args.release_text_encoder, sampler=args.sampler, steps=args.steps,
                          tau=_guided_steps(args.sampler, options, args.tau), sampler_options=options, **size)
    return request, stages


def _sampler_options(args: argparse.Namespace) -> dict:
    from videomage.options import parse_assignments

    return parse_assignments(getattr(args, "option", None))


def _guided_steps(sampler: str, options: dict, default: int | None = None) -> int:
    """The guided steps the plan counts: the sampler's ``guided_steps_option`` where ``options`` set
    it, else ``default`` (``--tau``), else the option's own default. A sampler without such an
    option counts ``default`` where given (``--tau``), else 0."""
    from videomage.planning import guided_option
    from videomage.plugins import get_registry

    option = guided_option(sampler)
    if option is None:
        return 0 if default is None else default
    if option not in options and default is not None:
        return default
    return int(getattr(get_registry().build_options("sampler", sampler, options), option))


class Plan(Command):
    """Estimate each stage's peak accelerator memory, host memory and time per step, before loading anything."""

    name = "plan"
    help = "estimate memory and time of each stage from the model's configs, without loading weights"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--model", help="a Hub id (the published Wan 2.1 and ZeroScope ids need no download) or a "
                                            "local folder (diffusers layout; only its configs are read) (default: the recipe's)")
        parser.add_argument("--recipe", type=Path, help="plan the stages of a recipe: its model, subjects and sampling (default: none, use --model)")
        parser.add_argument("--backbone", help="backbone family (default: detected from the model)")
        parser.add_argument("--dtype", choices=["float32", "float16", "bfloat16"],
                            help="the base model's dtype (default: bfloat16, or the recipe's)")
        parser.add_argument("--stage", action="append", choices=STAGES,
                            help="a stage to plan; repeat for several (default: all, or the recipe's)")
        parser.add_argument("--frames", type=int, help="video frames (default: the model's native count)")
        parser.add_argument("--height", type=int, help="video height (default: the model's native height)")
        parser.add_argument("--width", type=int, help="video width (default: the model's native width)")
        parser.add_argument("--gradient-checkpointing", action="store_true",
                            help="plan the training stages with activation checkpointing (default: off)")
        parser.add_argument("--release-text-encoder", action="store_true",
                            help="plan the stages with the text encoder moved to host memory once their prompts are "
                                 "encoded (motion, fusion, generate; subject learning keeps it) (default: off)")
        parser.add_argument("--rank", type=int, default=4, help="LoRA rank of subjects and motion (default: 4)")
        parser.add_argument("--subjects", type=int, default=2, help="subjects fused (default: 2)")
        parser.add_argument("--sampler", default=default(SamplingConfig, "sampler"), help="sampler of the final video")
        parser.add_argument("--steps", type=int, default=50, help="sampling steps (default: 50)")
        parser.add_argument("--tau", type=int, default=15, help="guided SCS steps (default: 15)")
        parser.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE", dest="option",
                            help="an option of the sampler, as generate's -o takes it; repeat for several "
                                 "(default: its defaults, or the recipe's [sampling.options])")
        parser.add_argument("--budget", type=float,
                            help="accelerator memory in GiB: say which settings bring every stage under it (default: none)")
        parser.add_argument("--tflops", type=float, default=DEFAULT_TFLOPS,
                            help=f"sustained TFLOP/s the times assume (default: {DEFAULT_TFLOPS:g}, about 40%% of an "
                                 f"H100's bf16 peak; take 0.4 x your card's)")
        parser.add_argument("--json", action="store_true", help="machine-readable output")

    def run(self, args: argparse.Namespace) -> int:
        request, stages = request_from_args(args)

        def log(line: str) -> None:
            if not args.json:
                print(line, file=sys.stderr, flush=True)

        estimates = plan(request, stages, log=log)
        fits = None
        if args.budget is not None:
            budget = int(args.budget * GIB)
            if any(e.device_bytes > budget for e in estimates):
                log("searching for settings that fit the budget ...")
                fits = suggest(request, budget, stages)
        if args.json:
            out = {"request": attrs.asdict(request), "tflops": args.tflops,
                   "stages": [{**attrs.asdict(e), "device_bytes": e.device_bytes, "host_bytes": e.host_bytes,
                               "seconds_per_step": e.seconds(args.tflops)} for e in estimates]}
            if fits is not None:
                out["fits"] = [{"change": what, "request": attrs.asdict(r), "device_bytes": max(e.device_bytes for e in est)}
                               for what, r, est in fits]
            print(json.dumps(out, indent=2))
            return 0
        print(report(request, estimates, args.tflops))
        if args.budget is not None:
            over = [e for e in estimates if e.device_bytes > args.budget * GIB]
            if not over:
                print(f"\nevery stage fits in {args.budget:g} GiB.")
            else:
                print(f"\nover {args.budget:g} GiB: " + ", ".join(f"{e.stage} ({_gib(e.device_bytes)})" for e in over))
                for what, _, est in fits or []:
                    print(f"fits with {what}: largest stage {_gib(max(e.device_bytes for e in est))}")
                if not fits:
                    print("none of bfloat16 weights, activation checkpointing or releasing the text encoder brings it under; "
                          "use a smaller video (--frames, --height, --width) or a larger card")
        return 0
