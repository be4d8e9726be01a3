"""The toy world's case as an ordinary recipe, run by the ordinary workflow, and scored.

The demo and the ablation build a :class:`videomage.config.Recipe` from the case files
(:mod:`videomage_toyworld.cases`) and :class:`CaseSettings`, and hand it to
:func:`videomage.workflow.run_recipe`, exactly as ``videomage run`` does with a TOML recipe:
the workflow learns the subjects, the motion and their fusion, samples, and skips whatever is
up to date (its stage keys cover the settings, inputs, model and seed), so an interrupted demo
resumes and a variant that changes one setting redoes only what depends on it. This module adds
only what is particular to the toy world: step counts small enough for a CPU, and the metrics.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch

from videomage.kit import (
    FusionConfig,
    ModelConfig,
    MotionConfig,
    OutputConfig,
    Recipe,
    SamplingConfig,
    StageOptions,
    SubjectConfig,
)
from videomage_toyworld import cases
from videomage_toyworld.metrics import METRICS
from videomage_toyworld.vocabulary import rgb

Log = Callable[[str], None]


@attrs.frozen(kw_only=True)
class CaseSettings:
    """Step counts and method settings of one run. Defaults: the demo's, minutes on a CPU."""

    subject_steps: int = 150
    motion_steps: int = 100
    inversion_steps: int = 40
    fusion_steps: int = 40
    videos_per_subject: int = 2
    prior_count: int = 2
    prior_steps: int = 15  # sampling steps of the prior and teacher videos
    sampling_steps: int = 25
    guidance: float = 7.5
    tau: int = 8  # SCS refinement steps (the paper's 15 of 50, scaled to 25 steps)
    # SCS step size. The paper's 1e4 (under our mean-squared reduction) turns this model's samples
    # into coloured noise and 1e3 already loses the background (measured, docs/toyworld.md).
    alpha: float = 1e2
    omega: float = 0.5
    lambda_attn: float = 0.6
    sampler: str = "scs"
    stills: int = 4
    rank: int = 4
    subject_lr: float = 2e-3  # twenty times the paper's 1e-4: 150 steps on a CPU instead of 300 on a GPU
    motion_lr: float = 1e-3
    fusion_lr: float = 1e-3
    seed: int = 0


def stage_options(settings: CaseSettings) -> StageOptions:
    """The learning stages' shared settings: few, short prior and teacher videos."""
    return StageOptions(prior_count=settings.prior_count, prior_steps=settings.prior_steps, checkpoint_every=10_000)


def subject_config(settings: CaseSettings, subject: Any, images: Path, case: Any = cases) -> SubjectConfig:
    """One subject's stage config; the cases module may set its ``PROMPT_TEMPLATE`` (v2's is lowercase)."""
    extra = {"prompt_template": case.PROMPT_TEMPLATE} if hasattr(case, "PROMPT_TEMPLATE") else {}
    return SubjectConfig(token=subject.token, class_word=subject.class_word, images=images, steps=settings.subject_steps,
                         lr=settings.subject_lr, text_lr=settings.subject_lr / 10, rank=settings.rank, **extra)


def case_recipe(settings: CaseSettings, inputs: dict[str, Path], *, model: str, out: Path, case: Any = cases,
                prompt: str | None = None) -> Recipe:
    """The recipe of ``case`` (a cases module: :mod:`~videomage_toyworld.cases`, or v2's
    :mod:`~videomage_toyworld.cases2`): both subjects, the motion, their fusion, the target prompt."""
    s = settings
    subjects = [subject_config(s, c, inputs[c.token], case) for c in case.SUBJECTS]
    motion = MotionConfig(video=inputs["motion"], prompt=case.MOTION_PROMPT, entities=case.MOTION_ENTITIES,
                          steps=s.motion_steps, inversion_steps=s.inversion_steps, lr=s.motion_lr, rank=s.rank,
                          objective_options={"omega": s.omega})
    fusion = FusionConfig(steps=s.fusion_steps, lr=s.fusion_lr, lambda_attn=s.lambda_attn,
                          videos_per_subject=s.videos_per_subject)
    sampling: dict[str, Any] = {"prompt": prompt or case.TARGET_PROMPT, "sampler": s.sampler, "steps": s.sampling_steps,
                                "guidance_scale": s.guidance, "seed": s.seed}
    if s.sampler == "scs":
        # The toy world's measurements were made with the paper's unnormalised rule.
        scs = {"tau": s.tau, "alpha_cross": s.alpha, "alpha_temporal": s.alpha, "guidance_norm": "none"}
        sampling["options"] = scs
    return Recipe(model=ModelConfig(id=model), subjects=subjects, motion=motion, fusion=fusion,
                  sampling=SamplingConfig(**sampling), output=OutputConfig(dir=out, contact_sheet=True), seed=s.seed)


def write_inputs(folder: Path, *, size: int, frames: int, stills: int, case: Any = cases) -> dict[str, Path]:
    """The case files under ``folder/inputs-<size>x<frames>-<stills>``, written once.

    Written beside and renamed into place, and never rewritten: the workflow's keys hash the
    inputs' bytes, and an mp4 encoder need not write the same bytes twice.
    """
    final = folder / f"inputs-{case.__name__.rsplit('.', 1)[-1]}-{size}x{frames}-{stills}"
    if not final.is_dir():
        staging = folder / f".{final.name}.staging"
        shutil.rmtree(staging, ignore_errors=True)
        case.write_case_files(staging, size=size, frames=frames, stills=stills)
        staging.rename(final)
    paths = {c.token: final / c.token.strip("<>") for c in case.SUBJECTS}
    (motion,) = final.glob("*.mp4")
    return {**paths, "motion": motion}


def run_case(settings: CaseSettings, folder: str | Path, *, model: str, out: str | Path | None = None,
             progress: bool = False, log: Log = print, reuse: str | Path | None = None,
             case: Any = cases) -> dict[str, Any]:
    """Write the case files into ``folder``, run the case's recipe into ``out`` (default ``folder``),
    and score its video. ``reuse``: another output folder of the same case whose finished products
    (subjects, motion, fusion) are copied in first; the workflow keeps those whose keys match.
    Returns ``{"video": frames, "scores": ..., "files": ...}``."""
    from videomage.kit import run_recipe

    folder = Path(folder)
    out = Path(out) if out is not None else folder
    spec = _spec(model)
    inputs = write_inputs(folder, size=spec.height, frames=spec.frames, stills=settings.stills, case=case)
    if reuse is not None:
        _copy_products(Path(reuse), out)
    recipe = case_recipe(settings, inputs, model=model, out=out, case=case)
    produced = run_recipe(recipe, progress=progress, log=log, stage_options=stage_options(settings))
    video = read_sheet(out / "video-frames.png", spec.frames, spec.height)
    return {"video": video, "scores": score(video, metric_context(settings, spec.height, spec.frames, case=case)),
            "files": produced}


def class_word_prompt(case: Any = cases) -> str:
    """The target prompt with each subject's token replaced by its class word ("a circle is orbiting a square ...")."""
    prompt = case.TARGET_PROMPT
    for subject in case.SUBJECTS:
        prompt = prompt.replace(subject.token, f"a {subject.class_word}")
    return prompt


def case_of(model: str) -> Any:
    """The cases for a toy-world model: v2's (:mod:`~videomage_toyworld.cases2`) for the Wan-architecture one."""
    from videomage_toyworld import cases2

    return cases2 if (Path(model) / "transformer").is_dir() else cases


def base_sample(settings: CaseSettings, *, model: str, out: Path, prompt: str | None = None,
                progress: bool = False, log: Log = print) -> torch.Tensor:
    """The base model's sample of the class-word prompt (no adapters, CFG), through the generate stage."""
    import json

    from videomage.kit import atomic_write, content_hash, generate, load_backbone, make_adapter

    spec = _spec(model)
    prompt = prompt or class_word_prompt(case_of(model))
    sheet = out.with_name(out.stem + "-frames.png")
    stamp_path = out.with_name(out.stem + "-settings.json")
    stamp = json.dumps({"prompt": prompt, "steps": settings.sampling_steps, "guidance": settings.guidance,
                        "seed": settings.seed, "model": content_hash(Path(model))}, sort_keys=True)
    if sheet.exists() and stamp_path.exists() and stamp_path.read_text() == stamp:
        log(f"base model: up to date ({out})")
    else:
        log(f"base model: sampling {out.name}")
        options = {"steps": settings.sampling_steps, "guidance_scale": settings.guidance, "seed": settings.seed,
                   "progress": progress}
        generate(load_backbone(model), make_adapter(), prompt=prompt, out=out, sampler="cfg", options=options,
                 contact_sheet=True, record_extra={"input_hash": content_hash(stamp)})
        atomic_write(stamp_path, lambda tmp: Path(tmp).write_text(stamp))
    return read_sheet(sheet, spec.frames, spec.height)


def _spec(model: str):
    from videomage.kit import read_video_spec

    spec = read_video_spec(model)
    if spec is None:
        from videomage.kit import load_backbone

        spec = load_backbone(model).video_spec
    return spec


def _copy_products(source: Path, out: Path) -> None:
    for name in ("subjects", "motion.safetensors", "fused.safetensors"):
        src, dst = source / name, out / name
        if not src.exists() or dst.exists():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)


def metric_context(settings: CaseSettings, size: int = 64, frames: int = 8, *, case: Any = cases) -> dict[str, Any]:
    """What the toy metrics need to score a sample of ``case``'s target prompt."""
    stills = [torch.stack([c.video()[0] for c in case.subject_stills(subject, settings.stills, size=size)])
              for subject in case.SUBJECTS]
    return {
        "prompt": case.TARGET_PROMPT,
        "subject_images": stills,
        "reference_video": case.motion_clip(frames, size=size).video(),
        "reference_colours": [rgb(c) for c in case.REFERENCE_COLOURS],
    }


def score(video: torch.Tensor, context: dict[str, Any]) -> dict[str, float]:
    """Every toy metric's scores of ``video`` ``[F, 3, H, W]``, merged into one mapping."""
    out: dict[str, float] = {}
    for cls in METRICS:
        out.update(cls().compute(video, context))
    return out


def read_sheet(path: Path, frames: int, size: int, columns: int = 8) -> torch.Tensor:
    """The frames of a contact sheet (lossless PNG) as ``[F, 3, H, W]``: ``frames`` square frames of
    ``size`` laid out ``columns`` a row, as :func:`videomage.kit.write_contact_sheet` writes them."""
    import imageio.v3 as iio

    sheet = torch.from_numpy(np.asarray(iio.imread(path), dtype=np.float32) / 255.0).permute(2, 0, 1)
    cols = min(columns, frames)
    rows = -(-frames // cols)
    if tuple(sheet.shape[1:]) != (rows * size, cols * size):
        raise ValueError(f"{path}: a {sheet.shape[1]}x{sheet.shape[2]} contact sheet, not {frames} frames of "
                         f"{size}x{size} laid out {cols} a row ({rows * size}x{cols * size})")
    return torch.stack([sheet[:, (i // cols) * size : (i // cols + 1) * size, (i % cols) * size : (i % cols + 1) * size]
                        for i in range(frames)])
