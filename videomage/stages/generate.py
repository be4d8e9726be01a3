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

import attrs
import torch

from videomage._version import __version__
from videomage.artifact import Artifact, atomic_write
from videomage.components import Adapter, Backbone
from videomage.config import SamplingConfig, default
from videomage.errors import ArtifactError, ConfigError, SamplingError
from videomage.media import write_contact_sheet, write_gif, write_mp4
from videomage.options import as_dict
from videomage.plugins import get_registry
from videomage.sampling import Concept, SamplingRequest, split
from videomage.stages.common import content_hash, refuse_token_collisions
from videomage.text import release_text_encoder


def install_concepts(backbone: Backbone, adapter: Adapter, subjects: str | Path | None, motion: str | Path | None) -> dict[str, Any]:
    """Install the subject (fused or single) and motion artifacts as adapters ``subjects``/``motion``.

    Both are read and checked before either is installed: a token both of them learn is refused
    (naming both files), since the second install would overwrite the first's embedding.
    """
    out: dict[str, Any] = {"tokens": {}, "motion_tokens": {}, "hashes": {}, "roles": []}
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
        out["roles"].append(role)
        out["tokens" if role == "subjects" else "motion_tokens"] = dict(art.tokens)
    return out


def concepts_of(installed: Mapping[str, Any]) -> dict[str, Any]:
    """The request's concepts for what `install_concepts` installed."""
    out: dict[str, Any] = {}
    if "subjects" in installed["roles"]:
        out["subjects"] = (Concept(adapter="subjects", tokens=installed["tokens"]),)
    if "motion" in installed["roles"]:
        out["motion"] = Concept(adapter="motion", tokens=installed["motion_tokens"])
    return out


def check_concepts(sampler: str, *, subjects: bool, motion: bool) -> None:
    """Refuse, before any model loads, a sampler that needs a concept the job does not give it."""
    cls = get_registry().get("sampler", sampler)
    given = {"subjects": subjects, "motion": motion}
    missing = [c for c in getattr(cls, "requires_concepts", ()) if not given.get(c, True)]
    if missing:
        raise ConfigError(f"sampler {sampler!r} needs {' and '.join(missing)} concept{'s' if len(missing) > 1 else ''} "
                          f"(--subjects and --motion, or [[subjects]] and [motion] in a recipe); give "
                          f"{'them' if len(missing) > 1 else 'it'}, or choose a sampler that samples with what you have")


def generate(
    backbone: Backbone,
    adapter: Adapter,
    *,
    prompt: str,
    out: str | Path,
    subjects: str | Path | None = None,
    motion: str | Path | None = None,
    sampler: str = default(SamplingConfig, "sampler"),
    options: Mapping[str, Any] | None = None,
    gif: bool = False,
    contact_sheet: bool = True,
    record_extra: Mapping[str, Any] | None = None,
    release_text: bool = False,
) -> dict[str, Any]:
    """Sample one video and write it with its record (plus ``record_extra``); returns the record.

    ``options`` holds the request's shared settings (``steps``, ``guidance_scale``, ``seed``,
    ``frames``... see [`SamplingRequest`][videomage.sampling.SamplingRequest]) and the sampler's own
    options, told apart by name; the sampler's record refuses a key it does not know.
    ``release_text``: move the text encoder to the host once the sampler's prompts are encoded.
    """
    out = Path(out)
    if out.suffix.lower() != ".mp4":
        raise ConfigError(f"--out must be an .mp4 path, got {str(out)!r}")
    check_concepts(sampler, subjects=subjects is not None, motion=motion is not None)
    shared, own = split(options or {})
    component = get_registry().create("sampler", sampler, **own)  # options checked before the concepts install
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the folder of --out {str(out)!r}: {exc.strerror or exc}") from None
    installed = install_concepts(backbone, adapter, subjects, motion)
    request = SamplingRequest(prompt=prompt, **shared, **concepts_of(installed))
    release_text_encoder(backbone, component.prompts(request), release_text)
    started = time.time()
    latents = component.sample(backbone, adapter, request)
    with torch.no_grad():
        video = backbone.decode_latents(latents)[0].float().cpu()
    if not bool(torch.isfinite(video).all()):  # would be written as a black video with exit 0
        raise SamplingError(f"sampling with {sampler!r} produced NaN or infinite values, so no video was written to "
                            f"{str(out)!r}; lower --guidance-scale or the sampler's step sizes (its -o options, listed by "
                            f"`videomage plugins --options`), or check the artifacts")
    fps = backbone.video_spec.fps
    files = {"mp4": str(write_mp4(video, out, fps=fps))}
    if gif:
        files["gif"] = str(write_gif(video, out.with_suffix(".gif"), fps=fps))
    if contact_sheet:
        files["contact_sheet"] = str(write_contact_sheet(video, out.with_name(out.stem + "-frames.png")))
    record = {
        "prompt": prompt,
        "sampler": sampler,
        "request": request.record(),
        "options": as_dict(getattr(component, "options", None)) if attrs.has(type(getattr(component, "options", None))) else {},
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
