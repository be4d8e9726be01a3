"""A model folder's weight files: safetensors, or PyTorch ``.bin`` read without running code.

Some published models ship components as ``.bin`` pickles only (``cerspense/zeroscope_v2_576w``
ships ``unet/`` and ``vae/`` that way). A pickle can run any code when it is unpickled, so such
files are only ever read through PyTorch's restricted unpickler, ``torch.load(weights_only=True)``,
which rebuilds tensors and plain containers and refuses every other object. Backbones ask
:func:`use_safetensors` per component before loading it: a ``.bin`` component is checked here
first (a refused file is a one-line :class:`~videomage.errors.ConfigError`, nothing runs), then
loaded by diffusers/transformers, which read ``.bin`` with ``weights_only=True`` too.
:func:`convert_folder` (``videomage convert-model``) rewrites such a folder as safetensors once.

User artifacts never take this path: they are safetensors only (:mod:`videomage.artifact`).
"""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from videomage.errors import ConfigError
from videomage.modelfiles import cached_file

__all__ = ["bin_files", "convert_folder", "load_restricted", "local_folder", "use_safetensors"]

_BIN_SUFFIX = ".bin"


def local_folder(model: str, probe: str = "model_index.json") -> Path | None:
    """The folder holding ``model``'s files: the folder itself, or its snapshot in the local cache."""
    local = Path(model)
    if local.is_dir():
        return local
    found = cached_file(model, probe)
    return found.parent if found is not None else None


def bin_files(component: Path) -> list[Path]:
    """The ``.bin`` weight files of a component folder that has no safetensors weights."""
    if not component.is_dir() or any(component.glob("*.safetensors")):
        return []
    return sorted(p for p in component.glob("*.bin") if p.is_file())


def load_restricted(path: Path) -> dict[str, torch.Tensor]:
    """Read a ``.bin`` state dict with ``torch.load(weights_only=True)``; refuse anything else in one line."""
    try:
        try:
            data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:  # legacy (non-zip) files cannot be memory-mapped
            if "mmap" not in str(exc):
                raise
            data = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, AttributeError, ImportError) as exc:
        # torch's message opens with a paragraph about its defaults (and how to bypass them, which
        # is exactly what must not be done here); the cause is the next paragraph.
        paras = [p.strip() for p in str(exc).split("\n\n") if p.strip()]
        causes = [p for p in paras[1:] if not p.startswith("Check the documentation")]
        reason = (causes or paras or [type(exc).__name__])[0].removeprefix("WeightsUnpickler error: ")
        reason = reason.split(" was not an allowed global")[0].replace("\n", " ")
        raise ConfigError(
            f"refused {str(path)!r}: it is not a plain tensor file (the restricted unpickler, torch.load("
            f"weights_only=True), stopped at: {reason[:160]}); nothing in it was run. Use safetensors weights "
            f"from a source you trust"
        ) from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in data.items()):
        raise ConfigError(f"refused {str(path)!r}: expected a state dict of named tensors, got {type(data).__name__}")
    return data


_NOTICED: set[Path] = set()


def use_safetensors(model: str, subfolder: str) -> bool | None:
    """What to pass as ``use_safetensors`` when loading component ``subfolder`` of ``model``.

    True when the component's files here are safetensors. False when they are ``.bin`` only:
    every ``.bin``-only component of the folder is then checked through ``load_restricted``
    (so a refused file stops the load before any component is built) and one notice line, once
    per folder, names them and says how to convert the folder. None for a Hub id whose files are
    not on this machine yet: the library downloads safetensors where the repo has them, else
    ``.bin``, which diffusers and transformers read with ``weights_only=True`` too.
    """
    folder = local_folder(model, f"{subfolder}/config.json")
    if folder is None:
        return None
    if folder.name == subfolder:  # found through the component's own config in the cache
        folder = folder.parent
    if not bin_files(folder / subfolder):
        return True
    components = {p.name: bin_files(p) for p in sorted(folder.iterdir()) if p.is_dir() and bin_files(p)}
    for files in components.values():
        for path in files:
            load_restricted(path)
    if folder.resolve() not in _NOTICED:
        _NOTICED.add(folder.resolve())
        print(f"videomage: {model} has .bin weights only in {', '.join(components)}; reading them with "
              f"torch.load(weights_only=True). `videomage convert-model {folder}` rewrites them as safetensors once",
              file=sys.stderr)
    return False


def _safetensors_name(path: Path) -> str:
    # diffusers' and transformers' file names: diffusion_pytorch_model.bin -> .safetensors,
    # pytorch_model.bin -> model.safetensors; shards keep their numbering.
    stem = path.name[: -len(_BIN_SUFFIX)]
    if stem.startswith("pytorch_model"):
        stem = "model" + stem[len("pytorch_model"):]
    return stem + ".safetensors"


def _untied(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous tensors with no two sharing storage (safetensors refuses shared storage)."""
    seen: set[int] = set()
    out = {}
    for key, value in state.items():
        value = value.contiguous()
        ptr = value.untyped_storage().data_ptr()
        out[key] = value.clone() if ptr in seen and value.numel() else value
        seen.add(ptr)
    return out


def convert_folder(folder: str | Path, *, keep_bin: bool = False) -> list[Path]:
    """Rewrite every ``.bin``-only component of a diffusers-layout ``folder`` as safetensors.

    Each file is read through the restricted unpickler, written atomically, read back and
    compared tensor by tensor before the ``.bin`` is removed (kept with ``keep_bin``). A shard
    index (``*.bin.index.json``) is rewritten to name the new files. Returns the files written;
    a folder with nothing to convert returns ``[]``.
    """
    from videomage.artifact import atomic_write

    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"model folder {str(folder)!r} does not exist; pass a diffusers-layout folder")
    written: list[Path] = []
    for component in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = bin_files(component)
        for path in files:
            state = _untied(load_restricted(path))
            target = component / _safetensors_name(path)
            atomic_write(target, lambda tmp, s=state: save_file(s, tmp, metadata={"format": "pt"}))
            back = load_file(target)
            if back.keys() != state.keys() or any(not torch.equal(back[k], state[k]) for k in state):
                target.unlink()
                raise ConfigError(f"converting {str(path)!r}: the safetensors copy does not read back equal; kept the .bin")
            written.append(target)
        for index in component.glob("*.bin.index.json"):
            data = json.loads(index.read_text())
            data["weight_map"] = {k: _safetensors_name(Path(v)) for k, v in data.get("weight_map", {}).items()}
            name = index.name.replace(".bin.index.json", ".safetensors.index.json")
            target = component / ("model" + name[len("pytorch_model"):] if name.startswith("pytorch_model") else name)
            atomic_write(target, lambda tmp, d=data: Path(tmp).write_text(json.dumps(d, indent=2) + "\n"))
            written.append(target)
            if not keep_bin:
                index.unlink()
        if not keep_bin:
            for path in files:
                path.unlink()
    return written
