"""The stage commands of the ``videomage`` CLI: learn-subject, learn-motion, fuse, generate, run.

They are core commands (not plugins), so ``VIDEOMAGE_LOAD_PLUGINS`` cannot hide them; they find
backbones, adapters, objectives and samplers through the registry.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from videomage.components import Command
from videomage.config import FusionConfig, ModelConfig, MotionConfig, SamplingConfig, SubjectConfig, default
from videomage.jobcheck import MAX_SIDE, check_device, finite_float, int_range


def _device(value: str) -> str:
    from videomage.errors import ConfigError

    try:
        return check_device(value)
    except ConfigError as exc:  # a bad command line: argparse's usage error (exit status 2)
        raise argparse.ArgumentTypeError(str(exc).removeprefix(f"--device {value!r}: ")) from None


#: Flags that do not change what a training stage computes: a work folder made with other values
#: of these is still resumed.
NEUTRAL = frozenset({"out", "work_dir", "device", "checkpoint_every", "gradient_checkpointing", "release_text_encoder",
                     "validate_every", "no_progress", "command"})




def _model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="a local model folder (diffusers layout) or a Hub id")
    parser.add_argument("--backbone", help="backbone family, e.g. zeroscope or wan (default: detected from the model)")
    parser.add_argument("--adapter", default=default(ModelConfig, "adapter"), help="adapter type")
    parser.add_argument("--device", default="cpu", type=_device,
                        help="torch device to run on, e.g. cuda or cuda:1 (under a multi-process launcher, "
                             "cuda: each process its own GPU)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"],
                        help="precision the model's weights are loaded in")
    parser.add_argument("--seed", type=int_range(0), default=0, help="seed of every random draw, so a re-run repeats the result")
    parser.add_argument("--release-text-encoder", action="store_true",
                        help="move the text encoder to host memory once the stage's prompts are encoded (motion after "
                             "its textual inversion, fusion, generate; subject learning trains through it and keeps it)")


def _component_args(parser: argparse.ArgumentParser, flag: str, record: type, field: str, what: str) -> None:
    """``--objective NAME`` / ``--sampler NAME`` and the repeatable ``-o KEY=VALUE`` of the chosen component."""
    parser.add_argument(f"--{flag}", default=default(record, field),
                        help=f"{what} (a plugin's name; `videomage plugins --options` lists each one's options)")
    parser.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE", dest="option",
                        help=f"an option of the chosen {flag}, e.g. -o tau=10; repeat for several (default: its defaults)")


def _deprecated(args: argparse.Namespace, flags: dict[str, str], options: dict) -> dict:
    """Map deprecated flags (dest -> option name) that were given into ``options``, with a warning."""
    import sys

    out = dict(options)
    for dest, option in flags.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        flag = "--" + dest.replace("_", "-")
        print(f"videomage: warning: {flag} is deprecated; write -o {option}={str(value).lower() if isinstance(value, bool) else value}",
              file=sys.stderr)
        if option in out:
            from videomage.errors import ConfigError

            raise ConfigError(f"{flag} and -o {option}=... both set option {option!r}; keep the -o one")
        out[option] = value
    return out


def _options(args: argparse.Namespace, deprecated: dict[str, str] | None = None) -> dict:
    from videomage.options import parse_assignments

    return _deprecated(args, deprecated or {}, parse_assignments(args.option))


def _train_args(parser: argparse.ArgumentParser, steps: int) -> None:
    parser.add_argument("--out", required=True, type=Path, help="the .safetensors artifact to write")
    parser.add_argument("--steps", type=int_range(1), default=steps, help="training steps")
    parser.add_argument("--work-dir", type=Path,
                        help="checkpoints and caches; re-running with the same work dir resumes (default: <out>.work)")
    parser.add_argument("--grad-accum", type=int_range(1), default=1, help="micro-batches accumulated per optimiser step")
    parser.add_argument("--mixed-precision", default="no", choices=["no", "bf16", "fp16"],
                        help="autocast precision of the forward passes")
    parser.add_argument("--checkpoint-every", type=int_range(1), default=50, help="steps between checkpoints in the work dir")
    parser.add_argument("--gradient-checkpointing", action="store_true",
                        help="recompute activations in the backward pass: less memory, more compute")
    parser.add_argument("--validate-every", type=int_range(1),
                        help="write a validation sample to <work-dir>/validation every N steps (default: never)")
    parser.add_argument("--sample-steps", type=int_range(1), default=25,
                        help="sampling steps of the videos a stage generates (prior, teacher and validation videos)")
    parser.add_argument("--frames", type=int_range(1), help="clip length (default: the backbone's native frame count)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars, also those of model loading")


def _work_dir(args: argparse.Namespace) -> Path:
    return args.work_dir or args.out.with_name(args.out.name + ".work")


def _check_job(args: argparse.Namespace, *, inputs: list[Path], suffix: str) -> None:
    """Everything about a stage command that can be checked before the model loads."""
    from videomage.jobcheck import check_model_folder
    from videomage.paths import check_output_file, refuse_overwriting_inputs

    outputs = [args.out]
    if suffix == ".mp4":
        outputs += [args.out.with_suffix(".json"), args.out.with_suffix(".gif"), args.out.with_name(args.out.stem + "-frames.png")]
    refuse_overwriting_inputs(outputs, inputs)
    check_output_file(args.out, suffixes=(suffix,))
    check_model_folder(args.model)


def _bind_work_dir(args: argparse.Namespace, inputs: dict[str, object]) -> None:
    """Lock the work folder and make it belong to this job (see `videomage.workdir`)."""
    from videomage.stages.common import content_hash
    from videomage.workdir import bind, lock, model_digest

    from videomage.parallel import is_main_process

    if not is_main_process():  # data parallel: the main process owns the work folder
        return
    work = _work_dir(args)
    lock(work)
    parts = {"model": model_digest(args.model)}
    for name, value in vars(args).items():
        if name in NEUTRAL or name == "model":
            continue
        if name in inputs and value is not None:  # input files: by content, not by name
            parts[name] = content_hash(*value) if isinstance(value, list) else content_hash(value)
        else:
            parts[name] = content_hash(str(value))
    parts["steps"] = str(args.steps)  # a number, so that a larger --steps can train on (see bind)
    bind(work, parts)


def _release(args: argparse.Namespace) -> None:
    from videomage.workdir import release

    release(_work_dir(args))


def _setup(args: argparse.Namespace, inputs: dict[str, object] | None = None):
    from videomage.loading import hide_library_progress, load_backbone, make_adapter
    from videomage.stages.common import StageOptions

    if args.no_progress:
        hide_library_progress()
    opts = None
    training = hasattr(args, "out") and hasattr(args, "grad_accum")
    if training:
        _bind_work_dir(args, inputs or {})
    try:
        backbone = load_backbone(args.model, backbone=args.backbone, device=args.device, dtype=args.dtype)
        adapter = make_adapter(args.adapter)
    except BaseException:
        if training:
            _release(args)
        raise
    if training:
        opts = StageOptions(seed=args.seed, work_dir=_work_dir(args), progress=not args.no_progress, grad_accum=args.grad_accum,
                            mixed_precision=args.mixed_precision, checkpoint_every=args.checkpoint_every, frames=args.frames,
                            gradient_checkpointing=args.gradient_checkpointing, validate_every=args.validate_every,
                            prior_steps=args.sample_steps, release_text_encoder=args.release_text_encoder)
    return backbone, adapter, opts


def _save(artifact, out: Path) -> int:
    from videomage.parallel import is_main_process

    if not is_main_process():  # data parallel: every process holds the same weights
        return 0
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        from videomage.errors import ConfigError

        raise ConfigError(f"cannot create the folder of --out {str(out)!r}: {exc.strerror or exc}") from None
    artifact.save(out)
    print(f"wrote {out}")
    return 0


class LearnSubject(Command):
    """Learn a subject adapter and token from a few images (VideoMage §3.1)."""

    name = "learn_subject"
    help = "learn a subject LoRA and token from a folder of images"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        _model_args(parser)
        parser.add_argument("--images", required=True, type=Path, help="folder of 3-5 images of the subject")
        parser.add_argument("--token", required=True, help="the new token, e.g. '<toy>'")
        parser.add_argument("--class-word", required=True, help="the subject's class, e.g. toy")
        parser.add_argument("--prior-videos", type=Path,
                            help="folder of clips, each with a same-named .txt caption, for the prior-preservation "
                                 "loss (default: generated from the class word)")
        parser.add_argument("--lr", type=finite_float(positive=True), default=1e-4, help="LoRA learning rate")
        parser.add_argument("--text-lr", type=finite_float(positive=True), default=1e-5, help="learning rate of the token's embedding row")
        parser.add_argument("--rank", type=int_range(1), default=4, help="LoRA rank")
        parser.add_argument("--lambda-reg", type=finite_float(), default=None,
                            help=argparse.SUPPRESS)  # deprecated: -o lambda_reg=0.25
        _component_args(parser, "objective", SubjectConfig, "objective", "the subject loss")
        parser.add_argument("--experts", default="", help="comma-separated experts of a two-expert model the LoRA lives in, "
                            "e.g. high_noise,low_noise (default: the backbone's choice for subjects: low_noise on Wan 2.2)")
        _train_args(parser, steps=300)

    def run(self, args: argparse.Namespace) -> int:
        from videomage.jobcheck import check_images, check_options, check_prior_videos
        from videomage.stages.subject import learn_subject

        config = SubjectConfig(token=args.token, class_word=args.class_word, images=args.images, prior_videos=args.prior_videos,
                               steps=args.steps, lr=args.lr, text_lr=args.text_lr, rank=args.rank, experts=_words(args.experts),
                               objective=args.objective, objective_options=_options(args, {"lambda_reg": "lambda_reg"}))
        check_options("objective", config.objective, config.objective_options)
        check_images(args.images)
        check_prior_videos(args.prior_videos)
        _check_job(args, inputs=[args.images] + ([args.prior_videos] if args.prior_videos else []), suffix=".safetensors")
        backbone, adapter, opts = _setup(args, {"images": args.images, "prior_videos": args.prior_videos})
        try:
            return _save(learn_subject(backbone, adapter, config, opts), args.out)
        finally:
            _release(args)


def _words(text: str) -> list[str]:
    """A comma-separated flag's words."""
    return [w.strip() for w in text.split(",") if w.strip()]


class LearnMotion(Command):
    """Learn an appearance-agnostic motion adapter from one clip (VideoMage §3.2)."""

    name = "learn_motion"
    help = "learn an appearance-agnostic motion LoRA from one reference clip"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        _model_args(parser)
        parser.add_argument("--video", required=True, type=Path, help="the reference clip (mp4, webm, gif)")
        parser.add_argument("--prompt", required=True, help="what happens, e.g. 'a person is riding a horse'")
        parser.add_argument("--entities", required=True, help="comma-separated actor words of the prompt, e.g. person,horse")
        parser.add_argument("--omega", type=finite_float(), default=None,
                            help=argparse.SUPPRESS)  # deprecated: -o omega=0.5
        _component_args(parser, "objective", MotionConfig, "objective", "the motion loss")
        parser.add_argument("--inversion-steps", type=int_range(0), default=200,
                            help="textual-inversion steps for the actors' tokens (0 skips it)")
        parser.add_argument("--lr", type=finite_float(positive=True), default=1e-4, help="LoRA learning rate")
        parser.add_argument("--rank", type=int_range(1), default=4, help="LoRA rank")
        parser.add_argument("--experts", default="", help="comma-separated experts of a two-expert model the LoRA lives in, "
                            "e.g. high_noise,low_noise (default: the backbone's choice for motion: high_noise on Wan 2.2)")
        _train_args(parser, steps=300)

    def run(self, args: argparse.Namespace) -> int:
        from videomage.jobcheck import check_entities, check_options
        from videomage.media import check_video
        from videomage.stages.motion import learn_motion

        config = MotionConfig(video=args.video, prompt=args.prompt, entities=[e.strip() for e in args.entities.split(",") if e.strip()],
                              steps=args.steps, inversion_steps=args.inversion_steps, lr=args.lr, rank=args.rank,
                              experts=_words(args.experts), objective=args.objective,
                              objective_options=_options(args, {"omega": "omega"}))
        check_options("objective", config.objective, config.objective_options)
        check_entities(config.prompt, config.entities)
        check_video(args.video)
        _check_job(args, inputs=[args.video], suffix=".safetensors")
        backbone, adapter, opts = _setup(args, {"video": args.video})
        try:
            return _save(learn_motion(backbone, adapter, config, opts), args.out)
        finally:
            _release(args)


class Fuse(Command):
    """Fuse several subject adapters into one with attention regularisation (VideoMage §3.3)."""

    name = "fuse"
    help = "fuse subject LoRAs into one, with cross-attention regularisation"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        _model_args(parser)
        parser.add_argument("--subjects", required=True, nargs="+", type=Path, help="subject artifacts (two or more)")
        parser.add_argument("--lambda-attn", type=finite_float(), default=0.6,
                            help="weight of the cross-attention regularisation (0 turns it off)")
        parser.add_argument("--videos-per-subject", type=int_range(1), default=4,
                            help="videos each subject's adapter generates as fusion data")
        # Each of fusion's three components by name, with its own repeatable KEY=VALUE options.
        for flag, field, what in (("mask-source", "mask_source", "mask-source plugin that segments the subjects in those videos"),
                                  ("distill", "distill_objective", "the distillation loss (student against each teacher)"),
                                  ("attention", "attention_objective", "the attention regularisation on the composites")):
            parser.add_argument(f"--{flag}", default=default(FusionConfig, field), dest=field,
                                help=f"{what} (a plugin's name; `videomage plugins --options` lists its options)")
            parser.add_argument(f"--{flag}-option", action="append", default=[], metavar="KEY=VALUE",
                                help=f"an option of the --{flag} component; repeat for several (default: its defaults)")
        parser.add_argument("--lr", type=finite_float(positive=True), default=1e-4, help="learning rate of the fused LoRA")
        _train_args(parser, steps=200)

    def run(self, args: argparse.Namespace) -> int:
        from videomage.jobcheck import check_options
        from videomage.options import parse_assignments
        from videomage.stages.fusion import load_subjects, fuse

        options = {f"{name}_options": parse_assignments(getattr(args, f"{name}_option"), flag_name=f"--{name.replace('_', '-')}-option")
                   for name in ("mask_source", "distill", "attention")}
        config = FusionConfig(steps=args.steps, lr=args.lr, lambda_attn=args.lambda_attn,
                              videos_per_subject=args.videos_per_subject, mask_source=args.mask_source,
                              distill_objective=args.distill_objective, attention_objective=args.attention_objective,
                              **options)
        check_options("mask_source", config.mask_source, config.mask_source_options)
        check_options("objective", config.distill_objective, config.distill_options)
        check_options("objective", config.attention_objective, config.attention_options)
        load_subjects(args.subjects)
        _check_job(args, inputs=list(args.subjects), suffix=".safetensors")
        backbone, adapter, opts = _setup(args, {"subjects": args.subjects})
        try:
            return _save(fuse(backbone, adapter, args.subjects, config, opts), args.out)
        finally:
            _release(args)


class Generate(Command):
    """Sample a video with the fused subjects and the motion (VideoMage §3.4)."""

    name = "generate"
    help = "generate a video with subject and motion artifacts"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        _model_args(parser)
        parser.add_argument("--subjects", type=Path, help="fused (or single-subject) artifact (default: none)")
        parser.add_argument("--motion", type=Path, help="motion artifact (default: none)")
        parser.add_argument("--prompt", required=True, help="the video to make, with the subjects' tokens, e.g. '<toy> is riding <dog>'")
        parser.add_argument("--out", required=True, type=Path, help="the .mp4 to write (a .json record and frames PNG go beside it)")
        _component_args(parser, "sampler", SamplingConfig, "sampler", "the sampler")
        parser.add_argument("--steps", type=int_range(1), default=50, help="denoising steps")
        parser.add_argument("--guidance-scale", type=finite_float(), default=9.0, help="classifier-free guidance scale")
        parser.add_argument("--frames", type=int_range(1), help="frames to generate (default: the backbone's native count)")
        parser.add_argument("--height", type=int_range(1, MAX_SIDE), help="video height in pixels (default: the backbone's native height)")
        parser.add_argument("--width", type=int_range(1, MAX_SIDE), help="video width in pixels (default: the backbone's native width)")
        parser.add_argument("--negative-prompt", default="", help="what the video should not show (default: empty)")
        parser.add_argument("--scheduler", help="a diffusers scheduler class name (default: the model's)")
        # videomage 0.1's SCS flags: each maps to its -o option, with a warning.
        for flag, kind in (("alpha-cross", finite_float()), ("alpha-temporal", finite_float()), ("guidance-norm", str),
                           ("tau", int_range(0)), ("beta-s", finite_float()), ("beta-m", finite_float())):
            parser.add_argument(f"--{flag}", type=kind, default=None, help=argparse.SUPPRESS)
        parser.add_argument("--guidance-checkpointing", action=argparse.BooleanOptionalAction, default=None,
                            help=argparse.SUPPRESS)
        parser.add_argument("--gif", action="store_true", help="also write a gif")
        parser.add_argument("--no-progress", action="store_true", help="hide progress bars, also those of model loading")

    def run(self, args: argparse.Namespace) -> int:
        from videomage.artifact import Artifact
        from videomage.jobcheck import check_options, check_size
        from videomage.stages.generate import check_concepts, generate

        own = _options(args, {n: n for n in ("alpha_cross", "alpha_temporal", "guidance_norm", "tau", "beta_s", "beta_m",
                                            "guidance_checkpointing")})
        for path in (args.subjects, args.motion):
            if path is not None:
                Artifact.load(path)
        _check_job(args, inputs=[p for p in (args.subjects, args.motion) if p is not None], suffix=".mp4")
        backbone, adapter, _ = _setup(args)
        # Loading is quick next to sampling; these checks come after it so that a missing model is
        # reported as such first.
        check_options("sampler", args.sampler, own)
        check_concepts(args.sampler, subjects=args.subjects is not None, motion=args.motion is not None)
        check_size(backbone, args.height, args.width)
        options = {"steps": args.steps, "guidance_scale": args.guidance_scale, "seed": args.seed, "frames": args.frames,
                   "height": args.height, "width": args.width, "negative_prompt": args.negative_prompt,
                   "scheduler": args.scheduler, "progress": not args.no_progress, **own}
        record = generate(backbone, adapter, prompt=args.prompt, out=args.out, subjects=args.subjects, motion=args.motion,
                          sampler=args.sampler, options=options, gif=args.gif, release_text=args.release_text_encoder)
        for kind, path in record["files"].items():
            print(f"wrote {path} ({kind})")
        return 0


class Run(Command):
    """Run a whole recipe: subjects, motion, fusion and sampling, skipping finished stages."""

    name = "run"
    help = "run a TOML recipe stage by stage (re-running resumes where it stopped)"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("recipe", type=Path, help="the recipe .toml file")
        parser.add_argument("--no-progress", action="store_true", help="hide progress bars, also those of model loading")

    def run(self, args: argparse.Namespace) -> int:
        from videomage.config import Recipe
        from videomage.loading import hide_library_progress
        from videomage.workflow import run_recipe

        if args.no_progress:
            hide_library_progress()

        produced = run_recipe(Recipe.from_toml(args.recipe), progress=not args.no_progress)
        for name, path in produced.items():
            print(f"{name}: {path}")
        return 0


from videomage.plan_command import Plan  # noqa: E402  (its own module: the planner is one idea)

STAGE_COMMANDS: tuple[type[Command], ...] = (LearnSubject, LearnMotion, Fuse, Generate, Run, Plan)
