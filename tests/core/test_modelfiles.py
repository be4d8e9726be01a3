"""Reading a model's files without downloading: configs, the declared video size, request checks."""

from __future__ import annotations

import json

import pytest
import torch

from videomage.components import VideoSpec
from videomage.errors import ConfigError
from videomage.modelfiles import SPEC_FILE, check_model_request, read_config, read_video_spec, write_video_spec


def test_video_spec_round_trip_and_absence(tmp_path):
    assert read_video_spec(str(tmp_path)) is None
    spec = VideoSpec(height=64, width=96, frames=8, fps=12)
    write_video_spec(tmp_path, spec)
    assert read_video_spec(str(tmp_path)) == spec


def test_malformed_video_spec_names_the_file_and_the_format(tmp_path):
    (tmp_path / SPEC_FILE).write_text(json.dumps({"video_spec": {"height": 64}}))
    with pytest.raises(ConfigError, match=r"videomage\.json.*is malformed.*\"frames\": F"):
        read_video_spec(str(tmp_path))


def test_read_config_from_a_folder_never_raises(tmp_path):
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text(json.dumps({"_class_name": "UNet3DConditionModel"}))
    assert read_config(str(tmp_path), "unet/config.json") == {"_class_name": "UNet3DConditionModel"}
    (tmp_path / "bad.json").write_text("{not json")
    assert read_config(str(tmp_path), "bad.json") is None
    assert read_config(str(tmp_path), "missing.json") is None
    assert read_config("not a repo id!", "model_index.json") is None


def test_model_request_checks(tmp_path):
    checked = []
    assert check_model_request(str(tmp_path), "bfloat16", checked.append) is torch.bfloat16
    assert checked == [tmp_path]
    assert check_model_request("org/model", "float32", checked.append) is torch.float32 and len(checked) == 1
    with pytest.raises(ConfigError, match="dtype 'float8' is not supported"):
        check_model_request("org/model", "float8", checked.append)
    with pytest.raises(ConfigError, match="is not a folder"):
        check_model_request(str(tmp_path / "typo"), "float32", checked.append)


def test_config_fingerprint_reads_public_keys_and_extras_only():
    from videomage.modelfiles import config_fingerprint

    base = config_fingerprint({"layers": 2, "_diffusers_version": "0.42"}, text_width=16)
    assert base == config_fingerprint({"layers": 2, "_diffusers_version": "0.1"}, text_width=16)  # private keys ignored
    assert base != config_fingerprint({"layers": 3, "_diffusers_version": "0.42"}, text_width=16)
    assert base != config_fingerprint({"layers": 2}, text_width=32)
    assert len(base) == 16
