"""Model folders with ``.bin`` weights: read through the restricted unpickler, converted once, and
a pickle that would run code refused before anything runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from videomage.cli import main
from videomage.errors import ConfigError
from videomage.loading import load_backbone, make_adapter
from videomage.weightfiles import convert_folder, load_restricted

from interop_helpers import CLASSES, RunsCode, as_bin


@pytest.fixture(scope="module")
def bin_model(tiny_model_dir, tmp_path_factory) -> Path:
    return as_bin(tiny_model_dir, tmp_path_factory.mktemp("bin") / "model")


def test_a_bin_model_loads_with_one_notice_and_trains(bin_model, tiny_model_dir, capfd):
    import imageio.v3 as iio
    import numpy as np

    import videomage.weightfiles as wf
    from videomage.config import SubjectConfig
    from videomage.stages.common import StageOptions
    from videomage.stages.subject import learn_subject

    wf._NOTICED.clear()
    backbone = load_backbone(str(bin_model))
    notices = [line for line in capfd.readouterr().err.splitlines() if line.startswith("videomage:")]
    assert len(notices) == 1 and "weights_only=True" in notices[0]
    assert "only in text_encoder, unet, vae;" in notices[0] and "videomage convert-model" in notices[0]
    reference = load_backbone(str(tiny_model_dir))
    for (k, a), (_, b) in zip(backbone.denoiser.state_dict().items(), reference.denoiser.state_dict().items()):
        assert torch.equal(a, b), k

    images = bin_model.parent / "images"
    images.mkdir(exist_ok=True)
    for i in range(2):
        iio.imwrite(images / f"{i}.png", (np.random.default_rng(i).random((32, 32, 3)) * 255).astype(np.uint8))
    config = SubjectConfig(token="<toy>", class_word="toy", images=images, steps=2, lr=1e-2, text_lr=1e-2)
    art = learn_subject(backbone, make_adapter(), config, StageOptions(progress=False, prior_count=1, prior_steps=2, frames=2,
                                                                       work_dir=bin_model.parent / "work"))
    assert any(k.endswith("lora_B.weight") and v.abs().sum() > 0 for k, v in art.adapter_tensors.items())


def test_convert_model_rewrites_the_folder_once_and_keeps_the_weights(bin_model, tmp_path, capsys):
    folder = shutil.copytree(bin_model, tmp_path / "model")
    before = load_backbone(str(folder)).denoiser.state_dict()
    assert main(["convert-model", str(folder)]) == 0
    assert "wrote" in capsys.readouterr().out
    for name in CLASSES:
        assert list((folder / name).glob("*.safetensors")) and not list((folder / name).glob("*.bin"))
    assert sorted(p.name for p in (folder / "text_encoder").glob("*.safetensors")) == ["model.safetensors"]
    after = load_backbone(str(folder)).denoiser.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert main(["convert-model", str(folder)]) == 0
    assert "nothing to convert" in capsys.readouterr().out


@pytest.fixture
def hostile_model(tiny_model_dir, tmp_path):
    marker = tmp_path / "code-ran"
    folder = shutil.copytree(tiny_model_dir, tmp_path / "model")
    for path in (folder / "unet").glob("*.safetensors"):
        path.unlink()
    torch.save({"conv_in.weight": RunsCode(marker)}, folder / "unet" / "diffusion_pytorch_model.bin")
    return folder, marker


def test_a_bin_crafted_to_run_code_is_refused_and_nothing_runs(hostile_model, tmp_path, capfd):
    folder, marker = hostile_model
    images = tmp_path / "images"
    images.mkdir()
    from PIL import Image

    Image.new("L", (8, 8), 128).save(images / "0.png")  # valid inputs, so that the run gets as far as the model
    code = main(["learn-subject", "--model", str(folder), "--images", str(images), "--token", "<t>", "--class-word", "toy",
                 "--out", str(tmp_path / "t.safetensors"), "--no-progress"])
    err = capfd.readouterr().err
    assert code == 1 and not marker.exists()
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("videomage: error: refused") and "diffusion_pytorch_model.bin" in errors[0]
    assert main(["convert-model", str(folder)]) == 1 and not marker.exists()
    assert (folder / "unet" / "diffusion_pytorch_model.bin").exists()


def test_the_restricted_reader_refuses_what_is_not_a_state_dict(tmp_path):
    torch.save([torch.zeros(2)], tmp_path / "list.bin")
    with pytest.raises(ConfigError, match="expected a state dict of named tensors"):
        load_restricted(tmp_path / "list.bin")
    (tmp_path / "junk.bin").write_bytes(b"\x00garbage")
    with pytest.raises(ConfigError, match="refused"):
        load_restricted(tmp_path / "junk.bin")
    with pytest.raises(ConfigError, match="does not exist"):
        convert_folder(tmp_path / "nope")


def test_a_cached_hub_snapshot_with_bin_weights_is_found_and_checked(bin_model, tmp_path, monkeypatch, capfd):
    """The real case: cerspense/zeroscope_v2_576w in the Hugging Face cache, .bin UNet and VAE."""
    import huggingface_hub.constants

    import videomage.weightfiles as wf

    snapshot = tmp_path / "hub" / "models--cerspense--zeroscope_v2_576w" / "snapshots" / "abc123"
    shutil.copytree(bin_model, snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    wf._NOTICED.clear()
    assert wf.use_safetensors("cerspense/zeroscope_v2_576w", "unet") is False
    assert "convert-model" in capfd.readouterr().err
    assert wf.use_safetensors("someone/not-downloaded", "unet") is None  # the library picks, both read safely
