"""Each stage of the method seen alone on toy world v2: ``python -m toyworld.stages_v2 --model DIR --out DIR``.

- **A subject LoRA alone** (one subject in a recipe, CFG sampling of ``"<pet> in the snow"``)
  should draw its subject's pattern: ``toy_subject_fidelity`` against its stills, target >= 0.7
  over 8 samples (seeds 0-7).
- **A motion LoRA alone** (the chase clip in a recipe, CFG sampling of the motion prompt with
  *other* objects, ``"a red circle is chasing a yellow square in the snow"``) should reproduce the
  reference trajectory (``toy_motion_fidelity`` >= 0.6, the prompted objects' colours against
  the reference actors') while wearing the reference actors' green and blue in < 20% of object
  pixels (``toy_appearance_leakage`` with the prompted colours as the subjects').

Each is an ordinary recipe run through :func:`videomage.workflow.run_recipe` with the demo's
step counts (:class:`videomage_toyworld.recipe.CaseSettings`); every sample is one more
sampling seed of the same recipe, so the trained adapter is reused. Prints and writes
``stages.json`` in ``--out``, and each stage's samples, one a row, as ``samples.png`` in its folder.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import attrs
import numpy as np
import torch

from videomage.config import ModelConfig, MotionConfig, OutputConfig, Recipe, SamplingConfig
from videomage_toyworld import cases2
from videomage_toyworld.metrics import AppearanceLeakage, MotionFidelity, SubjectFidelity
from videomage_toyworld.recipe import CaseSettings, read_sheet, stage_options, subject_config, write_inputs
from videomage_toyworld.vocabulary import rgb
from videomage_toyworld.world2 import HELD_OUT_MOTION, SHADE

#: A subject alone is sampled from this prompt.
SUBJECT_PROMPT = "{token} in the snow"
OTHER_OBJECTS = (("red", "circle"), ("yellow", "square"))
SAMPLES_SHEET = "samples.png"
TARGETS = {"subject_fidelity": 0.7, "motion_fidelity": 0.6, "reference_colour_share": 0.2}


def _samples(recipe: Recipe, n: int, settings: CaseSettings, size: int, frames: int, log) -> list[torch.Tensor]:
    from videomage.workflow import run_recipe

    out = []
    for seed in range(n):
        sampled = attrs.evolve(recipe, sampling=attrs.evolve(recipe.sampling, seed=seed))
        run_recipe(sampled, progress=False, log=log, stage_options=stage_options(settings))
        out.append(read_sheet(recipe.output.dir / "video-frames.png", frames, size))
    from videomage.media import write_contact_sheet

    # Every sample, one a row (the recipe's own sheet holds only the last seed's).
    write_contact_sheet(torch.stack(out).flatten(0, 1), recipe.output.dir / SAMPLES_SHEET, columns=frames)
    return out


def subject_alone(model: str, folder: Path, settings: CaseSettings, inputs: dict, n: int, log) -> dict[str, float]:
    from videomage.modelfiles import read_video_spec

    spec = read_video_spec(model)
    scores = {}
    for case in cases2.SUBJECTS:
        name = case.token.strip("<>")
        subject = subject_config(settings, case, inputs[case.token], cases2)
        sampling = SamplingConfig(prompt=SUBJECT_PROMPT.format(token=case.token), sampler="cfg", steps=settings.sampling_steps,
                                  guidance_scale=settings.guidance)
        recipe = Recipe(model=ModelConfig(id=model), subjects=[subject], sampling=sampling,
                        output=OutputConfig(dir=folder / f"subject-{name}"), seed=settings.seed)
        stills = torch.stack([c.video()[0] for c in cases2.subject_stills(case, settings.stills, size=spec.height)])
        videos = _samples(recipe, n, settings, spec.height, spec.frames, log)
        scores[name] = float(np.mean([SubjectFidelity().compute(v, {"subject_images": [stills]})["subject_fidelity"]
                                      for v in videos]))
        log(f"subject {case.token} alone: subject fidelity {scores[name]:.3f} over {n} samples")
    return {"subject_fidelity": float(np.mean(list(scores.values()))), **{f"subject_fidelity_{k}": v for k, v in scores.items()}}


def motion_alone(model: str, folder: Path, settings: CaseSettings, inputs: dict, n: int, log) -> dict[str, float]:
    from videomage.modelfiles import read_video_spec

    spec = read_video_spec(model)
    motion = MotionConfig(video=inputs["motion"], prompt=cases2.MOTION_PROMPT, entities=cases2.MOTION_ENTITIES,
                          steps=settings.motion_steps, inversion_steps=settings.inversion_steps, lr=settings.motion_lr,
                          rank=settings.rank, objective_options={"omega": settings.omega})
    (c1, s1), (c2, s2) = OTHER_OBJECTS
    prompt = f"a {c1} {s1} is {HELD_OUT_MOTION} a {c2} {s2} in the snow"
    sampling = SamplingConfig(prompt=prompt, sampler="cfg", steps=settings.sampling_steps, guidance_scale=settings.guidance)
    recipe = Recipe(model=ModelConfig(id=model), subjects=[], motion=motion, sampling=sampling,
                    output=OutputConfig(dir=folder / "motion"), seed=settings.seed)
    colours = [[rgb(c), SHADE * rgb(c)] for c, _ in OTHER_OBJECTS]
    context = {"subject_colours": colours, "reference_video": cases2.motion_clip(spec.frames, size=spec.height).video(),
               "reference_colours": cases2.reference_colours()}
    videos = _samples(recipe, n, settings, spec.height, spec.frames, log)
    fidelity = float(np.mean([MotionFidelity().compute(v, context)["motion_fidelity"] for v in videos]))
    share = float(np.mean([AppearanceLeakage().compute(v, context)["appearance_leakage"] for v in videos]))
    log(f"motion alone ({prompt!r}): motion fidelity {fidelity:.3f}, reference colours {share:.3f} over {n} samples")
    return {"motion_fidelity": fidelity, "reference_colour_share": share, "motion_prompt": prompt}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m toyworld.stages_v2", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="a toy world v2 model folder")
    parser.add_argument("--out", required=True)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", choices=("subject", "motion"), default=None,
                        help="run one stage alone (default: both)")
    parser.add_argument("--quick", action="store_true", help="a few steps per stage: checks the plumbing only")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = CaseSettings(seed=args.seed)
    if args.quick:
        settings = attrs.evolve(settings, subject_steps=2, motion_steps=2, inversion_steps=2, prior_count=1, prior_steps=2,
                                sampling_steps=3, stills=2)
    from videomage.modelfiles import read_video_spec

    spec = read_video_spec(args.model)
    out = Path(args.out)
    inputs = write_inputs(out, size=spec.height, frames=spec.frames, stills=settings.stills, case=cases2)
    result = {}
    if args.only in (None, "subject"):
        result.update(subject_alone(args.model, out, settings, inputs, args.samples, print))
    if args.only in (None, "motion"):
        result.update(motion_alone(args.model, out, settings, inputs, args.samples, print))
    result["targets"] = TARGETS
    (out / "stages.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
