"""The artifact format: round trips, atomic writes and refusals."""

from __future__ import annotations

import errno
import json

import pytest
import torch
from safetensors.torch import save_file

from videomage import artifact as artifact_mod
from videomage.artifact import Artifact
from videomage.errors import ArtifactError


class FakeBackbone:
    name = "fake"
    model_ref = "fake/model"

    def __init__(self, fp="abc123"):
        self._fp = fp

    def fingerprint(self):
        return self._fp


def make(**over):
    fields = dict(
        kind="subject",
        backbone="fake",
        fingerprint="abc123",
        adapter="lora",
        adapter_config={"rank": 4, "alpha": 4.0},
        roles=["spatial"],
        tokens={"<toy>": "toy"},
        adapter_tensors={"down.lora_A.weight": torch.randn(4, 8), "down.lora_B.weight": torch.randn(8, 4)},
        embeddings={"<toy>": torch.randn(16)},
        info={"model": "fake/model", "steps": 3},
    )
    fields.update(over)
    return Artifact(**fields)


def test_round_trip_is_bit_exact(tmp_path):
    original = make()
    path = original.save(tmp_path / "toy.safetensors")
    loaded = Artifact.load(path)
    assert loaded.kind == "subject" and loaded.tokens == {"<toy>": "toy"} and loaded.roles == ("spatial",)
    assert loaded.info["steps"] == 3 and loaded.adapter_config["rank"] == 4
    for k, v in original.adapter_tensors.items():
        assert torch.equal(loaded.adapter_tensors[k], v)
    assert torch.equal(loaded.embeddings["<toy>"], original.embeddings["<toy>"])


def test_metadata_records_versions(tmp_path):
    from safetensors import safe_open

    path = make().save(tmp_path / "a.safetensors")
    with safe_open(str(path), framework="pt") as fh:
        meta = json.loads(fh.metadata()["videomage.metadata"])
    assert meta["versions"]["videomage"] and meta["versions"]["torch"] == torch.__version__


def test_other_backbone_is_refused():
    art = make()
    other = FakeBackbone()
    other.name = "wan"
    with pytest.raises(ArtifactError, match="made for backbone 'fake'.*'wan'"):
        art.check_compatible(other)


def test_other_model_config_is_refused():
    with pytest.raises(ArtifactError, match="another fake model config"):
        make().check_compatible(FakeBackbone(fp="zzz"))
    make().check_compatible(FakeBackbone())  # same fingerprint: accepted


def test_other_format_version_is_refused(tmp_path):
    path = tmp_path / "future.safetensors"
    save_file({"x": torch.zeros(1)}, str(path), metadata={"videomage.format": "99", "videomage.metadata": "{}"})
    with pytest.raises(ArtifactError, match="format version 99"):
        Artifact.load(path)


def test_plain_safetensors_and_garbage_are_refused(tmp_path):
    plain = tmp_path / "plain.safetensors"
    save_file({"x": torch.zeros(1)}, str(plain))
    with pytest.raises(ArtifactError, match="not a videomage artifact"):
        Artifact.load(plain)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x80\x04not safetensors at all")
    with pytest.raises(ArtifactError, match="not a readable"):
        Artifact.load(garbage)
    with pytest.raises(ArtifactError, match="does not exist"):
        Artifact.load(tmp_path / "missing.safetensors")


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = make(info={"v": 1}).save(tmp_path / "a.safetensors")

    def full_disk(tensors, filename, metadata=None):
        with open(filename, "wb") as fh:
            fh.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(artifact_mod, "save_file", full_disk)
    with pytest.raises(ArtifactError, match="free some disk space"):
        make(info={"v": 2}).save(path)
    assert Artifact.load(path).info == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.safetensors"]  # no temp file left behind


def test_token_without_embedding_is_refused(tmp_path):
    with pytest.raises(ArtifactError, match="no embedding"):
        make(embeddings={}).save(tmp_path / "x.safetensors")
