"""The ``videomage export``, ``videomage import`` and ``videomage convert-model`` commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from videomage import Command


class Export(Command):
    """Write an artifact's LoRA in the key names diffusers/peft or ComfyUI load, tokens beside it."""

    name = "export"
    help = "write an artifact as a LoRA file that diffusers, peft or ComfyUI load"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        from videomage_interop.export import FORMATS

        parser.add_argument("artifact", type=Path, help="a .safetensors artifact a videomage stage wrote")
        parser.add_argument("--format", required=True, choices=FORMATS,
                            help="diffusers: load_lora_weights / peft keys; comfyui: diffusion_model. + the family's own names")
        parser.add_argument("--out", required=True, type=Path, help="the .safetensors LoRA file to write (tokens go beside it)")

    def run(self, args: argparse.Namespace) -> int:
        from videomage import get_registry
        from videomage.kit import Artifact
        from videomage_interop.export import export

        artifact = Artifact.load(args.artifact)
        backbone = get_registry().get("backbone", artifact.backbone)
        done = export(artifact, backbone, args.format, args.out)
        print(f"wrote {done.path}: {done.layers} LoRA layers, {len(done.keys)} tensors ({args.format} keys, e.g. {done.keys[0]})")
        for path in done.token_files:
            print(f"wrote {path} (learned token)")
        if args.format == "comfyui" and done.token_files and not backbone.textual_inversion:
            print(f"note: ComfyUI loads no learned tokens for {backbone.name!r} text encoders; the token files serve diffusers")
        return 0


class Import(Command):
    """Turn a LoRA saved by diffusers, ComfyUI, DiffSynth, kohya or musubi-tuner into an artifact."""

    name = "import"
    help = "make a videomage artifact from a LoRA that diffusers, ComfyUI, DiffSynth, kohya or musubi-tuner saved"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("lora", type=Path, help="the LoRA .safetensors file (or a folder holding one)")
        parser.add_argument("--model", required=True, help="the model the LoRA was trained on (a Hub id in your cache, or a folder)")
        parser.add_argument("--backbone", help="backbone family, e.g. zeroscope or wan (default: detected from the model)")
        parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"],
                            help="precision the model is loaded in to check the LoRA against it (bfloat16 halves the memory); "
                                 "the artifact keeps the LoRA's own precision")
        parser.add_argument("--out", required=True, type=Path, help="the .safetensors artifact to write")
        parser.add_argument("--kind", choices=("subject", "motion", "fused"),
                            help="what the artifact is used as (default: what a videomage export recorded, else motion "
                                 "if every layer is temporal, else subject)")
        parser.add_argument("--tokens", nargs="+", type=Path, default=[],
                            help="learned-token files to carry, each {token: vector}, as export writes them beside a LoRA (default: none)")
        parser.add_argument("--skip-unmatched", action="store_true",
                            help="import the layers that match and list the keys that do not (default: refuse)")

    def run(self, args: argparse.Namespace) -> int:
        from videomage.kit import load_backbone, make_adapter
        from videomage_interop.importing import import_lora

        backbone = load_backbone(args.model, backbone=args.backbone, dtype=args.dtype)
        artifact, report = import_lora(args.lora, backbone, make_adapter(), kind=args.kind,
                                       skip_unmatched=args.skip_unmatched, token_files=args.tokens)
        for key in report.skipped():
            print(f"skipped {key}: it matches no adaptable layer of a role")
        roles = ", ".join(f"{role} {n}" for role, n in report.roles.items())
        print(f"read {report.layers} LoRA layers of rank {report.rank} from a {report.source_format} file; roles: {roles}")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        artifact.save(args.out)
        tokens = f" with tokens {', '.join(artifact.tokens)}" if artifact.tokens else ""
        print(f"wrote {args.out} ({artifact.kind} artifact{tokens})")
        return 0


class ConvertModel(Command):
    """Rewrite a model folder's ``.bin`` weights as safetensors, read through the restricted unpickler."""

    name = "convert_model"
    help = "rewrite a model folder's .bin weights as safetensors, once (read with torch.load(weights_only=True))"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("folder", type=Path, help="a diffusers-layout model folder (a cached Hub snapshot works too)")
        parser.add_argument("--keep-bin", action="store_true", help="keep the .bin files beside the new ones")

    def run(self, args: argparse.Namespace) -> int:
        from videomage.kit import convert_folder

        written = convert_folder(args.folder, keep_bin=args.keep_bin)
        for path in written:
            print(f"wrote {path}")
        if not written:
            print(f"{args.folder}: no .bin-only component; nothing to convert")
        return 0
