"""``videomage run RECIPE.toml``: the whole job, stage by stage, resumable.

Each stage's output records a hash of everything that determines it (its settings, the
content of its input files, the hashes of the artifacts it consumes, the model fingerprint and
the seed). A stage whose output exists with the same hash is skipped, so re-running an
interrupted job redoes only what is missing, and changing a setting redoes only the stages
downstream of it. Training stages also resume from their own checkpoints in the work folder,
``<output>/work/<stage>``, which is bound to the same hash: a stage whose inputs changed moves its
old checkpoints aside and starts fresh instead of resuming another job (`videomage.workdir`).

The whole recipe is checked before the model loads (`check_recipe`): input files,
component names, motion entities, device, output folder. Two runs on one output folder at once
are refused.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import attrs

from videomage.artifact import Artifact
from videomage.config import Recipe
from videomage.errors import ConfigError
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


def _outputs(recipe: Recipe) -> list[Path]:
    out = recipe.output.dir
    files = [out / "subjects" / f"{s.token.strip('<>')}.safetensors" for s in recipe.subjects]
    files += [out / "motion.safetensors", out / "fused.safetensors"]
    files += [out / n for n in ("video.mp4", "video.json", "video.gif", "video-frames.png")]
    return files


def check_recipe(recipe: Recipe) -> None:
    """Refuse a recipe that would fail in a later stage, before any model loads or any step runs."""
    from videomage.jobcheck import (check_component, check_device, check_entities, check_images, check_model_folder,
                                    check_prior_videos)
    from videomage.media import check_video
    from videomage.paths import check_writable_folder, refuse_overwriting_inputs

    check_device(recipe.model.device)
    check_model_folder(recipe.model.id)
    inputs: list[Path] = []
    for subject in recipe.subjects:
        check_images(subject.images)
        check_prior_videos(subject.prior_videos)
        inputs += [subject.images] + ([subject.prior_videos] if subject.prior_videos else [])
    if recipe.motion is not None:
        check_entities(recipe.motion.prompt, recipe.motion.entities)
        check_video(recipe.motion.video)
        inputs.append(recipe.motion.video)
    check_components(recipe)
    if recipe.sampling is not None:
        from videomage.stages.generate import check_concepts

        if not recipe.subjects and recipe.motion is None:
            raise ConfigError("recipe: [sampling] needs at least one [[subjects]] or a [motion] to sample with")
        check_concepts(recipe.sampling.sampler, subjects=bool(recipe.subjects), motion=recipe.motion is not None)
    out = recipe.output.dir
    if out.exists() and not out.is_dir():
        raise ConfigError(f"recipe: [output] dir {str(out)!r} is a file; name a folder")
    check_writable_folder(out, "recipe: [output] dir")
    refuse_overwriting_inputs(_outputs(recipe), inputs)


def components(recipe: Recipe) -> list[tuple[str, str, dict, str]]:
    """Every component the recipe names: ``(kind, name, options, where)``."""
    out = [("adapter", recipe.model.adapter, recipe.model.adapter_options, "[model] adapter")]
    for i, s in enumerate(recipe.subjects):
        out.append(("objective", s.objective, s.objective_options, f"[[subjects]] {i + 1} objective"))
    if recipe.motion is not None:
        m = recipe.motion
        out += [("objective", m.objective, m.objective_options, "[motion] objective"),
                ("objective", m.inversion_objective, m.inversion_objective_options, "[motion] inversion_objective")]
    if len(recipe.subjects) > 1:
        f = recipe.fusion
        out += [("mask_source", f.mask_source, f.mask_source_options, "[fusion] mask_source"),
                ("objective", f.distill_objective, f.distill_options, "[fusion] distill_objective"),
                ("objective", f.attention_objective, f.attention_options, "[fusion] attention_objective")]
    if recipe.sampling is not None:
        from videomage.sampling import split

        shared, own = split(recipe.sampling.options)
        if shared:
            key = sorted(shared)[0]
            raise ConfigError(f"recipe: [sampling.options] {key!r} is a setting of every sampler; write it in [sampling]")
        out.append(("sampler", recipe.sampling.sampler, own, "[sampling] sampler"))
    return out


def check_components(recipe: Recipe) -> None:
    """Every named component is installed and its options table is valid for it."""
    from videomage.errors import VideomageError
    from videomage.plugins import get_registry

    registry = get_registry()
    for kind, name, options, where in components(recipe):
        try:
            registry.build_options(kind, name, options)
        except VideomageError as exc:
            raise type(exc)(f"recipe: {where}: {exc}") from None


def run_recipe(recipe: Recipe, *, progress: bool = True, log: Log = print,
               stage_options: StageOptions | None = None) -> dict[str, Path]:
    """Run every stage the recipe asks for; return the paths of what it produced.

    ``stage_options``: the learning stages' shared settings (prior videos, checkpoint period...)
    for callers that need other than the defaults, such as the toy world's demo; its seed, work
    folder and progress flag are the recipe's. Settings that change a product join its key.
    """
    from videomage.workdir import lock, release

    check_recipe(recipe)
    out = recipe.output.dir
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"recipe: [output] dir {str(out)!r} cannot be created: {exc.strerror or exc}") from None
    lock(out / "work", what="output folder's work folder")
    try:
        return _run(recipe, progress=progress, log=log, template=stage_options)
    finally:
        release(out / "work")


#: StageOptions fields that change no product (so not part of any key).
_NOT_PRODUCT = ("seed", "work_dir", "progress", "checkpoint_every", "validate_every", "gradient_checkpointing",
                "release_text_encoder")


def _run(recipe: Recipe, *, progress: bool, log: Log, template: StageOptions | None = None) -> dict[str, Path]:
    from videomage.workdir import bind, model_digest

    out = recipe.output.dir
    backbone = load_backbone(recipe.model.id, backbone=recipe.model.backbone, device=recipe.model.device, dtype=recipe.model.dtype)
    adapter = make_adapter(recipe.model.adapter, recipe.model.adapter_options)
    base = (backbone.name, backbone.fingerprint(), model_digest(recipe.model.id), recipe.seed)
    template = template or StageOptions()
    template = attrs.evolve(template, gradient_checkpointing=template.gradient_checkpointing or recipe.model.gradient_checkpointing,
                            release_text_encoder=template.release_text_encoder or recipe.model.release_text_encoder)
    changed = {k: v for k, v in _settings(template).items() if k not in _NOT_PRODUCT and v != _settings(StageOptions())[k]}
    if changed:  # keys made with the default options stay as they were
        base = (*base, changed)
    produced: dict[str, Path] = {}
    hashes: dict[str, str] = {}

    def stage_key(stage: str, **named) -> tuple[str, dict[str, str]]:
        # One digest per named part, so that a changed input can be named; the key covers them all.
        settings = dict(named.pop("settings"))
        steps = str(settings.pop("steps"))  # a number, so that more steps can train on (see workdir.bind)
        parts = {"model and seed": content_hash(base), "settings": content_hash(settings), "steps": steps,
                 **{k.replace("_", " "): content_hash(v) for k, v in named.items()}}
        return content_hash(stage, parts), parts

    def opts(name: str, parts: dict[str, str]) -> StageOptions:
        work = out / "work" / name
        bind(work, parts, log=log, what=f"work folder of stage {name}")
        return attrs.evolve(template, seed=recipe.seed, work_dir=work, progress=progress)

    from videomage.stages.subject import learn_subject

    for subject in recipe.subjects:
        name = subject.token.strip("<>")
        path = out / "subjects" / f"{name}.safetensors"
        key, parts = stage_key("subject", settings=_settings(subject), images=subject.images,
                               prior_videos=subject.prior_videos or "")
        if _done(path, key):
            log(f"subject {subject.token}: up to date ({path})")
        else:
            log(f"subject {subject.token}: learning")
            path.parent.mkdir(parents=True, exist_ok=True)
            _save(learn_subject(backbone, adapter, subject, opts(f"subject-{name}", parts)), path, key)
            adapter.remove(backbone, "subject")
        produced[f"subject:{subject.token}"] = path
        hashes[subject.token] = content_hash(path)

    if recipe.motion is not None:
        from videomage.stages.motion import learn_motion

        path = out / "motion.safetensors"
        key, parts = stage_key("motion", settings=_settings(recipe.motion), video=recipe.motion.video)
        if _done(path, key):
            log(f"motion: up to date ({path})")
        else:
            log("motion: learning")
            _save(learn_motion(backbone, adapter, recipe.motion, opts("motion", parts)), path, key)
            adapter.remove(backbone, "motion")
        produced["motion"] = path
        hashes["motion"] = content_hash(path)

    subjects_path = produced.get(f"subject:{recipe.subjects[0].token}") if len(recipe.subjects) == 1 else None
    if len(recipe.subjects) > 1:
        from videomage.stages.fusion import fuse

        subjects_path = out / "fused.safetensors"
        key, parts = stage_key("fusion", settings=_settings(recipe.fusion), subjects=[hashes[s.token] for s in recipe.subjects])
        if _done(subjects_path, key):
            log(f"fusion: up to date ({subjects_path})")
        else:
            log("fusion: training")
            paths = [produced[f"subject:{s.token}"] for s in recipe.subjects]
            _save(fuse(backbone, adapter, paths, recipe.fusion, opts("fusion", parts)), subjects_path, key)
            for name in [n for n in adapter.adapter_names(backbone) if n.startswith("teacher_") or n == "student"]:
                adapter.remove(backbone, name)
        produced["fused"] = subjects_path

    if recipe.sampling is not None:
        from videomage.options import keyed
        from videomage.plugins import get_registry
        from videomage.stages.generate import generate

        s = recipe.sampling
        video = out / "video.mp4"
        consumed = [content_hash(subjects_path)] + ([hashes["motion"]] if "motion" in hashes else [])
        # Neutral options (memory/speed trade-offs such as SCS's guidance_checkpointing) give the same
        # video: not part of the key.
        sampler_options = get_registry().build_options("sampler", s.sampler, s.options)
        key = content_hash("sampling", base, _settings(attrs.evolve(s, options=keyed(sampler_options))), consumed)
        if _done(video, key):
            log(f"sampling: up to date ({video})")
        else:
            log("sampling")
            options = {"steps": s.steps, "guidance_scale": s.guidance_scale, "seed": s.seed, "frames": s.frames,
                       "height": s.height, "width": s.width, "negative_prompt": s.negative_prompt, "scheduler": s.scheduler,
                       "progress": progress, **s.options}
            generate(backbone, adapter, prompt=s.prompt, out=video, subjects=subjects_path, motion=produced.get("motion"),
                     sampler=s.sampler, options=options, gif=recipe.output.gif, contact_sheet=recipe.output.contact_sheet,
                     release_text=template.release_text_encoder,
                     record_extra={"recipe": _settings(recipe), "input_hash": key})
        produced["video"] = video
    return produced
