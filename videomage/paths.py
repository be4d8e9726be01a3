"""Checks on the paths a job reads and writes, made before any model loads.

An input must be a readable regular file (or folder); each way it can fail gets its own
message, because "does not exist" is wrong advice for a symlink loop, a folder, a FIFO or a file
without read permission. An output must not be a folder, must land in a folder that can be
written, and must never be one of the job's inputs: a stage that wrote its artifact over the
photos it learned from would destroy what it was given.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from videomage.errors import ConfigError, InputError

__all__ = ["check_input_file", "check_input_folder", "check_output_file", "refuse_overwriting_inputs"]


def _stat(path: Path, what: str, error: type[Exception]) -> os.stat_result:
    try:
        return path.stat()
    except FileNotFoundError:
        hint = " (it is a broken symbolic link)" if path.is_symlink() else ""
        raise error(f"{what} {str(path)!r} does not exist{hint}; check the path") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise error(f"{what} {str(path)!r} is a symbolic link loop; point it at a real file") from None
        if exc.errno == errno.EACCES:
            raise error(f"{what} {str(path)!r} cannot be reached: permission denied on a folder above it; "
                        f"check the folders' permissions") from None
        raise error(f"{what} {str(path)!r} cannot be read: {exc.strerror or exc}") from None


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def check_input_file(path: str | Path, what: str, *, error: type[Exception] = InputError) -> Path:
    """``path`` as a readable regular file, or ``error`` saying exactly what it is instead."""
    path = Path(path)
    st = _stat(path, what, error)
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{what} {str(path)!r} is {_kind(st.st_mode)}, expected a file; pass the file itself")
    try:
        with open(path, "rb"):
            pass
    except PermissionError:
        raise error(f"{what} {str(path)!r} cannot be read: permission denied; check its permissions "
                    f"(e.g. chmod u+r {str(path)!r})") from None
    except OSError as exc:
        raise error(f"{what} {str(path)!r} cannot be read: {exc.strerror or exc}") from None
    return path


def check_input_folder(path: str | Path, what: str, *, error: type[Exception] = InputError) -> Path:
    """``path`` as a folder whose entries can be listed."""
    path = Path(path)
    st = _stat(path, what, error)
    if not stat.S_ISDIR(st.st_mode):
        raise error(f"{what} {str(path)!r} is {'a file' if stat.S_ISREG(st.st_mode) else _kind(st.st_mode)}, "
                    f"expected a folder")
    if not os.access(path, os.R_OK | os.X_OK):
        raise error(f"{what} {str(path)!r} cannot be listed: permission denied; check its permissions")
    return path


def check_output_file(path: str | Path, what: str = "--out", *, suffixes: Iterable[str] = ()) -> Path:
    """Refuse an output path that is a folder, has the wrong suffix or lands where nothing can be written."""
    path = Path(path)
    suffixes = tuple(suffixes)
    if path.is_dir():
        raise ConfigError(f"{what} {str(path)!r} is a folder; name the file to write, e.g. "
                          f"{str(path / ('result' + (suffixes[0] if suffixes else '')))!r}")
    if suffixes and path.suffix.lower() not in suffixes:
        raise ConfigError(f"{what} must end with {' or '.join(suffixes)}, got {str(path)!r}")
    check_writable_folder(path.parent, f"the folder of {what}")
    return path


def check_writable_folder(folder: str | Path, what: str) -> Path:
    """Refuse a folder (or, if missing, its nearest existing ancestor) that cannot hold new files."""
    folder = Path(folder)
    probe = folder
    while not probe.exists() and not probe.is_symlink() and probe != probe.parent:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ConfigError(f"{what} {str(folder)!r} cannot be created: {str(probe)!r} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {str(folder)!r} is not writable ({str(probe)!r}: permission denied or a "
                          f"read-only file system); choose another place or fix its permissions")
    return folder


def _identity(path: Path) -> tuple:
    try:
        st = path.stat()
        return ("inode", st.st_dev, st.st_ino)
    except OSError:
        return ("path", str(path.resolve()))


def refuse_overwriting_inputs(outputs: Iterable[str | Path], inputs: Iterable[str | Path]) -> None:
    """Refuse when an output would replace one of the inputs (same file, by path or hard link).

    A folder among ``inputs`` stands for every file in it.
    """
    files: list[Path] = []
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            try:
                files.extend(p for p in item.iterdir() if p.is_file())
            except OSError:
                continue
        else:
            files.append(item)
    taken = {_identity(p): p for p in files}
    for out in outputs:
        out = Path(out)
        hit = taken.get(_identity(out))
        if hit is not None:
            raise ConfigError(f"output {str(out)!r} is the input {str(hit)!r}: writing it would destroy that input; "
                              f"choose another output path")
