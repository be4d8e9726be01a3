"""``videomage run RECIPE.toml``: the whole job, stage by stage, resumable.

Each stage's output records a hash of everything that determines it (its settings, the
content of its input files, the hashes of the artifacts it consumes, the model fingerprint and
the seed). A stage whose output exists with the same hash is skipped, so re-running an
interrupted job redoes only what is missing, and changing a setting redoes only the stages
downstream of it. Training stages also resume from their own checkpoints in the work folder.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import attrs

from videomage.artifact import Artifact
from videomage.config import Recipe
from videomage.loading import load_backbone, make_adapter
from videomage.stages.common import StageOptions, content_hash

Log = Callable[[str], None]


def _settings(record) -> dict:
    return attrs.asdict(record, value_serializer=lambda i, f, v: str(v) if isinstance(v, Path) else v)


def _done(path: Path, key: str) -> bool:
    if not path.exists():
        return False
    if path.suffix == ".safetensors":
        return Artifact.load(path).info.get("input_hash") == key
    record = path.with_suffix(".json")
    return record.exists() and json.loads(record.read_text()).get("input_hash") == key


def _save(artifact: Artifact, path: Path, key: str) -> str:
    artifact = attrs.evolve(artifact, info={**artifact.info, "input_hash": key})
    artifact.save(path)
    return content_hash(path)


def run_recipe(recipe: Recipe, *, progress: bool = True, log: Log = print) -> dict[str, Path]:
    """Run every stage the recipe asks for; return the paths of what it produced."""
    out = recipe.output.dir
    out.mkdir(parents=True, exist_ok=True)
    backbone = load_backbone(recipe.model.id, backbone=recipe.model.backbone, device=recipe.model.device, dtype=recipe.model.dtype)
    adapter = make_adapter()
    base = (backbone.name, backbone.fingerprint(), recipe.seed)
    produced: dict[str, Path] = {}
    hashes: dict[str, str] = {}

    def opts(name: str) -> StageOptions:
        return StageOptions(seed=recipe.seed, work_dir=out / "work" / name, progress=progress)

    from videomage.stages.subject import learn_subject

    for subject in recipe.subjects:
        name = subject.token.strip("<>")
        path = out / "subjects" / f"{name}.safetensors"
        key = content_hash("subject", base, _settings(subject), subject.images, subject.prior_videos or "")
        if _done(path, key):
            log(f"subject {subject.token}: up to date ({path})")
        else:
            log(f"subject {subject.token}: learning")
            path.parent.mkdir(parents=True, exist_ok=True)
            _save(learn_subject(backbone, adapter, subject, opts(f"subject-{name}")), path, key)
            adapter.remove(backbone, "subject")
        produced[f"subject:{subject.token}"] = path
        hashes[subject.token] = content_hash(path)

    if recipe.motion is not None:
        from videomage.stages.motion import learn_motion

        path = out / "motion.safetensors"
        key = content_hash("motion", base, _settings(recipe.motion), recipe.motion.video)
        if _done(path, key):
            log(f"motion: up to date ({path})")
        else:
            log("motion: learning")
            _save(learn_motion(backbone, adapter, recipe.motion, opts("motion")), path, key)
            adapter.remove(backbone, "motion")
        produced["motion"] = path
        hashes["motion"] = content_hash(path)

    subjects_path = produced.get(f"subject:{recipe.subjects[0].token}") if len(recipe.subjects) == 1 else None
    if len(recipe.subjects) > 1:
        from videomage.stages.fusion import fuse

        subjects_path = out / "fused.safetensors"
        key = content_hash("fusion", base, _settings(recipe.fusion), [hashes[s.token] for s in recipe.subjects])
        if _done(subjects_path, key):
            log(f"fusion: up to date ({subjects_path})")
        else:
            log("fusion: training")
            paths = [produced[f"subject:{s.token}"] for s in recipe.subjects]
            _save(fuse(backbone, adapter, paths, recipe.fusion, opts("fusion")), subjects_path, key)
            for name in [n for n in adapter.adapter_names(backbone) if n.startswith("teacher_") or n == "student"]:
                adapter.remove(backbone, name)
        produced["fused"] = subjects_path

    if recipe.sampling is not None:
        from videomage.stages.generate import generate

        s = recipe.sampling
        video = out / "video.mp4"
        consumed = [content_hash(subjects_path)] + ([hashes["motion"]] if "motion" in hashes else [])
        # guidance_checkpointing trades memory for time and gives the same video: not part of the key.
        key = content_hash("sampling", base, _settings(attrs.evolve(s, guidance_checkpointing=True)), consumed)
        if _done(video, key):
            log(f"sampling: up to date ({video})")
        else:
            log("sampling")
            options = {"steps": s.steps, "guidance_scale": s.guidance_scale, "seed": s.seed, "frames": s.frames,
                       "height": s.height, "width": s.width, "negative_prompt": s.negative_prompt, "scheduler": s.scheduler,
                       "progress": progress}
            if s.sampler == "scs":
                options.update(alpha_cross=s.alpha_cross, alpha_temporal=s.alpha_temporal, guidance_norm=s.guidance_norm,
                               tau=s.tau, beta_s=s.beta_s, beta_m=s.beta_m,
                               guidance_checkpointing=s.guidance_checkpointing)
            generate(backbone, adapter, prompt=s.prompt, out=video, subjects=subjects_path, motion=produced.get("motion"),
                     sampler=s.sampler, options=options, gif=recipe.output.gif, contact_sheet=recipe.output.contact_sheet,
                     record_extra={"recipe": _settings(recipe), "input_hash": key})
        produced["video"] = video
    return produced
