"""``videomage demo``: the whole method on the shipped toy model and cases, offline, on a CPU.

It writes the case inputs (each subject's stills, the orbit clip) and runs them as an ordinary
recipe through the workflow ``videomage run`` uses: both subjects, the orbit motion and their
fusion are learned, "<pet> is orbiting <toy> in the snow" is sampled with SCS, and
``video.mp4`` and its contact sheet ``video-frames.png`` land in the output folder, with the
metrics as ``metrics.md`` / ``metrics.json`` beside them. For comparison the base model's
sample of the class-word prompt is scored too, and ``overview.png`` shows it all on one
picture: each subject's stills, the reference clip, the result and the base model's sample,
one labelled row each. Re-running reuses what is up to date.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import attrs
import torch

from videomage import Command, InputError
from videomage.kit import atomic_write

#: Metric keys shown in the table, with whether higher is better.
SHOWN = (("subject_fidelity", True), ("motion_fidelity", True), ("appearance_leakage", False),
         ("temporal_consistency", True), ("text_alignment", True))


def metrics_table(rows: dict[str, dict[str, float]]) -> str:
    """A Markdown table: one row per sample, one column per shown metric."""
    head = "| sample | " + " | ".join(f"{k.replace('_', ' ')} {'↑' if up else '↓'}" for k, up in SHOWN) + " |"
    lines = [head, "|" + "---|" * (len(SHOWN) + 1)]
    for name, scores in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{scores[k]:.3f}" for k, _ in SHOWN) + " |")
    return "\n".join(lines) + "\n"


def overview_sheet(rows: list[tuple[str, torch.Tensor]], path: str | Path, *, scale: int = 2) -> Path:
    """Write ``rows`` (a label and frames ``[N, 3, H, W]`` in [0, 1] each) as one PNG: each row a
    strip with its label above its frames side by side, every pixel ``scale`` x ``scale``."""
    import numpy as np
    from PIL import Image, ImageDraw

    if not rows:
        raise ValueError("overview_sheet needs at least one row")
    label = 14  # height of a row's label strip, in output pixels
    images = []
    for _, frames in rows:
        f = frames.detach().float().clamp(0, 1).cpu()
        pixels = (f.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)  # [N, H, W, 3]
        images.append(np.concatenate(list(pixels), axis=1).repeat(scale, axis=0).repeat(scale, axis=1))
    width = max(image.shape[1] for image in images)
    sheet = Image.new("RGB", (width, sum(label + image.shape[0] for image in images)), "white")
    draw = ImageDraw.Draw(sheet)
    top = 0
    for (text, _), image in zip(rows, images):
        draw.text((2, top + 1), text, fill="black")
        sheet.paste(Image.fromarray(image), (0, top + label))
        top += label + image.shape[0]
    atomic_write(path, lambda tmp: sheet.save(tmp, format="PNG"))
    return Path(path)


def run_demo(out: str | Path, *, model: str | None = None, settings=None, progress: bool = True, log=print) -> dict:
    """Run the demo into ``out``; return ``{"files": ..., "metrics": ..., "table": ...}``.

    The case runs as an ordinary recipe through :func:`videomage.workflow.run_recipe`
    (:mod:`videomage_toyworld.recipe`); the base model's sample comes from the generate stage.
    """
    from videomage_toyworld.model import MODEL_DIR
    from videomage_toyworld.recipe import (CaseSettings, base_sample, case_of, class_word_prompt, metric_context,
                                           run_case, score)

    model = model or str(MODEL_DIR)
    if not (Path(model) / "model_index.json").is_file():
        raise InputError(f"demo: {model!r} is not a model folder in the diffusers layout (no model_index.json); "
                         f"pass --model with such a folder, or leave it out to use the shipped toy model")
    settings = settings or CaseSettings()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"demo --out {str(out)!r} is a file; name a folder for the demo's outputs (default: videomage-demo)")
    case = case_of(model)
    result = run_case(settings, out, model=model, progress=progress, log=log, case=case)
    video = result["video"]
    base = base_sample(settings, model=model, out=out / "base-model.mp4", progress=progress, log=log)
    context = metric_context(settings, video.shape[-1], video.shape[0], case=case)
    rows = {"VideoMage (video.mp4)": result["scores"], "base model, class words (base-model.mp4)": score(base, context)}
    text = metrics_table(rows)
    atomic_write(out / "metrics.md", lambda tmp: Path(tmp).write_text(text))
    record = {"settings": attrs.asdict(settings), "model": model, "metrics": rows}
    atomic_write(out / "metrics.json", lambda tmp: Path(tmp).write_text(json.dumps(record, indent=2)))
    picture = [(f"{subject.token}: the subject's stills", images)
               for subject, images in zip(case.SUBJECTS, context["subject_images"])]
    picture += [(f"reference: {case.MOTION_PROMPT!r}", context["reference_video"]),
                (f"VideoMage: {case.TARGET_PROMPT!r}", video), (f"base model: {class_word_prompt(case)!r}", base)]
    overview_sheet(picture, out / "overview.png")
    files = {"video": out / "video.mp4", "contact_sheet": out / "video-frames.png", "overview": out / "overview.png",
             "metrics": out / "metrics.md"}
    return {"files": files, "metrics": rows, "table": text}


class DemoCommand(Command):
    """``videomage demo [--out DIR]``: the whole method on the toy world, in minutes on a CPU."""

    name = "demo"
    help = "run the whole method on the shipped toy model and cases (offline, a few minutes on a CPU)"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--out", default="videomage-demo", help="output folder")
        parser.add_argument("--model", default=None, help="a toy-world model folder (default: the shipped one)")
        parser.add_argument("--seed", type=int, default=0, help="seed of every random draw: the cases' adapters and samples")
        parser.add_argument("--threads", type=int, default=1,
                            help="torch CPU threads; the toy model's tensors are too small to gain from more, and on "
                                 "busy cores more threads ran far slower")
        parser.add_argument("--quick", action="store_true", help="a few steps per stage: checks the plumbing only")

    def run(self, args: argparse.Namespace) -> int:
        from videomage_toyworld.recipe import CaseSettings

        torch.set_num_threads(max(1, args.threads))
        settings = CaseSettings(seed=args.seed)
        if args.quick:
            settings = attrs.evolve(settings, subject_steps=2, motion_steps=2, inversion_steps=2, fusion_steps=2,
                                    videos_per_subject=1, prior_count=1, prior_steps=2, sampling_steps=3, tau=1)
        started = time.time()
        result = run_demo(args.out, model=args.model, settings=settings)
        print(result["table"])
        for what, path in result["files"].items():
            print(f"{what}: {path}")
        print(f"done in {time.time() - started:.0f} s")
        return 0
