"""LoRAs saved by diffusers, ComfyUI, DiffSynth, kohya and musubi-tuner import and give the source's output."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from videomage.artifact import Artifact
from videomage.cli import main
from videomage.loading import load_backbone
from videomage_wan.names import original_name

from interop_helpers import inputs, videomage_output

TOL = 1e-6
WAN_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj", "ffn.net.2"]


def peft_lora(model: torch.nn.Module, targets, *, seed=0, rank=4, alpha=8):
    """A random LoRA made by peft itself on a plain diffusers model; returns (config, layer -> (A, B))."""
    from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model

    torch.manual_seed(seed)
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets, init_lora_weights=False)
    inject_adapter_in_model(config, model)
    state = get_peft_model_state_dict(model)
    layers = {k.removesuffix(".lora_A.weight"): (state[k], state[k.replace("lora_A", "lora_B")])
              for k in state if k.endswith("lora_A.weight")}
    return config, layers


@pytest.fixture(scope="module")
def wan_source(wan_dir, tmp_path_factory):
    """A random Wan LoRA made by peft on diffusers' WanTransformer3DModel, its output, and the same
    LoRA written by each tool's conventions."""
    from diffusers import WanPipeline

    folder = tmp_path_factory.mktemp("wan-loras")
    pipe = WanPipeline.from_pretrained(str(wan_dir))
    config, layers = peft_lora(pipe.transformer, WAN_TARGETS)
    x, t, text = inputs(load_backbone(str(wan_dir)))
    with torch.no_grad():
        reference = pipe.transformer(hidden_states=x, timestep=t, encoder_hidden_states=text, return_dict=False)[0]
    scale = config.lora_alpha / config.r
    files = {}
    WanPipeline.save_lora_weights(folder / "diffusers", transformer_lora_layers={
        f"{n}.lora_{p}.weight": m for n, (a, b) in layers.items() for p, m in (("A", a), ("B", b))},
        transformer_lora_adapter_metadata=config.to_dict())
    files["diffusers"] = folder / "diffusers" / "pytorch_lora_weights.safetensors"
    alpha = torch.tensor(float(config.lora_alpha))
    formats = {
        # ComfyUI / Wan's own names, lora_down/lora_up with alpha
        "comfyui": {f"diffusion_model.{original_name(n)}.{p}": m for n, (a, b) in layers.items()
                    for p, m in (("lora_down.weight", a), ("lora_up.weight", b), ("alpha", alpha))},
        # ComfyUI with lora_A/lora_B and no alpha (scale one: B carries it)
        "comfyui_ab": {f"diffusion_model.{original_name(n)}.lora_{p}.weight": m for n, (a, b) in layers.items()
                       for p, m in (("A", a), ("B", b * scale))},
        # DiffSynth-Studio: peft keys with the adapter name, Wan's names, no prefix, applied at strength one
        "diffsynth": {f"{original_name(n)}.lora_{p}.default.weight": m for n, (a, b) in layers.items()
                      for p, m in (("A", a), ("B", b * scale))},
        # musubi-tuner: lora_unet_ + Wan's names with underscores, lora_down/lora_up, alpha
        "musubi": {f"lora_unet_{original_name(n).replace('.', '_')}.{p}": m for n, (a, b) in layers.items()
                   for p, m in (("lora_down.weight", a), ("lora_up.weight", b), ("alpha", alpha))},
    }
    for name, tensors in formats.items():
        files[name] = folder / f"{name}.safetensors"
        save_file({k: v.clone().contiguous() for k, v in tensors.items()}, files[name])
    return files, reference, (x, t, text), layers, scale


@pytest.mark.parametrize("fmt", ["comfyui", "musubi"])
def test_the_wan_fixtures_are_what_diffusers_own_converters_read(wan_source, fmt):
    """The hand-written ComfyUI and musubi files convert, in diffusers, to the source LoRA."""
    from diffusers import WanPipeline

    files, _, _, layers, scale = wan_source
    converted = WanPipeline.lora_state_dict(str(files[fmt]))
    for name, (a, b) in layers.items():
        got = converted[f"transformer.{name}.lora_B.weight"] @ converted[f"transformer.{name}.lora_A.weight"]
        assert torch.allclose(got, scale * b @ a, atol=1e-7)


@pytest.mark.parametrize("fmt", ["diffusers", "comfyui", "comfyui_ab", "diffsynth", "musubi"])
def test_each_wan_format_imports_and_gives_the_source_output(wan_dir, wan_source, fmt, tmp_path, capsys):
    files, reference, (x, t, text), layers, _ = wan_source
    out = tmp_path / "imported.safetensors"
    assert main(["import", str(files[fmt]), "--model", str(wan_dir), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"read {len(layers)} LoRA layers of rank 4" in printed and "roles: spatial 12, temporal 8" in printed
    art = Artifact.load(out)
    assert art.roles == ("spatial", "temporal") and art.kind == "subject" and art.adapter_config["targets"] is None
    assert (videomage_output(wan_dir, art, x, t, text) - reference).abs().max() <= TOL


def test_keys_that_match_no_layer_are_listed_and_stop_the_import(wan_dir, wan_source, tmp_path, capsys):
    from safetensors.torch import load_file

    files, reference, (x, t, text), _, _ = wan_source
    tensors = load_file(files["comfyui"])
    tensors["diffusion_model.blocks.0.bogus.lora_down.weight"] = torch.zeros(4, 24)
    tensors["diffusion_model.blocks.0.bogus.lora_up.weight"] = torch.zeros(24, 4)
    tensors["diffusion_model.head.head.lora_down.weight"] = torch.zeros(4, 24)  # a real layer, in no role
    tensors["diffusion_model.head.head.lora_up.weight"] = torch.zeros(16, 4)
    tensors["diffusion_model.blocks.0.norm3.diff_b"] = torch.zeros(24)
    bad = tmp_path / "bad.safetensors"
    save_file(tensors, bad)
    out = tmp_path / "imported.safetensors"
    assert main(["import", str(bad), "--model", str(wan_dir), "--out", str(out)]) == 1
    err = capsys.readouterr().err  # (transformers may draw a progress bar there too)
    assert "Traceback" not in err and len([line for line in err.splitlines() if "videomage: error" in line]) == 1
    for name in ("blocks.0.bogus", "proj_out", "diffusion_model.blocks.0.norm3.diff_b"):
        assert name in err
    assert "--skip-unmatched" in err and not out.exists()

    assert main(["import", str(bad), "--model", str(wan_dir), "--out", str(out), "--skip-unmatched"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("skipped ") == 3
    assert (videomage_output(wan_dir, Artifact.load(out), x, t, text) - reference).abs().max() <= TOL


def test_a_pickled_lora_is_refused_without_reading_it(wan_dir, tmp_path, capsys):
    path = tmp_path / "lora.bin"
    path.write_bytes(b"not read")
    assert main(["import", str(path), "--model", str(wan_dir), "--out", str(tmp_path / "a.safetensors")]) == 1
    assert "only as safetensors" in capsys.readouterr().err


@pytest.fixture(scope="module")
def zs_source(zs_dir, tmp_path_factory):
    """A random ZeroScope LoRA on the spatial layers, made by peft on a plain UNet3DConditionModel."""
    from diffusers import UNet3DConditionModel

    folder = tmp_path_factory.mktemp("zs-loras")
    backbone = load_backbone(str(zs_dir))
    spatial = sorted(backbone.role_modules("spatial"))
    unet = UNet3DConditionModel.from_pretrained(str(zs_dir), subfolder="unet")
    config, layers = peft_lora(unet, spatial, rank=2, alpha=6)
    assert sorted(layers) == spatial
    x, t, text = inputs(backbone)
    with torch.no_grad():
        reference = unet(x, t.expand(1), encoder_hidden_states=text).sample
    import json

    alpha = torch.tensor(6.0)
    files = {"diffusers": folder / "diffusers.safetensors", "kohya": folder / "kohya.safetensors"}
    save_file({f"unet.{n}.lora_{p}.weight": m.contiguous() for n, (a, b) in layers.items() for p, m in (("A", a), ("B", b))},
              files["diffusers"], metadata={"lora_adapter_metadata": json.dumps({"unet.r": 2, "unet.lora_alpha": 6})})
    save_file({f"lora_unet_{n.replace('.', '_')}.{p}": m.contiguous() for n, (a, b) in layers.items()
               for p, m in (("lora_down.weight", a), ("lora_up.weight", b), ("alpha", alpha.clone()))}, files["kohya"])
    return files, reference, (x, t, text), layers


@pytest.mark.parametrize("fmt", ["diffusers", "kohya"])
def test_each_zeroscope_format_imports_as_a_subject_and_gives_the_source_output(zs_dir, zs_source, fmt, tmp_path, capsys):
    files, reference, (x, t, text), layers = zs_source
    out = tmp_path / "imported.safetensors"
    assert main(["import", str(files[fmt]), "--model", str(zs_dir), "--out", str(out)]) == 0
    assert f"roles: spatial {len(layers)}\n" in capsys.readouterr().out
    art = Artifact.load(out)
    assert art.roles == ("spatial",) and art.kind == "subject"
    assert (videomage_output(zs_dir, art, x, t, text) - reference).abs().max() <= TOL


def test_a_lora_on_part_of_a_role_names_its_layers_exactly(zs_dir, zs_source, tmp_path):
    from safetensors.torch import load_file

    files, _, _, layers = zs_source
    some = sorted(layers)[:3]
    tensors = {k: v for k, v in load_file(files["kohya"]).items() if any(k.startswith(f"lora_unet_{n.replace('.', '_')}.") for n in some)}
    save_file(tensors, tmp_path / "part.safetensors")
    assert main(["import", str(tmp_path / "part.safetensors"), "--model", str(zs_dir), "--out", str(tmp_path / "a.safetensors")]) == 0
    art = Artifact.load(tmp_path / "a.safetensors")
    assert len(art.adapter_config["targets"]) == 3
    backbone, adapter = load_backbone(str(zs_dir)), __import__("videomage.loading", fromlist=["x"]).make_adapter()
    art.install(backbone, adapter, "a")
    assert sorted({k.rsplit(".lora_", 1)[0] for k in adapter.state_dict(backbone, "a")}) == some


def test_importing_against_a_bf16_model_keeps_the_lora_precision(wan_dir, wan_source, tmp_path):
    from safetensors.torch import load_file

    files, reference, (x, t, text), _, _ = wan_source
    out = tmp_path / "imported.safetensors"
    assert main(["import", str(files["musubi"]), "--model", str(wan_dir), "--dtype", "bfloat16", "--out", str(out)]) == 0
    art = Artifact.load(out)
    source = load_file(files["musubi"])
    down = source["lora_unet_blocks_0_self_attn_q.lora_down.weight"]
    assert art.adapter_tensors["blocks.0.attn1.to_q.lora_A.weight"].dtype == torch.float32
    assert torch.equal(art.adapter_tensors["blocks.0.attn1.to_q.lora_A.weight"], down)
    assert (videomage_output(wan_dir, art, x, t, text) - reference).abs().max() <= TOL


def test_a_lora_for_another_model_size_is_refused_naming_the_layer(wan_dir, wan_source, tmp_path, capsys):
    from safetensors.torch import load_file

    files, *_ = wan_source
    tensors = load_file(files["comfyui"])
    tensors["diffusion_model.blocks.1.ffn.0.lora_down.weight"] = torch.zeros(4, 48)  # a wider model's layer
    save_file(tensors, tmp_path / "wide.safetensors")
    assert main(["import", str(tmp_path / "wide.safetensors"), "--model", str(wan_dir), "--out", str(tmp_path / "a.safetensors")]) == 1
    err = capsys.readouterr().err
    assert "'blocks.1.ffn.net.0.proj' maps 48 -> 32 features but the model's layer maps 24 -> 32" in err


@pytest.mark.parametrize("fmt", ["diffusers", "comfyui"])
def test_export_then_import_gives_back_the_artifact(wan_dir, fmt, tmp_path, capsys):
    from interop_helpers import random_artifact

    art = random_artifact(wan_dir, ["spatial"], kind="fused", seed=5)
    art.save(tmp_path / "pair.safetensors")
    assert main(["export", str(tmp_path / "pair.safetensors"), "--format", fmt, "--out", str(tmp_path / "x.safetensors")]) == 0
    assert main(["import", str(tmp_path / "x.safetensors"), "--model", str(wan_dir), "--out", str(tmp_path / "back.safetensors"),
                 "--tokens", str(tmp_path / "x.token1.safetensors")]) == 0
    assert "(fused artifact with tokens <toy>)" in capsys.readouterr().out
    back = Artifact.load(tmp_path / "back.safetensors")
    assert (back.kind, back.roles, dict(back.tokens)) == ("fused", ("spatial",), {"<toy>": "toy"})
    assert torch.equal(back.embeddings["<toy>"], art.embeddings["<toy>"])
    assert back.adapter_tensors.keys() == art.adapter_tensors.keys()
    assert all(torch.equal(back.adapter_tensors[k], art.adapter_tensors[k]) for k in art.adapter_tensors)
    assert back.adapter_config["alpha"] / back.adapter_config["rank"] == 2.0
