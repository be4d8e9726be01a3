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
JSON, with :data:`CLAIMS`, what each component should win against the variant without it, each
counted over seeds (it holds when the full method wins in at least four seeds of five). Each
variant is the case's recipe run by the ordinary workflow into
``--out/s<seed>/<variant>/`` (its ``video-frames.png`` is the sample's contact sheet), started
from the full method's products, so only what a variant changes is retrained and an interrupted
run continues.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import attrs
import numpy as np
import torch
from videomage_toyworld.model import MODEL_DIR
from videomage_toyworld.recipe import CaseSettings, base_sample, case_of, metric_context, run_case, score

from videomage.artifact import atomic_write

VARIANTS = ("full", "w/o neg-CFG motion loss", "w/o attention reg", "w/o SCS", "base model")
#: Columns of the table: (metric key, header, True when higher is better).
COLUMNS = (("subject_fidelity", "subject fidelity", True), ("motion_fidelity", "motion fidelity", True),
           ("appearance_leakage", "appearance leakage", False), ("temporal_consistency", "temporal consistency", True),
           ("text_alignment", "background right", True))


#: What the ablation should show: (the variant the full method is compared with, the metrics it must
#: beat it on *in the same seed*, what that says). The base model row checks the customisation as a
#: whole; each "w/o" row checks the metric its component targets. ``subject_0``/``subject_1`` are
#: each subject's own fidelity (the case's subjects in order).
CLAIMS = (
    ("base model", ("subject_fidelity",), "the method draws the subjects"),
    ("base model", ("motion_fidelity",), "the method moves them as the reference did"),
    ("base model", ("appearance_leakage",), "the method keeps the reference actors' look out"),
    ("w/o neg-CFG motion loss", ("appearance_leakage",), "the negative-CFG motion loss keeps the reference's look out"),
    ("w/o attention reg", ("subject_0",), "attention regularisation keeps the first subject its own"),
    ("w/o attention reg", ("subject_1",), "attention regularisation keeps the second subject its own"),
    ("w/o SCS", ("subject_fidelity", "motion_fidelity"), "SCS keeps subjects and motion together"),
)
#: Metrics where lower is better (the rest: higher).
LOWER_BETTER = frozenset({"appearance_leakage"})
#: A claim holds when the full method wins in at least this share of the seeds (4 of 5).
CLAIM_SHARE = 0.8


def claims(results: dict[int, dict[str, dict[str, float]]]) -> list[dict]:
    """Each of :data:`CLAIMS` with the seeds where the full method beats the variant on all of the
    claim's metrics (a tie is not a win) and whether that is at least :data:`CLAIM_SHARE` of them."""
    seeds = sorted(results)
    out = []
    for variant, keys, meaning in CLAIMS:
        won = [s for s in seeds
               if all((results[s]["full"][k] - results[s][variant][k]) * (-1 if k in LOWER_BETTER else 1) > 0 for k in keys)]
        out.append({"variant": variant, "metrics": list(keys), "meaning": meaning, "seeds_won": won,
                    "holds": len(won) >= math.ceil(CLAIM_SHARE * len(seeds) - 1e-9)})
    return out


def claims_table(results: dict[int, dict[str, dict[str, float]]]) -> str:
    """Markdown: one row per claim, the seeds it held in and whether it holds."""
    n = len(results)
    lines = ["| full vs | on | what it shows | seeds won | holds |", "|---|---|---|---|---|"]
    for c in claims(results):
        lines.append(f"| {c['variant']} | {' and '.join(k.replace('_', ' ') for k in c['metrics'])} | {c['meaning']} "
                     f"| {len(c['seeds_won'])}/{n} | {'yes' if c['holds'] else 'no'} |")
    return "\n".join(lines) + "\n"


def run_seed(folder: Path, model: str, seed: int, base: CaseSettings, log, progress: bool = False) -> dict[str, dict[str, float]]:
    """Scores of every variant for one seed. Each variant is the case's recipe in its own output
    folder, started from the full method's products: the workflow retrains only what the variant's
    settings change."""
    s = attrs.evolve(base, seed=seed)
    seed_dir = folder / f"s{seed}"
    full = seed_dir / "full"
    variants = {
        "full": (s, "full"),
        "w/o neg-CFG motion loss": (attrs.evolve(s, omega=0.0), "no-motion-loss"),
        "w/o attention reg": (attrs.evolve(s, lambda_attn=0.0), "no-attn-reg"),
        "w/o SCS": (attrs.evolve(s, sampler="cfg"), "no-scs"),
    }
    out: dict[str, dict[str, float]] = {}
    case = case_of(model)  # v1's cases for the ZeroScope-architecture model, v2's for the Wan one
    for name in VARIANTS:
        if name == "base model":
            video = base_sample(s, model=model, out=seed_dir / "base.mp4", progress=progress, log=log)
            spec = video.shape
            out[name] = score(video, metric_context(s, spec[-1], spec[0], case=case))
        else:
            settings, sub = variants[name]
            out[name] = run_case(settings, folder, model=model, out=seed_dir / sub, progress=progress, log=log,
                                 reuse=None if sub == "full" else full, case=case)["scores"]
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

    settings = CaseSettings()
    results = {seed: run_seed(Path(args.out), args.model, seed, settings, log, args.progress) for seed in args.seeds}
    text = (table(results) + "\nSeeds where the full method is better (ties count as not better):\n\n" + paired(results)
            + f"\nWhat each component should win (in at least {CLAIM_SHARE:.0%} of the seeds):\n\n" + claims_table(results))
    out = Path(args.out)
    atomic_write(out / "ablation.md", lambda tmp: Path(tmp).write_text(text))
    record = {"settings": attrs.asdict(settings), "seeds": args.seeds, "results": results, "claims": claims(results),
              "seconds": round(time.time() - started), "command": " ".join(sys.argv)}
    atomic_write(out / "ablation.json", lambda tmp: Path(tmp).write_text(json.dumps(record, indent=2)))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
