"""The paper's ablation in miniature on the toy world (VideoMage, CVPR 2025, section 4.3).

    .venv/bin/python benchmarks/ablation.py --seeds 0 1 2 3 4 --out runs/ablation

Variants, each on the same learned subjects per seed (only what a variant changes is retrained):

- ``full``: subject LoRAs, fusion with attention regularisation (lambda_attn 0.6), motion LoRA
  with the negative-CFG appearance-free target (omega 0.5), SCS sampling;
- ``w/o neg-CFG motion loss``: the motion LoRA trained with omega = 0 (plain denoising on the clip);
- ``w/o attention reg``: fusion with lambda_attn = 0;
- ``w/o SCS``: both LoRAs active in one model, plain CFG sampling;
- ``base model``: no customisation, the class-word prompt ("a circle is orbiting a square in the
  snow"), for scale.

Every variant samples the target prompt "<pet> is orbiting <toy> in the snow" and is scored by
the toy metrics. The table (mean and standard deviation over seeds) is written as Markdown and
JSON; the samples' contact sheets stay under ``--out/samples``. Products are reused when present,
so an interrupted run continues.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import attrs
import numpy as np
import torch
from videomage_toyworld.model import MODEL_DIR
from videomage_toyworld.pipeline import CaseRun, CaseSettings, metric_context, score

from videomage.artifact import atomic_write
from videomage.loading import load_backbone, make_adapter

VARIANTS = ("full", "w/o neg-CFG motion loss", "w/o attention reg", "w/o SCS", "base model")
#: Columns of the table: (metric key, header, True when higher is better).
COLUMNS = (("subject_fidelity", "subject fidelity", True), ("motion_fidelity", "motion fidelity", True),
           ("appearance_leakage", "appearance leakage", False), ("temporal_consistency", "temporal consistency", True),
           ("text_alignment", "background right", True))


def run_seed(run: CaseRun, seed: int, base: CaseSettings, log) -> dict[str, dict[str, float]]:
    """Scores of every variant for one seed."""
    s = attrs.evolve(base, seed=seed)
    subjects = run.subjects(s)
    fused, motion = run.fused(s, subjects), run.motion(s)
    samples = run.folder / "samples"
    context = metric_context(s, run.size, run.frames)
    out: dict[str, dict[str, float]] = {}
    videos = {
        "full": lambda: run.sample(s, fused, motion, samples / f"s{seed}-full.mp4"),
        "w/o neg-CFG motion loss": lambda: run.sample(
            s, fused, run.motion(attrs.evolve(s, omega=0.0)), samples / f"s{seed}-no-motion-loss.mp4"),
        "w/o attention reg": lambda: run.sample(
            s, run.fused(attrs.evolve(s, lambda_attn=0.0), subjects), motion, samples / f"s{seed}-no-attn-reg.mp4"),
        "w/o SCS": lambda: run.sample(s, fused, motion, samples / f"s{seed}-no-scs.mp4", sampler="cfg"),
        "base model": lambda: run.sample(s, None, None, samples / f"s{seed}-base.mp4",
                                         prompt="a circle is orbiting a square in the snow", sampler="cfg"),
    }
    for name in VARIANTS:
        out[name] = score(videos[name](), context)
        log(f"seed {seed} {name}: " + ", ".join(f"{k}={out[name][k]:.3f}" for k, _, _ in COLUMNS))
    return out


def table(results: dict[int, dict[str, dict[str, float]]]) -> str:
    """Markdown: one row per variant, mean ± standard deviation over seeds per column."""
    seeds = sorted(results)
    head = "| variant | " + " | ".join(f"{h} {'↑' if up else '↓'}" for _, h, up in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    for variant in VARIANTS:
        cells = []
        for key, _, _ in COLUMNS:
            values = np.array([results[s][variant][key] for s in seeds])
            cells.append(f"{values.mean():.3f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.3f}")
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\n{len(seeds)} seeds ({', '.join(map(str, seeds))}); ± is the sample standard deviation.\n"


def paired(results: dict[int, dict[str, dict[str, float]]]) -> str:
    """Markdown: for each other variant, in how many seeds the full method scores better, per column."""
    seeds = sorted(results)
    head = "| full vs | " + " | ".join(h for _, h, _ in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    for variant in VARIANTS[1:]:
        cells = []
        for key, _, up in COLUMNS:
            wins = sum((results[s]["full"][key] - results[s][variant][key]) * (1 if up else -1) > 0 for s in seeds)
            cells.append(f"{wins}/{len(seeds)}")
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="VideoMage ablation on the toy world")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--out", default="runs/ablation")
    parser.add_argument("--model", default=str(MODEL_DIR))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.time()

    def log(message: str) -> None:
        print(f"[{time.time() - started:7.0f}s] {message}", flush=True)

    backbone = load_backbone(args.model)
    run = CaseRun(backbone, make_adapter(), args.out, progress=args.progress, log=log)
    settings = CaseSettings()
    results = {seed: run_seed(run, seed, settings, log) for seed in args.seeds}
    text = table(results) + "\nSeeds where the full method is better (ties count as not better):\n\n" + paired(results)
    out = Path(args.out)
    atomic_write(out / "ablation.md", lambda tmp: Path(tmp).write_text(text))
    record = {"settings": attrs.asdict(settings), "seeds": args.seeds, "results": results,
              "seconds": round(time.time() - started), "command": " ".join(sys.argv)}
    atomic_write(out / "ablation.json", lambda tmp: Path(tmp).write_text(json.dumps(record, indent=2)))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
