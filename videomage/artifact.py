"""The artifact format: one ``.safetensors`` file per learned concept.

Tensors:

* ``adapter.<key>``: the adapter's tensors under the adapter plugin's (peft) key names;
* ``token.<token>``: one embedding vector per learned token, e.g. ``token.<toy>``.

Metadata (safetensors' string map): ``videomage.format`` (the format version) and
``videomage.metadata``, a JSON object with the concept kind, backbone name, model reference,
model fingerprint, adapter type and settings, roles, tokens with their class words, the
training config and the versions that produced it. Loading reads tensors and JSON only:
nothing is ever unpickled.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from videomage._version import __version__
from videomage.components import Adapter, Backbone
from videomage.errors import ArtifactError
from videomage.experts import check_experts
from videomage.paths import check_input_file

FORMAT_VERSION = "1"
_ADAPTER = "adapter."
_TOKEN = "token."

__all__ = ["FORMAT_VERSION", "Artifact", "atomic_write", "non_finite"]


def _umask() -> int:
    # Linux reports the umask without changing it; elsewhere set-and-restore (a brief race with
    # other threads creating files, acceptable where /proc is missing).
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _disk_full(exc: BaseException) -> bool:
    # safetensors reports a full disk as SafetensorError("... No space left on device (os error 28)").
    text = str(exc)
    return getattr(exc, "errno", None) == errno.ENOSPC or "os error 28" in text or "No space left" in text


def _nonempty(tmp: str) -> None:
    if os.path.getsize(tmp) == 0:
        raise ArtifactError("the writer produced an empty file")


def atomic_write(path: str | Path, write: Any, *, check: Any = _nonempty) -> None:
    """Call ``write(tmp_path)``, check what it wrote, then move the file into place.

    A crash never leaves half a file, and a writer that fails silently (ffmpeg on a full disk
    writes 0 bytes and reports nothing) never replaces a good file: ``check(tmp_path)`` must
    pass first (by default: the file is not empty). A full disk, a read-only or forbidden
    folder or a failed check raises `ArtifactError` naming the path; the previous file
    at ``path``, if any, is kept intact. The file gets the usual permissions (``0666`` less the
    umask), like any file the user's programs create.
    """
    path = Path(path)
    if not path.parent.exists():
        raise ArtifactError(f"cannot write {str(path)!r}: folder {str(path.parent)!r} does not exist; create it first")
    if path.is_dir():
        raise ArtifactError(f"cannot write {str(path)!r}: it is a folder; choose a file name")
    tmp = None
    try:
        # The temporary name keeps the suffix: writers such as ffmpeg choose the format by it.
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
        os.close(fd)
        write(tmp)
        if not os.path.exists(tmp):
            raise ArtifactError("the writer produced no file")
        check(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except ArtifactError as exc:
        _discard(tmp)
        full = _disk_full(exc) or shutil.disk_usage(path.parent).free < (1 << 20)
        hint = "the disk looks full; free some disk space and retry" if full else "nothing was replaced; check the disk and retry"
        raise ArtifactError(f"could not write {str(path)!r}: {exc}; {hint}") from None
    except (OSError, SafetensorError) as exc:
        _discard(tmp)
        if _disk_full(exc):
            hint = "the disk is full; free some disk space and retry"
        elif isinstance(exc, PermissionError) or getattr(exc, "errno", None) in (errno.EACCES, errno.EPERM, errno.EROFS):
            hint = "the folder is read-only or not yours; choose another place or fix its permissions"
        else:
            hint = "check the path and its permissions and retry"
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ArtifactError(f"could not write {str(path)!r}: {reason}; {hint}") from None
    except BaseException:
        _discard(tmp)
        raise


def _discard(tmp: str | None) -> None:
    if tmp is not None and os.path.exists(tmp):
        try:
            os.unlink(tmp)
        except OSError:
            pass


def non_finite(tensors: Mapping[str, torch.Tensor]) -> str | None:
    """The name of the first floating-point tensor holding NaN or inf, or None."""
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return name
    return None


def _readable(tmp: str, count: int) -> None:
    # Read the header back: a short write on a full disk leaves a file safetensors cannot parse.
    try:
        with safe_open(tmp, framework="pt") as fh:
            found = len(list(fh.keys()))
    except (SafetensorError, OSError) as exc:
        raise ArtifactError(f"the file written is unreadable ({exc})") from None
    if found != count:
        raise ArtifactError(f"the file written holds {found} tensors instead of {count}")


@attrs.frozen(kw_only=True)
class Artifact:
    """A learned concept: adapter tensors, token embeddings and where they came from."""

    kind: str  # "subject", "motion", "fused" or a plugin's own kind
    backbone: str
    fingerprint: str
    adapter: str
    adapter_config: Mapping[str, Any]
    roles: tuple[str, ...] = attrs.field(converter=tuple)
    tokens: Mapping[str, str] = attrs.field(factory=dict)  # token -> class word
    adapter_tensors: Mapping[str, torch.Tensor] = attrs.field(factory=dict, repr=False)
    embeddings: Mapping[str, torch.Tensor] = attrs.field(factory=dict, repr=False)
    info: Mapping[str, Any] = attrs.field(factory=dict)  # model, training config, anything else

    # -- writing -----------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "backbone": self.backbone,
            "fingerprint": self.fingerprint,
            "adapter": self.adapter,
            "adapter_config": dict(self.adapter_config),
            "roles": list(self.roles),
            "tokens": dict(self.tokens),
            "info": dict(self.info),
            "versions": {"videomage": __version__, "torch": torch.__version__},
        }

    def save(self, path: str | Path) -> Path:
        """Write the artifact atomically; returns the path."""
        missing = sorted(set(self.tokens) - set(self.embeddings))
        if missing:
            raise ArtifactError(f"artifact lists token {missing[0]!r} but carries no embedding for it")
        tensors = {_ADAPTER + k: v.detach().to("cpu").contiguous() for k, v in self.adapter_tensors.items()}
        tensors.update({_TOKEN + k: v.detach().to("cpu").contiguous() for k, v in self.embeddings.items()})
        bad = non_finite(tensors)
        if bad:
            raise ArtifactError(f"refusing to write {str(path)!r}: tensor {bad!r} holds NaN or infinite values "
                                f"(the training diverged); lower the learning rate and re-run the stage")
        meta = {"videomage.format": FORMAT_VERSION, "videomage.metadata": json.dumps(self.metadata(), sort_keys=True)}
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta), check=lambda tmp: _readable(tmp, len(tensors)))
        return Path(path)

    # -- reading -----------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> Artifact:
        """Read an artifact; refuse files that are not videomage artifacts of this format."""
        path = Path(path)
        if not path.exists() and not path.is_symlink():
            raise ArtifactError(f"artifact {str(path)!r} does not exist; pass the .safetensors file a stage wrote")
        check_input_file(path, "artifact", error=ArtifactError)
        try:
            with safe_open(str(path), framework="pt") as fh:
                meta = fh.metadata() or {}
                tensors = {k: fh.get_tensor(k) for k in fh.keys()}
        except (SafetensorError, OSError, ValueError) as exc:
            raise ArtifactError(f"artifact {str(path)!r} is not a readable .safetensors file: {exc}") from None
        version = meta.get("videomage.format")
        if version is None:
            raise ArtifactError(f"{str(path)!r} is a safetensors file but not a videomage artifact (no videomage metadata)")
        if version != FORMAT_VERSION:
            raise ArtifactError(
                f"artifact {str(path)!r} has format version {version}, this videomage reads version "
                f"{FORMAT_VERSION}; use the videomage version that wrote it, or re-run the stage"
            )
        try:
            data = json.loads(meta["videomage.metadata"])
        except (KeyError, json.JSONDecodeError) as exc:
            raise ArtifactError(f"artifact {str(path)!r} has corrupt metadata: {exc}") from None
        bad = non_finite(tensors)
        if bad:
            raise ArtifactError(f"artifact {str(path)!r}: tensor {bad!r} holds NaN or infinite values, so every video "
                                f"made with it would be blank; re-run the stage that wrote it with a lower learning rate")
        return cls(
            kind=data["kind"],
            backbone=data["backbone"],
            fingerprint=data["fingerprint"],
            adapter=data["adapter"],
            adapter_config=data["adapter_config"],
            roles=data["roles"],
            tokens=data["tokens"],
            info=data.get("info", {}),
            adapter_tensors={k[len(_ADAPTER) :]: v for k, v in tensors.items() if k.startswith(_ADAPTER)},
            embeddings={k[len(_TOKEN) :]: v for k, v in tensors.items() if k.startswith(_TOKEN)},
        )

    def check_compatible(self, backbone: Backbone, *, source: str = "artifact") -> None:
        """Refuse an artifact made for another backbone family or another model config."""
        if self.backbone != backbone.name:
            raise ArtifactError(
                f"{source} was made for backbone {self.backbone!r} but the loaded backbone is "
                f"{backbone.name!r}; load the model it was trained on, or retrain it for this one"
            )
        if self.fingerprint != backbone.fingerprint():
            model = self.info.get("model", "?")
            raise ArtifactError(
                f"{source} was made for another {self.backbone} model config (fingerprint "
                f"{self.fingerprint}, model {model!r}) than the loaded one ({backbone.fingerprint()}, "
                f"{backbone.model_ref!r}); load that model, or retrain the concept on this one"
            )

    def install(self, backbone: Backbone, adapter: Adapter, adapter_name: str, *, source: str = "artifact",
                experts: Sequence[str] | None = None) -> None:
        """Add the tokens to ``backbone`` and attach this artifact's adapter as ``adapter_name``.

        ``experts``, when given, are the experts the caller expects the adapter in; others are refused."""
        self.check_compatible(backbone, source=source)
        check_experts(backbone, self.roles, source=source, requested=experts)
        if self.adapter != adapter.name:
            raise ArtifactError(f"{source} holds a {self.adapter!r} adapter, not {adapter.name!r}")
        if self.embeddings:
            backbone.set_token_embeddings(self.embeddings)
        if self.adapter_tensors:
            cfg = dict(self.adapter_config)
            adapter.attach(
                backbone,
                adapter_name,
                roles=self.roles,
                rank=int(cfg.get("rank", 4)),
                alpha=cfg.get("alpha"),
                dropout=float(cfg.get("dropout", 0.0)),
                targets=cfg.get("targets"),
            )
            adapter.load_state_dict(backbone, adapter_name, self.adapter_tensors)
