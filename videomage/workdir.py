"""Work folders (``<out>.work``): bound to the job that made them, and held by one run at a time.

A stage resumes from the checkpoints and caches in its work folder. That is right only when
the folder was made by the same job: the same input bytes, model weights and settings. So each
work folder carries ``job.json``, a digest of everything that determines the result plus one
digest per named part ("images", "lr", "model", ...). A run whose digest differs does not
resume: it moves the old state aside to ``<work>.stale-<time>`` (nothing is deleted), says which
parts changed, and starts fresh.

A second run on the same work folder while the first is alive would interleave two jobs'
checkpoints and lose one result, so a run holds an exclusive lock on ``<work>/lock`` (an OS
file lock, released by the OS when the process dies, even by SIGKILL) and a second run is
refused with the first one's process id.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from videomage.errors import ConfigError, VideomageError

__all__ = ["JOB_FILE", "LOCK_FILE", "WorkDirBusy", "bind", "lock", "model_digest"]

JOB_FILE = "job.json"
LOCK_FILE = "lock"
#: Entries a videomage work folder may hold; a folder with anything else is not ours to move.
OURS = ("ckpt-", "cache", "validation")

_held: dict[str, Any] = {}  # path -> open lock file, kept open for the life of the process

Log = Callable[[str], None]


class WorkDirBusy(VideomageError):
    """Another live process holds the work folder."""


def _prepare(folder: Path, what: str) -> None:
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{what} {str(folder)!r} is a file, expected a folder for checkpoints and caches; "
                          f"pass another --work-dir or remove the file")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{what} {str(folder)!r} cannot be created: {exc.strerror or exc}; "
                          f"choose a writable place with --work-dir") from None


def lock(folder: str | Path, *, what: str = "work folder") -> None:
    """Hold ``folder`` for this process; refuse if another live process holds it."""
    folder = Path(folder)
    key = str(folder.resolve())
    if key in _held:
        return
    _prepare(folder, what)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory locks, no protection
        return
    path = folder / LOCK_FILE
    try:
        fh = open(path, "a+")
    except OSError as exc:
        raise ConfigError(f"{what} {str(folder)!r} is not writable ({exc.strerror or exc}); "
                          f"choose a writable place with --work-dir") from None
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.seek(0)
        holder = fh.read().strip() or "unknown"
        fh.close()
        raise WorkDirBusy(
            f"{what} {str(folder)!r} is in use by another videomage run (process {holder}); wait for it to "
            f"finish, stop it, or give this run another --out or --work-dir"
        ) from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"{os.getpid()}\n")
    fh.flush()
    _held[key] = fh


def release(folder: str | Path) -> None:
    """Give up a lock this process holds (tests; a process's locks end with it anyway)."""
    fh = _held.pop(str(Path(folder).resolve()), None)
    if fh is not None:
        fh.close()


#: What ``model_digest`` reads of each file: this many blocks of ``_BLOCK`` bytes, evenly spaced.
_BLOCKS, _BLOCK = 64, 1 << 16


def model_digest(model: str) -> str:
    """A digest of a model folder's weights: each file's name and size, and 64 blocks of 64 KiB
    evenly spaced through it (the whole file when it is smaller than 4 MiB).

    Reading 4 MiB per file, not gigabytes, keeps this instant on real models. Blocks spread
    through the file, not only its ends, tell apart two checkpoints that differ in some layers
    only (a LoRA merged into the attention layers, a partial fine-tune): their changed tensors
    lie between the file's first and last megabytes. A Hub id stands for itself.
    """
    import hashlib

    folder = Path(model)
    h = hashlib.sha256()
    if not folder.is_dir():
        h.update(model.encode())
        return h.hexdigest()[:16]
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        size = f.stat().st_size
        h.update(f"{f.relative_to(folder)}:{size}".encode())
        try:
            with open(f, "rb") as fh:
                if size <= _BLOCKS * _BLOCK:
                    h.update(fh.read())
                    continue
                for i in range(_BLOCKS):
                    fh.seek((size - _BLOCK) * i // (_BLOCKS - 1))
                    h.update(fh.read(_BLOCK))
        except OSError:
            continue  # an unreadable file is reported by the loader, with a better message
    return h.hexdigest()[:16]


def _ours(entry: Path) -> bool:
    return entry.name.startswith(OURS)


def _continues(old: Mapping[str, str], new: Mapping[str, str], grows: tuple[str, ...]) -> bool:
    """True when only counts in ``grows`` changed, each to a larger number (training on)."""
    changed = {k for k in set(old) | set(new) if old.get(k) != new.get(k)}
    if not changed or not changed <= set(grows):
        return False
    try:
        return all(int(new[k]) >= int(old[k]) for k in changed)
    except (KeyError, ValueError):
        return False


def bind(folder: str | Path, parts: Mapping[str, str], *, log: Log = print, what: str = "work folder",
         grows: tuple[str, ...] = ("steps",)) -> bool:
    """Make ``folder`` belong to the job described by ``parts`` (name -> digest).

    Returns True when the folder already belonged to this job (its checkpoints will be resumed),
    False when it starts empty. State of another job is moved to ``<folder>.stale-<time>``.
    A part named in ``grows`` (the step count) may grow without making another job: a finished
    run then trains on from its last checkpoint, as an uninterrupted longer run would. Fewer
    steps than the checkpoint holds cannot be had from it, so that is another job.
    """
    folder = Path(folder)
    _prepare(folder, what)
    parts = {k: str(v) for k, v in sorted(parts.items())}
    job = folder / JOB_FILE
    entries = [e for e in folder.iterdir() if e.name not in (LOCK_FILE, JOB_FILE)]
    old: dict[str, str] | None = None
    if job.is_file():
        try:
            old = json.loads(job.read_text()).get("parts")
        except (OSError, ValueError, AttributeError):
            old = None
    from videomage.artifact import atomic_write

    text = json.dumps({"parts": parts}, indent=2, sort_keys=True)
    if old == parts:
        return True
    if old is not None and _continues(old, parts, grows):
        atomic_write(job, lambda tmp: Path(tmp).write_text(text))
        return True
    if entries:
        foreign = [e.name for e in entries if not _ours(e)]
        if old is None and foreign:
            raise ConfigError(
                f"{what} {str(folder)!r} holds files videomage did not write ({', '.join(sorted(foreign)[:3])}); "
                f"give --work-dir a new or empty folder"
            )
        if old is None:
            changed = "it records no job (made by an older videomage)"
        else:
            names = sorted(k for k in set(old) | set(parts) if old.get(k) != parts.get(k))
            changed = "changed: " + ", ".join(names)
        aside = folder.with_name(f"{folder.name}.stale-{time.strftime('%Y%m%d-%H%M%S')}")
        n = 1
        while aside.exists():
            n += 1
            aside = aside.with_name(f"{folder.name}.stale-{time.strftime('%Y%m%d-%H%M%S')}-{n}")
        aside.mkdir()
        for entry in entries:
            entry.rename(aside / entry.name)
        if job.exists():
            job.rename(aside / JOB_FILE)
        log(f"{what} {str(folder)!r} belongs to another job ({changed}); its state was moved to "
            f"{str(aside)!r} and this run starts fresh (delete that folder when you no longer need it)")
    atomic_write(job, lambda tmp: Path(tmp).write_text(text))
    return False
