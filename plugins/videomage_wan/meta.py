"""Wan built on the meta device: every module's shapes from its config, no weights.

``videomage plan`` runs a stage on such a backbone to measure its memory before anything is
loaded. The configs come from a local folder (the components' ``config.json``), or, for the
published Hub ids, from the configs below (copied from the models' ``config.json`` files, so a
plan needs no download).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanTransformer3DModel
from transformers import AutoTokenizer, UMT5Config, UMT5EncoderModel

from videomage import ConfigError
from videomage.kit import DTYPES, cast_as_loaded, component_configs, read_config
from videomage_wan.files import video_spec

_WAN_BLOCK = {"_class_name": "WanTransformer3DModel", "added_kv_proj_dim": None, "attention_head_dim": 128,
              "cross_attn_norm": True, "eps": 1e-06, "freq_dim": 256, "image_dim": None, "in_channels": 16,
              "out_channels": 16, "patch_size": [1, 2, 2], "qk_norm": "rms_norm_across_heads",
              "rope_max_seq_len": 1024, "text_dim": 4096}

#: UMT5-XXL's encoder, the text encoder of every Wan 2.1 model.
UMT5_XXL = {"vocab_size": 256384, "d_model": 4096, "d_kv": 64, "d_ff": 10240, "num_layers": 24, "num_heads": 64,
            "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128,
            "feed_forward_proj": "gated-gelu", "layer_norm_epsilon": 1e-06, "tie_word_embeddings": False,
            "dropout_rate": 0.0}

#: Hub id -> component configs. The VAE is AutoencoderKLWan's defaults (base_dim 96, z_dim 16).
PUBLISHED: dict[str, dict[str, dict[str, Any]]] = {
    "Wan-AI/Wan2.1-T2V-1.3B-Diffusers": {
        "transformer": {**_WAN_BLOCK, "ffn_dim": 8960, "num_attention_heads": 12, "num_layers": 30},
        "vae": {}, "text_encoder": UMT5_XXL,
    },
    "Wan-AI/Wan2.1-T2V-14B-Diffusers": {
        "transformer": {**_WAN_BLOCK, "ffn_dim": 13824, "num_attention_heads": 40, "num_layers": 40},
        "vae": {}, "text_encoder": UMT5_XXL,
    },
}

_SCHEDULER = {"prediction_type": "flow_prediction", "use_flow_sigmas": True, "flow_shift": 3.0, "num_train_timesteps": 1000}


def _configs(model: str) -> dict[str, dict[str, Any]]:
    return component_configs(model, ("transformer", "vae", "text_encoder"), PUBLISHED, "Wan")


def _tokenizer(model: str):
    if (Path(model) / "tokenizer").is_dir():
        return AutoTokenizer.from_pretrained(model, subfolder="tokenizer")
    # A published model whose tokenizer is not on disk: what memory depends on is the encoded
    # length (512 positions) and the embedding matrix (the encoder config's vocab_size), not the pieces.
    from videomage_wan.text import MAX_TEXT_LENGTH
    from videomage_wan.tiny import build_tokenizer

    tokenizer = build_tokenizer()
    tokenizer.model_max_length = MAX_TEXT_LENGTH
    return tokenizer


def build_on_meta(cls, model: str, dtype: str):
    """A ``cls`` (the Wan backbone) whose modules live on the meta device."""
    if dtype not in DTYPES:
        raise ConfigError(f"dtype {dtype!r} is not supported; choose one of {sorted(DTYPES)}")
    torch_dtype = DTYPES[dtype]
    configs = _configs(model)
    scheduler = read_config(model, "scheduler/scheduler_config.json") or dict(UniPCMultistepScheduler.from_config(_SCHEDULER).config)
    with torch.device("meta"):
        half = (torch.float16, torch.bfloat16)
        transformer = cast_as_loaded(WanTransformer3DModel.from_config(configs["transformer"]), torch_dtype, keep_float32_for=half)
        # As from_pretrained does: the VAE stays float32 whatever the dtype.
        vae = cast_as_loaded(AutoencoderKLWan.from_config(configs["vae"]), torch.float32)
        keys = {k: v for k, v in configs["text_encoder"].items() if not k.startswith("_") and k != "architectures"}
        text_encoder = cast_as_loaded(UMT5EncoderModel(UMT5Config(**keys)), torch_dtype, keep_float32_for=(torch.float16,))
    return cls(transformer=transformer, vae=vae, text_encoder=text_encoder, tokenizer=_tokenizer(model),
               scheduler_config=scheduler, model_ref=model, spec=video_spec(model))
