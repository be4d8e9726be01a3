"""Exported artifacts load in the other libraries themselves and give videomage's output."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from videomage.cli import main
from videomage.plugins import get_registry
from videomage_interop.export import export

from interop_helpers import diffusers_warnings, inputs, lora_layer_count, random_artifact, videomage_output

TOL = 1e-6


def backbone_class(name):
    return get_registry().get("backbone", name)


@pytest.fixture(scope="module")
def wan_artifact(wan_dir, tmp_path_factory):
    art = random_artifact(wan_dir, ["spatial", "temporal"])
    path = tmp_path_factory.mktemp("wan-art") / "toy.safetensors"
    art.save(path)
    return path, art


def wan_transformer_output(pipe, x, t, text):
    with torch.no_grad():
        return pipe.transformer(hidden_states=x, timestep=t, encoder_hidden_states=text, return_dict=False)[0]


def test_raw_wan_artifact_does_not_load_in_diffusers(wan_dir, wan_artifact):
    """What users met before `export`: diffusers refuses the artifact (its token tensors)."""
    from diffusers import WanPipeline

    pipe = WanPipeline.from_pretrained(str(wan_dir))
    with pytest.raises(ValueError, match="Invalid LoRA checkpoint"):
        pipe.load_lora_weights(str(wan_artifact[0]))


def test_wan_diffusers_export_loads_in_wanpipeline_without_warnings_and_matches(wan_dir, wan_artifact, tmp_path):
    from diffusers import WanPipeline

    path, art = wan_artifact
    assert main(["export", str(path), "--format", "diffusers", "--out", str(tmp_path / "toy-d.safetensors")]) == 0
    keys = sorted(load_file(tmp_path / "toy-d.safetensors"))
    assert all(k.startswith("transformer.blocks.") and k.endswith((".lora_A.weight", ".lora_B.weight")) for k in keys)
    assert len(keys) == len(art.adapter_tensors)

    pipe = WanPipeline.from_pretrained(str(wan_dir))
    with diffusers_warnings() as warned:
        pipe.load_lora_weights(str(tmp_path / "toy-d.safetensors"), adapter_name="toy")
    assert not warned, [r.getMessage() for r in warned]  # no missing, unexpected or ignored keys
    assert lora_layer_count(pipe.transformer) == len(keys) // 2
    x, t, text = inputs(__import__("videomage.loading", fromlist=["load_backbone"]).load_backbone(str(wan_dir)))
    ours = videomage_output(wan_dir, art, x, t, text)
    theirs = wan_transformer_output(pipe, x, t, text)
    with torch.no_grad():
        pipe.disable_lora()
        base = wan_transformer_output(pipe, x, t, text)
    assert (ours - base).abs().max() > 1e-3  # the adapter does something
    assert (ours - theirs).abs().max() <= TOL


def test_wan_comfyui_export_uses_wan_names_and_reads_back_through_diffusers_converter(wan_dir, wan_artifact, tmp_path):
    from diffusers import WanPipeline

    path, art = wan_artifact
    out = tmp_path / "toy-c.safetensors"
    assert main(["export", str(path), "--format", "comfyui", "--out", str(out)]) == 0
    keys = set(load_file(out))
    assert "diffusion_model.blocks.0.self_attn.q.lora_down.weight" in keys
    assert "diffusion_model.blocks.1.cross_attn.k.lora_up.weight" in keys
    assert "diffusion_model.blocks.0.ffn.0.alpha" in keys
    assert all(k.startswith("diffusion_model.blocks.") for k in keys)

    converted = WanPipeline.lora_state_dict(str(out))  # diffusers' _convert_non_diffusers_wan_lora_to_diffusers
    assert len(converted) == len(art.adapter_tensors)
    pipe = WanPipeline.from_pretrained(str(wan_dir))
    with diffusers_warnings() as warned:
        pipe.load_lora_weights(converted, adapter_name="toy")
    assert not warned, [r.getMessage() for r in warned]
    from videomage.loading import load_backbone

    x, t, text = inputs(load_backbone(str(wan_dir)))
    assert (videomage_output(wan_dir, art, x, t, text) - wan_transformer_output(pipe, x, t, text)).abs().max() <= TOL


def test_wan_token_file_holds_the_learned_vector_and_metadata_travels(wan_artifact, tmp_path):
    path, art = wan_artifact
    done = export(art, backbone_class("wan"), "diffusers", tmp_path / "toy.safetensors")
    assert [p.name for p in done.token_files] == ["toy.token1.safetensors"]
    assert torch.equal(load_file(done.token_files[0])["<toy>"], art.embeddings["<toy>"].float())
    with safe_open(str(done.path), framework="pt") as fh:
        meta = fh.metadata()
    config = json.loads(meta["lora_adapter_metadata"])
    assert (config["transformer.r"], config["transformer.lora_alpha"]) == (4, 8.0)  # the scale travels as alpha
    provenance = json.loads(meta["videomage.export"])
    assert provenance["kind"] == "subject" and provenance["tokens"] == {"<toy>": "toy"} and provenance["backbone"] == "wan"


@pytest.fixture(scope="module")
def zs_artifact(zs_dir, tmp_path_factory):
    art = random_artifact(zs_dir, ["spatial", "temporal"], token="<dog>")
    path = tmp_path_factory.mktemp("zs-art") / "dog.safetensors"
    art.save(path)
    return path, art


def test_raw_zeroscope_artifact_through_peft_loads_nothing(zs_dir, zs_artifact):
    """Before `export`: peft reports every key of the artifact unexpected, and the adapter has no effect."""
    from diffusers import UNet3DConditionModel
    from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict

    _, art = zs_artifact
    unet = UNet3DConditionModel.from_pretrained(str(zs_dir), subfolder="unet")
    names = sorted({k.rsplit(".lora_", 1)[0] for k in art.adapter_tensors})
    inject_adapter_in_model(LoraConfig(r=4, lora_alpha=8, target_modules=names), unet)
    result = set_peft_model_state_dict(unet, load_file(zs_artifact[0]))
    assert len(result.unexpected_keys) == len(art.adapter_tensors) + 1  # + the token


def test_zeroscope_diffusers_export_through_peft_on_a_plain_unet_matches(zs_dir, zs_artifact, tmp_path):
    from diffusers import UNet3DConditionModel
    from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict

    path, art = zs_artifact
    out = tmp_path / "dog-d.safetensors"
    assert main(["export", str(path), "--format", "diffusers", "--out", str(out)]) == 0
    with safe_open(str(out), framework="pt") as fh:
        config = {k.removeprefix("unet."): v for k, v in json.loads(fh.metadata()["lora_adapter_metadata"]).items()}
        state = {k.removeprefix("unet."): fh.get_tensor(k) for k in fh.keys()}
    unet = UNet3DConditionModel.from_pretrained(str(zs_dir), subfolder="unet")
    inject_adapter_in_model(LoraConfig(**config), unet)
    result = set_peft_model_state_dict(unet, state)
    assert not result.unexpected_keys
    assert lora_layer_count(unet) == len(state) // 2 == len(art.adapter_tensors) // 2

    from videomage.loading import load_backbone

    x, t, text = inputs(load_backbone(str(zs_dir)))
    with torch.no_grad():
        theirs = unet(x, t.expand(1), encoder_hidden_states=text).sample
    assert (videomage_output(zs_dir, art, x, t, text) - theirs).abs().max() <= TOL


def test_zeroscope_pipeline_takes_the_lora_through_peft_and_the_token_through_load_textual_inversion(zs_dir, zs_artifact, tmp_path):
    from diffusers import TextToVideoSDPipeline
    from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict

    from videomage.loading import load_backbone, make_adapter

    path, art = zs_artifact
    done = export(art, backbone_class("zeroscope"), "diffusers", tmp_path / "dog.safetensors")
    pipe = TextToVideoSDPipeline.from_pretrained(str(zs_dir))
    # diffusers' pipeline LoRA loader needs the denoiser's load_lora_adapter, which UNet3DConditionModel
    # lacks: the docs say to use peft on pipe.unet, and this keeps that statement checked.
    with pytest.raises(AttributeError, match="load_lora_adapter"):
        pipe.load_lora_weights(str(done.path))
    with safe_open(str(done.path), framework="pt") as fh:
        config = {k.removeprefix("unet."): v for k, v in json.loads(fh.metadata()["lora_adapter_metadata"]).items()}
        state = {k.removeprefix("unet."): fh.get_tensor(k) for k in fh.keys()}
    inject_adapter_in_model(LoraConfig(**config), pipe.unet)
    assert not set_peft_model_state_dict(pipe.unet, state).unexpected_keys
    with diffusers_warnings() as warned:
        pipe.load_textual_inversion(str(done.token_files[0]))
    assert not warned, [r.getMessage() for r in warned]

    backbone, adapter = load_backbone(str(zs_dir)), make_adapter()
    art.install(backbone, adapter, "a")
    prompt = "a photo of <dog> on the beach"
    ids = pipe.tokenizer([prompt], padding="max_length", max_length=pipe.tokenizer.model_max_length,
                         truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        theirs = pipe.text_encoder(ids)[0]
        ours = backbone.encode_prompt([prompt])
    assert ids[0].tolist().count(pipe.tokenizer.convert_tokens_to_ids("<dog>")) == 1
    assert (ours - theirs).abs().max() <= TOL

    x, t, text = inputs(backbone)
    with torch.no_grad():
        unet_out = pipe.unet(x, t.expand(1), encoder_hidden_states=text).sample
    assert (videomage_output(zs_dir, art, x, t, text) - unet_out).abs().max() <= TOL


def test_zeroscope_comfyui_export_is_refused_in_one_line(zs_artifact, tmp_path, capsys):
    path, _ = zs_artifact
    assert main(["export", str(path), "--format", "comfyui", "--out", str(tmp_path / "x.safetensors")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "ComfyUI" in err and "--format diffusers" in err
    assert not (tmp_path / "x.safetensors").exists()


def test_export_refuses_a_non_safetensors_out_path(wan_artifact, tmp_path, capsys):
    assert main(["export", str(wan_artifact[0]), "--format", "diffusers", "--out", str(tmp_path / "x.bin")]) == 1
    assert "must end in .safetensors" in capsys.readouterr().err


def test_a_wan_motion_artifact_exports_to_both_formats_and_matches(wan_dir, tmp_path):
    """A temporal-only LoRA (self-attention only): diffusers' converter must accept the partial blocks."""
    from diffusers import WanPipeline

    from videomage.loading import load_backbone

    art = random_artifact(wan_dir, ["temporal"], token=None, kind="motion", seed=3)
    x, t, text = inputs(load_backbone(str(wan_dir)))
    ours = videomage_output(wan_dir, art, x, t, text)
    for fmt in ("diffusers", "comfyui"):
        done = export(art, backbone_class("wan"), fmt, tmp_path / f"ride-{fmt}.safetensors")
        assert not done.token_files
        pipe = WanPipeline.from_pretrained(str(wan_dir))
        with diffusers_warnings() as warned:
            pipe.load_lora_weights(str(done.path), adapter_name="ride")
        assert not warned, [r.getMessage() for r in warned]
        assert lora_layer_count(pipe.transformer) == done.layers == 8
        assert (ours - wan_transformer_output(pipe, x, t, text)).abs().max() <= TOL
