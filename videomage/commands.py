"""The stage commands of the ``videomage`` CLI: learn-subject, learn-motion, fuse, generate, run.

They are core commands (not plugins), so ``VIDEOMAGE_LOAD_PLUGINS`` cannot hide them; they find
backbones, adapters, objectives and samplers through the registry.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from videomage.components import Command
from videomage.config import FusionConfig, MotionConfig, SubjectConfig


def _model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="a local model folder (diffusers layout) or a Hub id")
    parser.add_argument("--backbone", help="backbone family, e.g. zeroscope or wan (default: detected from the model)")
    parser.add_argument("--adapter", default="lora", help="adapter type")
    parser.add_argument("--device", default="cpu", help="torch device to run on, e.g. cuda or cuda:1")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"],
                        help="precision the model's weights are loaded in")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random draw, so a re-run repeats the result")


def _train_args(parser: argparse.ArgumentParser, steps: int) -> None:
    parser.add_argument("--out", required=True, type=Path, help="the .safetensors artifact to write")
    parser.add_argument("--steps", type=int, default=steps, help="training steps")
    parser.add_argument("--work-dir", type=Path,
                        help="checkpoints and caches; re-running with the same work dir resumes (default: <out>.work)")
    parser.add_argument("--grad-accum", type=int, default=1, help="micro-batches accumulated per optimiser step")
    parser.add_argument("--mixed-precision", default="no", choices=["no", "bf16", "fp16"],
                        help="autocast precision of the forward passes")
    parser.add_argument("--checkpoint-every", type=int, default=50, help="steps between checkpoints in the work dir")
    parser.add_argument("--gradient-checkpointing", action="store_true",
                        help="recompute activations in the backward pass: less memory, more compute")
    parser.add_argument("--validate-every", type=int,
                        help="write a validation sample to <work-dir>/validation every N steps (default: never)")
    parser.add_argument("--sample-steps", type=int, default=25,
                        help="sampling steps of the videos a stage generates (prior, teacher and validation videos)")
    parser.add_argument("--frames", type=int, help="clip length (default: the backbone's native frame count)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars, also those of model loading")


def _setup(args: argparse.Namespace):
    from videomage.loading import hide_library_progress, load_backbone, make_adapter
    from videomage.stages.common import StageOptions

    if args.no_progress:
        hide_library_progress()
    backbone = load_backbone(args.model, backbone=args.backbone, device=args.device, dtype=args.dtype)
    adapter = make_adapter(args.adapter)
    opts = None
    if hasattr(args, "out") and hasattr(args, "grad_accum"):
        work = args.work_dir or args.out.with_name(args.out.name + ".work")
        opts = StageOptions(seed=args.seed, work_dir=work, progress=not args.no_progress, grad_accum=args.grad_accum,
                            mixed_precision=args.mixed_precision, checkpoint_every=args.checkpoint_every, frames=args.frames,
                            gradient_checkpointing=args.gradient_checkpointing, validate_every=args.validate_every,
                            prior_steps=args.sample_steps)
    return backbone, adapter, opts


def _save(artifact, out: Path) -> int:
    if int(os.environ.get("RANK", "0")) != 0:  # data parallel: every rank holds the same weights
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
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
        parser.add_argument("--lr", type=float, default=1e-4, help="LoRA learning rate")
        parser.add_argument("--text-lr", type=float, default=1e-5, help="learning rate of the token's embedding row")
        parser.add_argument("--rank", type=int, default=4, help="LoRA rank")
        parser.add_argument("--lambda-reg", type=float, default=0.25,
                            help="weight of the prior-preservation loss (0 turns it off)")
        parser.add_argument("--experts", default="", help="comma-separated experts of a two-expert model the LoRA lives in, "
                            "e.g. high_noise,low_noise (default: the backbone's choice for subjects: low_noise on Wan 2.2)")
        _train_args(parser, steps=300)

    def run(self, args: argparse.Namespace) -> int:
        from videomage.stages.subject import learn_subject

        config = SubjectConfig(token=args.token, class_word=args.class_word, images=args.images, prior_videos=args.prior_videos,
                               steps=args.steps, lr=args.lr, text_lr=args.text_lr, rank=args.rank, lambda_reg=args.lambda_reg,
                               experts=_words(args.experts))
        backbone, adapter, opts = _setup(args)
        return _save(learn_subject(backbone, adapter, config, opts), args.out)


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
        parser.add_argument("--omega", type=float, default=0.5,
                            help="negative-guidance strength of the appearance-free target (0: plain denoising loss)")
        parser.add_argument("--inversion-steps", type=int, default=200,
                            help="textual-inversion steps for the actors' tokens (0 skips it)")
        parser.add_argument("--lr", type=float, default=1e-4, help="LoRA learning rate")
        parser.add_argument("--rank", type=int, default=4, help="LoRA rank")
        parser.add_argument("--experts", default="", help="comma-separated experts of a two-expert model the LoRA lives in, "
                            "e.g. high_noise,low_noise (default: the backbone's choice for motion: high_noise on Wan 2.2)")
        _train_args(parser, steps=300)

    def run(self, args: argparse.Namespace) -> int:
        from videomage.stages.motion import learn_motion

        config = MotionConfig(video=args.video, prompt=args.prompt, entities=[e.strip() for e in args.entities.split(",") if e.strip()],
                              steps=args.steps, inversion_steps=args.inversion_steps, lr=args.lr, rank=args.rank, omega=args.omega,
                              experts=_words(args.experts))
        backbone, adapter, opts = _setup(args)
        return _save(learn_motion(backbone, adapter, config, opts), args.out)


class Fuse(Command):
    """Fuse several subject adapters into one with attention regularisation (VideoMage §3.3)."""

    name = "fuse"
    help = "fuse subject LoRAs into one, with cross-attention regularisation"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        _model_args(parser)
        parser.add_argument("--subjects", required=True, nargs="+", type=Path, help="subject artifacts (two or more)")
        parser.add_argument("--lambda-attn", type=float, default=0.6,
                            help="weight of the cross-attention regularisation (0 turns it off)")
        parser.add_argument("--videos-per-subject", type=int, default=4,
                            help="videos each subject's adapter generates as fusion data")
        parser.add_argument("--mask-source", default=FusionConfig().mask_source,
                            help="mask-source plugin that segments the subjects in those videos")
        parser.add_argument("--lr", type=float, default=1e-4, help="learning rate of the fused LoRA")
        _train_args(parser, steps=200)

    def run(self, args: argparse.Namespace) -> int:
        from videomage.stages.fusion import fuse

        config = FusionConfig(steps=args.steps, lr=args.lr, lambda_attn=args.lambda_attn,
                              videos_per_subject=args.videos_per_subject, mask_source=args.mask_source)
        backbone, adapter, opts = _setup(args)
        return _save(fuse(backbone, adapter, args.subjects, config, opts), args.out)


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
        parser.add_argument("--sampler", default="scs", help="scs, cfg, or a plugin's sampler")
        parser.add_argument("--steps", type=int, default=50, help="denoising steps")
        parser.add_argument("--guidance-scale", type=float, default=9.0, help="classifier-free guidance scale")
        parser.add_argument("--frames", type=int, help="frames to generate (default: the backbone's native count)")
        parser.add_argument("--height", type=int, help="video height in pixels (default: the backbone's native height)")
        parser.add_argument("--width", type=int, help="video width in pixels (default: the backbone's native width)")
        parser.add_argument("--negative-prompt", default="", help="what the video should not show (default: empty)")
        parser.add_argument("--scheduler", help="a diffusers scheduler class name (default: the model's)")
        parser.add_argument("--alpha-cross", type=float, default=1e-3,
                            help="SCS: step size of the cross-attention term (subject layout -> motion branch)")
        parser.add_argument("--alpha-temporal", type=float, default=5e-5,
                            help="SCS: step size of the temporal-attention term (motion -> subject branch)")
        parser.add_argument("--guidance-norm", choices=("rms", "none"), default="rms",
                            help="SCS: 'rms' makes each alpha the RMS change of a latent element per guided step, the "
                                 "same at any video size (default); 'none' is the paper's x -= alpha * grad")
        parser.add_argument("--tau", type=int, default=15, help="SCS: how many of the first steps are guided")
        parser.add_argument("--beta-s", type=float, default=0.5,
                            help="SCS: weight of the subject branch's prediction (beta_s + beta_m = 1)")
        parser.add_argument("--beta-m", type=float, default=0.5,
                            help="SCS: weight of the motion branch's prediction (beta_s + beta_m = 1)")
        parser.add_argument("--guidance-checkpointing", action=argparse.BooleanOptionalAction, default=True,
                            help="SCS: recompute activations in each guided step's backward pass (default: on; "
                                 "--no-guidance-checkpointing keeps them: guided steps about 1.3x faster, several "
                                 "times the memory)")
        parser.add_argument("--gif", action="store_true", help="also write a gif")
        parser.add_argument("--no-progress", action="store_true", help="hide progress bars, also those of model loading")

    def run(self, args: argparse.Namespace) -> int:
        from videomage.stages.generate import generate

        backbone, adapter, _ = _setup(args)
        options = {"steps": args.steps, "guidance_scale": args.guidance_scale, "seed": args.seed, "frames": args.frames,
                   "height": args.height, "width": args.width, "negative_prompt": args.negative_prompt,
                   "scheduler": args.scheduler, "progress": not args.no_progress}
        if args.sampler == "scs":
            options.update(alpha_cross=args.alpha_cross, alpha_temporal=args.alpha_temporal,
                           guidance_norm=args.guidance_norm, tau=args.tau, beta_s=args.beta_s, beta_m=args.beta_m,
                           guidance_checkpointing=args.guidance_checkpointing)
        record = generate(backbone, adapter, prompt=args.prompt, out=args.out, subjects=args.subjects, motion=args.motion,
                          sampler=args.sampler, options=options, gif=args.gif)
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


STAGE_COMMANDS: tuple[type[Command], ...] = (LearnSubject, LearnMotion, Fuse, Generate, Run)
