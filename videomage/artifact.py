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

FORMAT_VERSION = "1"
_ADAPTER = "adapter."
_TOKEN = "token."

__all__ = ["FORMAT_VERSION", "Artifact", "atomic_write"]


def atomic_write(path: str | Path, write: Any) -> None:
    """Call ``write(tmp_path)`` then move the file into place, so a crash never leaves half a file.

    A full disk or a missing folder raises :class:`ArtifactError` naming the path; the previous
    file at ``path``, if any, is kept intact.
    """
    path = Path(path)
    if not path.parent.exists():
        raise ArtifactError(f"cannot write {str(path)!r}: folder {str(path.parent)!r} does not exist; create it first")
    # The temporary name keeps the suffix: writers such as ffmpeg choose the format by it.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        hint = "free some disk space" if exc.errno == errno.ENOSPC else "check the path and its permissions"
        raise ArtifactError(f"could not write {str(path)!r}: {exc.strerror or exc}; {hint} and retry") from exc
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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
        meta = {"videomage.format": FORMAT_VERSION, "videomage.metadata": json.dumps(self.metadata(), sort_keys=True)}
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
        return Path(path)

    # -- reading -----------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> Artifact:
        """Read an artifact; refuse files that are not videomage artifacts of this format."""
        path = Path(path)
        if not path.is_file():
            raise ArtifactError(f"artifact {str(path)!r} does not exist; pass the .safetensors file a stage wrote")
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
