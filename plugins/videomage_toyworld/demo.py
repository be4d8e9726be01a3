"""``videomage demo``: the whole method on the shipped toy model and cases, offline, on a CPU.

It writes the case inputs (each subject's stills, the orbit clip), learns both subjects, the
orbit motion and their fusion, samples "<pet> is orbiting <toy> in the snow" with SCS, and
writes ``video.mp4``, its contact sheet ``video-frames.png``, and the metrics as
``metrics.md`` / ``metrics.json`` beside it. For comparison the base model's sample of the
class-word prompt is scored too. Re-running reuses what is finished.
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


def run_demo(out: str | Path, *, model: str | None = None, settings=None, progress: bool = True, log=print) -> dict:
    """Run the demo into ``out``; return ``{"files": ..., "metrics": ...}``."""
    from videomage.kit import load_backbone, make_adapter
    from videomage_toyworld.model import MODEL_DIR
    from videomage_toyworld.pipeline import CaseRun, CaseSettings, metric_context, score

    model = model or str(MODEL_DIR)
    if not (Path(model) / "model_index.json").is_file():
        raise InputError(f"demo: {model!r} is not a model folder in the diffusers layout (no model_index.json); "
                         f"pass --model with such a folder, or leave it out to use the shipped toy model")
    settings = settings or CaseSettings()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"demo --out {str(out)!r} is a file; name a folder for the demo's outputs (default: videomage-demo)")
    backbone = load_backbone(model)
    run = CaseRun(backbone, make_adapter(), out, progress=progress, log=log)
    _, scores = run.full(settings, out / "video.mp4")
    context = metric_context(settings, run.size, run.frames)
    base = run.sample(settings, None, None, out / "base-model.mp4",
                      prompt="a circle is orbiting a square in the snow", sampler="cfg")
    rows = {"VideoMage (video.mp4)": scores, "base model, class words (base-model.mp4)": score(base, context)}
    text = metrics_table(rows)
    atomic_write(out / "metrics.md", lambda tmp: Path(tmp).write_text(text))
    record = {"settings": attrs.asdict(settings), "model": model, "metrics": rows}
    atomic_write(out / "metrics.json", lambda tmp: Path(tmp).write_text(json.dumps(record, indent=2)))
    files = {"video": out / "video.mp4", "contact_sheet": out / "video-frames.png", "metrics": out / "metrics.md"}
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
        from videomage_toyworld.pipeline import CaseSettings

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
