"""The whole method on the toy world's cases, stage by stage, shared by the demo and the ablation.

It calls the same stage functions as ``videomage run`` (subject learning, motion learning,
fusion, generation), with step counts small enough for a CPU, and scores the result with the
toy metrics. Each product is written under the run folder and reused when it is already there,
so an interrupted demo resumes; a variant that changes one setting (omega, lambda_attn, the
sampler) recomputes only what depends on it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch

from videomage.kit import FusionConfig, MotionConfig, StageOptions, SubjectConfig, atomic_write, content_hash
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

    def tag(self) -> str:
        """A folder-name-safe label of the settings that change the trained products.

        The seed, and a digest of every training setting except ``omega`` and ``lambda_attn``,
        which the products' file names carry (so ablation variants share their subjects). A
        ``--quick`` run and a full one thus never reuse each other's artifacts.
        """
        training = {k: v for k, v in attrs.asdict(self).items() if k not in _NOT_TRAINING}
        return f"s{self.seed}-{content_hash(training)[:8]}"

    def sampling(self) -> dict[str, Any]:
        """The settings that change a sample but no trained product."""
        return {k: getattr(self, k) for k in _SAMPLING}


_SAMPLING = ("sampling_steps", "guidance", "tau", "alpha", "sampler")
_NOT_TRAINING = (*_SAMPLING, "omega", "lambda_attn", "stills", "seed")


def metric_context(settings: CaseSettings, size: int = 64, frames: int = 8) -> dict[str, Any]:
    """What the toy metrics need to score a sample of the target prompt."""
    stills = [torch.stack([c.video()[0] for c in cases.subject_stills(case, settings.stills, size=size)])
              for case in cases.SUBJECTS]
    return {
        "prompt": cases.TARGET_PROMPT,
        "subject_images": stills,
        "reference_video": cases.motion_clip(frames, size=size).video(),
        "reference_colours": [rgb(c) for c in cases.REFERENCE_COLOURS],
    }


def score(video: torch.Tensor, context: dict[str, Any]) -> dict[str, float]:
    """Every toy metric's scores of ``video`` ``[F, 3, H, W]``, merged into one mapping."""
    out: dict[str, float] = {}
    for cls in METRICS:
        out.update(cls().compute(video, context))
    return out


def read_sheet(path: Path, frames: int, size: int) -> torch.Tensor:
    """The frames of a contact sheet (lossless PNG, one row) as ``[F, 3, H, W]``."""
    import imageio.v3 as iio

    sheet = torch.from_numpy(np.asarray(iio.imread(path), dtype=np.float32) / 255.0).permute(2, 0, 1)
    return torch.stack([sheet[:, :size, i * size : (i + 1) * size] for i in range(frames)])


class CaseRun:
    """One backbone in memory, the case files, and the products of a run folder."""

    def __init__(self, backbone, adapter, folder: str | Path, *, progress: bool = False, log: Log = print) -> None:
        self.backbone, self.adapter, self.folder = backbone, adapter, Path(folder)
        self.progress, self.log = progress, log
        # Products are named by the content of the model the backbone was loaded from (a folder's
        # files, or the id), so a run folder made with one model is never reused for another.
        self.model_tag = f"-m{content_hash(Path(backbone.model_ref))[:8]}"
        spec = backbone.video_spec
        self.size, self.frames = spec.height, spec.frames
        self.inputs = cases.write_case_files(self.folder / "inputs", size=self.size, frames=self.frames)

    def _opts(self, settings: CaseSettings, name: str) -> StageOptions:
        return StageOptions(seed=settings.seed, work_dir=self.folder / "work" / self.tag(settings) / name,
                            progress=self.progress, prior_count=settings.prior_count, prior_steps=settings.prior_steps,
                            checkpoint_every=10_000)

    def tag(self, s: CaseSettings) -> str:
        """The products' folder name: the settings' tag and the model's digest."""
        return s.tag() + self.model_tag

    def _clear(self) -> None:
        """Remove every adapter: each product starts from the bare model."""
        for name in list(self.adapter.adapter_names(self.backbone)):
            self.adapter.remove(self.backbone, name)

    def _product(self, path: Path, make: Callable[[], Any]) -> Path:
        if path.exists():
            self.log(f"  reusing {path}")
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        make().save(path)
        self._clear()
        return path

    def subjects(self, s: CaseSettings) -> list[Path]:
        from videomage.kit import learn_subject

        paths = []
        for case in cases.SUBJECTS:
            name = case.token.strip("<>")
            config = SubjectConfig(token=case.token, class_word=case.class_word, images=self.inputs[case.token],
                                   steps=s.subject_steps, lr=s.subject_lr, text_lr=s.subject_lr / 10, rank=s.rank)
            self.log(f"subject {case.token}: {s.subject_steps} steps")
            path = self.folder / "artifacts" / self.tag(s) / f"{name}.safetensors"
            opts = self._opts(s, f"subject-{name}")
            paths.append(self._product(path, lambda c=config, o=opts: learn_subject(self.backbone, self.adapter, c, o)))
        return paths

    def motion(self, s: CaseSettings) -> Path:
        from videomage.kit import learn_motion

        config = MotionConfig(video=self.inputs["motion"], prompt=cases.MOTION_PROMPT, entities=cases.MOTION_ENTITIES,
                              steps=s.motion_steps, inversion_steps=s.inversion_steps, lr=s.motion_lr, rank=s.rank,
                              omega=s.omega)
        self.log(f"motion: {s.inversion_steps} inversion + {s.motion_steps} steps, omega={s.omega}")
        path = self.folder / "artifacts" / self.tag(s) / f"motion-omega{s.omega:g}.safetensors"
        # Each variant trains in its own work folder: a shared one would resume the other's checkpoint.
        return self._product(path, lambda: learn_motion(self.backbone, self.adapter, config,
                                                        self._opts(s, f"motion-omega{s.omega:g}")))

    def fused(self, s: CaseSettings, subjects: list[Path]) -> Path:
        from videomage.kit import fuse

        config = FusionConfig(steps=s.fusion_steps, lr=s.fusion_lr, lambda_attn=s.lambda_attn,
                              videos_per_subject=s.videos_per_subject)
        self.log(f"fusion: {s.fusion_steps} steps, lambda_attn={s.lambda_attn}")
        path = self.folder / "artifacts" / self.tag(s) / f"fused-lambda{s.lambda_attn:g}.safetensors"
        return self._product(path, lambda: fuse(self.backbone, self.adapter, [str(p) for p in subjects], config,
                                                self._opts(s, f"fusion-lambda{s.lambda_attn:g}")))

    def sample(self, s: CaseSettings, fused: Path | None, motion: Path | None, out: Path,
               prompt: str = cases.TARGET_PROMPT, sampler: str | None = None) -> torch.Tensor:
        """Generate (or reuse) ``out`` (an .mp4) and return its frames, read back losslessly."""
        from videomage.kit import generate

        sampler = sampler or s.sampler
        sheet = out.with_name(out.stem + "-frames.png")
        # Reused only if made from the same products with the same settings.
        stamp_path = out.with_name(out.stem + "-settings.json")
        stamp = json.dumps({**s.sampling(), "sampler": sampler, "prompt": prompt, "tag": self.tag(s),
                            "subjects": str(fused), "motion": str(motion)}, sort_keys=True)
        if sheet.exists() and stamp_path.exists() and stamp_path.read_text() == stamp:
            self.log(f"  reusing {sheet}")
        else:
            options = {"steps": s.sampling_steps, "guidance_scale": s.guidance, "seed": s.seed, "progress": self.progress}
            if sampler == "scs":
                # The toy world's measurements were made with the paper's unnormalised rule.
                options.update(tau=s.tau, alpha_cross=s.alpha, alpha_temporal=s.alpha, guidance_norm="none")
            self.log(f"sampling {out.name} ({sampler}, {s.sampling_steps} steps)")
            generate(self.backbone, self.adapter, prompt=prompt, out=out, subjects=fused, motion=motion,
                     sampler=sampler, options=options, contact_sheet=True)
            self._clear()
            atomic_write(stamp_path, lambda tmp: Path(tmp).write_text(stamp))
        return read_sheet(sheet, self.frames, self.size)

    def full(self, s: CaseSettings, out: Path) -> tuple[torch.Tensor, dict[str, float]]:
        """Subjects, motion, fusion and sampling with settings ``s``; the sample and its scores."""
        fused = self.fused(s, self.subjects(s))
        video = self.sample(s, fused, self.motion(s), out)
        return video, score(video, metric_context(s, self.size, self.frames))
