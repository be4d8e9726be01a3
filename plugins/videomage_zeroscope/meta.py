"""ZeroScope built on the meta device: every module's shapes from its config, no weights.

``videomage plan`` runs a stage on such a backbone to measure its memory before anything is
loaded. The configs come from a local folder (the components' ``config.json``), or, for
``cerspense/zeroscope_v2_576w``, from the configs below (the model's ``config.json`` files, so a
plan needs no download).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet3DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from videomage import ConfigError
from videomage.kit import DTYPES, cast_as_loaded, component_configs, read_config
from videomage_zeroscope.files import video_spec

#: ``cerspense/zeroscope_v2_576w``: ModelScope 1.7B's UNet, Stable Diffusion's VAE, OpenCLIP-H's text tower.
ZEROSCOPE_576W: dict[str, dict[str, Any]] = {
    "unet": {
        "act_fn": "silu", "attention_head_dim": 64, "block_out_channels": [320, 640, 1280, 1280],
        "cross_attention_dim": 1024, "down_block_types": ["CrossAttnDownBlock3D"] * 3 + ["DownBlock3D"],
        "downsample_padding": 1, "in_channels": 4, "layers_per_block": 2, "norm_eps": 1e-05, "norm_num_groups": 32,
        "out_channels": 4, "sample_size": 32, "up_block_types": ["UpBlock3D"] + ["CrossAttnUpBlock3D"] * 3,
    },
    "vae": {
        "act_fn": "silu", "block_out_channels": [128, 256, 512, 512], "down_block_types": ["DownEncoderBlock2D"] * 4,
        "in_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32, "out_channels": 3,
        "sample_size": 512, "scaling_factor": 0.18215, "up_block_types": ["UpDecoderBlock2D"] * 4,
    },
    "text_encoder": {
        "vocab_size": 49408, "hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 23,
        "num_attention_heads": 16, "max_position_embeddings": 77, "hidden_act": "gelu", "projection_dim": 512,
        "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1,
    },
}
PUBLISHED = {"cerspense/zeroscope_v2_576w": ZEROSCOPE_576W}

_SCHEDULER = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
              "clip_sample": False, "set_alpha_to_one": False, "steps_offset": 1, "prediction_type": "epsilon"}


def _configs(model: str) -> dict[str, dict[str, Any]]:
    return component_configs(model, ("unet", "vae", "text_encoder"), PUBLISHED, "ZeroScope")


def _tokenizer(model: str, length: int):
    if (Path(model) / "tokenizer").is_dir():
        return CLIPTokenizer.from_pretrained(model, subfolder="tokenizer")
    # Memory depends on the encoded length (77) and the embedding matrix (vocab_size), not on the
    # pieces: a letter-level BPE tokenizer stands in for CLIP's.
    import string

    pieces = ["<|startoftext|>", "<|endoftext|>"] + [c + end for c in string.ascii_letters + string.digits + string.punctuation
                                                     for end in ("", "</w>")]
    return CLIPTokenizer(vocab={p: i for i, p in enumerate(pieces)}, merges=[], model_max_length=length)


def build_on_meta(cls, model: str, dtype: str):
    """A ``cls`` (the ZeroScope backbone) whose modules live on the meta device."""
    if dtype not in DTYPES:
        raise ConfigError(f"dtype {dtype!r} is not supported; choose one of {sorted(DTYPES)}")
    torch_dtype = DTYPES[dtype]
    configs = _configs(model)
    scheduler = read_config(model, "scheduler/scheduler_config.json") or dict(DDPMScheduler.from_config(_SCHEDULER).config)
    half = (torch.float16, torch.bfloat16)
    text = {k: v for k, v in configs["text_encoder"].items() if not k.startswith("_") and k != "architectures"}
    with torch.device("meta"):
        unet = cast_as_loaded(UNet3DConditionModel.from_config(configs["unet"]), torch_dtype, keep_float32_for=half)
        vae = cast_as_loaded(AutoencoderKL.from_config(configs["vae"]), torch_dtype, keep_float32_for=half)
        text_encoder = cast_as_loaded(CLIPTextModel(CLIPTextConfig(**text)), torch_dtype, keep_float32_for=(torch.float16,))
    tokenizer = _tokenizer(model, int(text.get("max_position_embeddings", 77)))
    spec = video_spec(model, unet.config.sample_size, 2 ** (len(vae.config.block_out_channels) - 1))
    return cls(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler_config=scheduler,
               model_ref=model, spec=spec)
