"""A model's files on disk: what every backbone plugin reads before it loads anything.

Nothing here downloads. A Hub id resolves only through the local Hugging Face cache, so that
detecting which backbone a model belongs to is instant and offline; the components' own
``from_pretrained`` decide whether to fetch what is missing.

A model folder may carry ``videomage.json`` at its root declaring the native video size, for
models whose configs do not say it (the toy world's model, the tiny test models)::

    {"video_spec": {"height": 64, "width": 64, "frames": 8, "fps": 8}}
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import torch

from videomage.components import VideoSpec
from videomage.errors import ConfigError

__all__ = ["DTYPES", "SPEC_FILE", "cached_file", "check_model_request", "component_configs", "read_config",
           "read_video_spec", "write_video_spec"]

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
SPEC_FILE = "videomage.json"


def cached_file(model_id: str, filename: str) -> Path | None:
    """``filename`` of Hub repo ``model_id`` when it is in the local cache; never downloads."""
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", model_id):
        return None
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(model_id, filename)
    except Exception:  # no hub library, or a name the cache refuses
        return None
    return Path(found) if isinstance(found, str) else None


def read_config(model: str, filename: str) -> dict | None:
    """The JSON object ``filename`` of a local folder or a cached Hub id; None if absent or unreadable."""
    local = Path(model)
    path = local / filename if local.is_dir() else cached_file(model, filename)
    if path is None or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def read_video_spec(model: str) -> VideoSpec | None:
    """The native size a model folder declares in ``videomage.json``; None when it has none."""
    path = Path(model) / SPEC_FILE
    if not path.is_file():
        return None
    try:
        spec = json.loads(path.read_text())["video_spec"]
        return VideoSpec(height=int(spec["height"]), width=int(spec["width"]), frames=int(spec["frames"]), fps=int(spec["fps"]))
    except (KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
        raise ConfigError(
            f"{str(path)!r} is malformed ({exc!r}); expected "
            '{"video_spec": {"height": H, "width": W, "frames": F, "fps": FPS}}'
        ) from None


def write_video_spec(folder: str | Path, spec: VideoSpec) -> Path:
    """Declare ``spec`` as the native size of the model in ``folder``."""
    path = Path(folder) / SPEC_FILE
    path.write_text(json.dumps({"video_spec": attrs.asdict(spec)}, indent=2) + "\n")
    return path


def check_model_request(model: str, dtype: str, check_folder: Callable[[Path], None]) -> torch.dtype:
    """What every backbone's ``from_pretrained`` checks first; returns the torch dtype.

    ``dtype`` must be one of ``DTYPES``; a local folder goes through the family's
    ``check_folder`` (which names a missing component); a path that is not a folder is refused,
    so that a typo in a path is not mistaken for a Hub id.
    """
    if dtype not in DTYPES:
        raise ConfigError(f"dtype {dtype!r} is not supported; choose one of {sorted(DTYPES)}")
    local = Path(model)
    if local.is_dir():
        check_folder(local)
    elif local.exists() or model.startswith((".", "/", "~")):
        raise ConfigError(f"model {model!r} is not a folder; pass a diffusers-layout folder or a Hub id")
    return DTYPES[dtype]


def config_fingerprint(config: Mapping[str, Any], **extra: Any) -> str:
    """16 hex digits of a model config's public keys (those not starting with ``_``) plus ``extra``:
    what a backbone's ``fingerprint()`` returns, so artifacts name the architecture they fit."""
    keys = {k: v for k, v in dict(config).items() if not k.startswith("_")}
    return hashlib.sha256(json.dumps({**keys, **extra}, sort_keys=True, default=str).encode()).hexdigest()[:16]


def component_configs(model: str, components: tuple[str, ...], published: Mapping[str, Mapping[str, dict]],
                      family: str) -> dict[str, dict]:
    """Each component's ``config.json`` from a local folder or the cache, or else the configs a
    plugin carries for a published id (what a backbone builds on the meta device from)."""
    found = {c: read_config(model, f"{c}/config.json") for c in components}
    if all(v is not None for v in found.values()):
        return found
    if model in published:
        return dict(published[model])
    missing = next(c for c, v in found.items() if v is None)
    raise ConfigError(
        f"cannot plan {family} model {model!r}: it has no readable {missing}/config.json. Pass a local folder in "
        f"the diffusers layout, or one of the published ids: {', '.join(published)}"
    )

