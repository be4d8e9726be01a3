"""Generation: install the fused subjects and the motion, sample, decode and write the outputs.

Outputs beside ``out`` (an ``.mp4`` path): the mp4, optionally a gif, a contact-sheet PNG of
the frames, and ``<name>.json``, a record of everything that produced the video (settings,
seed, versions, artifact hashes).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from videomage._version import __version__
from videomage.artifact import Artifact, atomic_write
from videomage.components import Adapter, Backbone
from videomage.errors import ArtifactError, ConfigError, SamplingError
from videomage.media import write_contact_sheet, write_gif, write_mp4
from videomage.plugins import get_registry
from videomage.stages.common import content_hash, refuse_token_collisions
from videomage.text import release_text_encoder


def install_concepts(backbone: Backbone, adapter: Adapter, subjects: str | Path | None, motion: str | Path | None) -> dict[str, Any]:
    """Install the subject (fused or single) and motion artifacts as adapters ``subjects``/``motion``.

    Both are read and checked before either is installed: a token both of them learn is refused
    (naming both files), since the second install would overwrite the first's embedding.
    """
    out: dict[str, Any] = {"tokens": {}, "hashes": {}}
    loaded: dict[str, tuple[str, Artifact]] = {}
    for role, path, kinds in (("subjects", subjects, ("fused", "subject")), ("motion", motion, ("motion",))):
        if path is None:
            continue
        art = Artifact.load(path)
        if art.kind not in kinds:
            raise ArtifactError(f"{str(path)!r} holds a {art.kind!r} concept, expected one of {kinds} for --{role}")
        loaded[str(path)] = (role, art)
    refuse_token_collisions([(source, art) for source, (_, art) in loaded.items()])
    for source, (role, art) in loaded.items():
        if role in adapter.adapter_names(backbone):
            adapter.remove(backbone, role)
        art.install(backbone, adapter, role, source=source)
        out["hashes"][source] = content_hash(Path(source))
        if role == "subjects":
            out["tokens"] = dict(art.tokens)
    return out


def sampling_prompts(request: Mapping[str, Any], sampler: str) -> list[str]:
    """The prompts a bundled sampler encodes for ``request``: its prompt and negative prompt, and
    for SCS the motion branch's prompt (the tokens replaced by their class words)."""
    prompts = [request["prompt"], request.get("negative_prompt") or ""]
    if sampler == "scs":
        from videomage_samplers.matching import motion_prompt_for

        prompts.append(request.get("motion_prompt") or motion_prompt_for(request["prompt"], request.get("tokens", {})))
    return prompts


def generate(
    backbone: Backbone,
    adapter: Adapter,
    *,
    prompt: str,
    out: str | Path,
    subjects: str | Path | None = None,
    motion: str | Path | None = None,
    sampler: str = "scs",
    options: Mapping[str, Any] | None = None,
    gif: bool = False,
    contact_sheet: bool = True,
    record_extra: Mapping[str, Any] | None = None,
    release_text: bool = False,
) -> dict[str, Any]:
    """Sample one video and write it with its record (plus ``record_extra``); returns the record.

    ``release_text``: move the text encoder to the host once the sampler's prompts are encoded."""
    out = Path(out)
    if out.suffix.lower() != ".mp4":
        raise ConfigError(f"--out must be an .mp4 path, got {str(out)!r}")
    if sampler == "scs" and (subjects is None or motion is None):
        raise ConfigError("sampler 'scs' needs both --subjects and --motion; use --sampler cfg for one of them")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the folder of --out {str(out)!r}: {exc.strerror or exc}") from None
    installed = install_concepts(backbone, adapter, subjects, motion)
    request: dict[str, Any] = {"prompt": prompt, **(options or {})}
    if sampler == "scs":
        if subjects is None or motion is None:
            raise ConfigError("sampler 'scs' needs both --subjects and --motion; use --sampler cfg for one of them")
        request.setdefault("subject_adapter", "subjects")
        request.setdefault("motion_adapter", "motion")
        request.setdefault("tokens", installed["tokens"])
    else:
        request.setdefault("adapters", {n: 1.0 for n, p in (("subjects", subjects), ("motion", motion)) if p is not None})
    release_text_encoder(backbone, sampling_prompts(request, sampler), release_text)
    started = time.time()
    latents = get_registry().create("sampler", sampler).sample(backbone, adapter, request)
    with torch.no_grad():
        video = backbone.decode_latents(latents)[0].float().cpu()
    if not bool(torch.isfinite(video).all()):  # would be written as a black video with exit 0
        raise SamplingError(f"sampling with {sampler!r} produced NaN or infinite values, so no video was written to "
                            f"{str(out)!r}; lower --guidance-scale or the SCS step sizes (--alpha-cross, --alpha-temporal), or check the artifacts")
    fps = backbone.video_spec.fps
    files = {"mp4": str(write_mp4(video, out, fps=fps))}
    if gif:
        files["gif"] = str(write_gif(video, out.with_suffix(".gif"), fps=fps))
    if contact_sheet:
        files["contact_sheet"] = str(write_contact_sheet(video, out.with_name(out.stem + "-frames.png")))
    record = {
        "prompt": prompt,
        "sampler": sampler,
        "request": {k: v for k, v in request.items() if k != "progress"},
        "backbone": backbone.name,
        "model": backbone.model_ref,
        "artifacts": installed["hashes"],
        "frames": list(video.shape),
        "files": files,
        "seconds": round(time.time() - started, 2),
        "versions": {"videomage": __version__, "torch": torch.__version__},
        **(record_extra or {}),
    }
    text = json.dumps(record, indent=2, default=str)
    atomic_write(out.with_suffix(".json"), lambda tmp: Path(tmp).write_text(text))
    return record
