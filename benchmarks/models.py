"""The models the benchmarks run on: a small toy-world model (CPU) or a real-size ZeroScope UNet (GPU).

Nothing is downloaded. ``small`` is the toy world's model architecture (a ZeroScope-shaped
``UNet3DConditionModel``, shrunk), saved in the diffusers layout and loaded by
:func:`videomage.loading.load_backbone`, so the artifact-load benchmark goes through the real
loading path. ``real`` is the published ZeroScope v2 576w / ModelScope 1.7B UNet config (same
architecture, about 1.4 B parameters) with random weights, built directly on the device; the
VAE and text encoder are small stand-ins with the right interfaces (4 latent channels, 8x
spatial down-sampling, 1024-wide text states over 77 positions), because the benchmarks time the
UNet loops, not text encoding or decoding.
"""

from __future__ import annotations

import os
from pathlib import Path

import attrs
import torch

#: ``cerspense/zeroscope_v2_576w`` ``unet/config.json`` (identical to ModelScope
#: ``damo-vilab/text-to-video-ms-1.7b``'s, which zeroscope was fine-tuned from), minus metadata and
#: the three keys today's ``UNet3DConditionModel`` ignores (``center_input_sample``,
#: ``flip_sin_to_cos``, ``freq_shift``). 1.41 B parameters.
ZEROSCOPE_UNET = {
    "act_fn": "silu",
    "attention_head_dim": 64,
    "block_out_channels": [320, 640, 1280, 1280],
    "cross_attention_dim": 1024,
    "down_block_types": ["CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D"],
    "downsample_padding": 1,
    "in_channels": 4,
    "layers_per_block": 2,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 32,
    "up_block_types": ["UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"],
}


@attrs.frozen(kw_only=True)
class BenchConfig:
    """Which model, where, and at which sizes. Read from the environment by :meth:`from_env`."""

    size: str = "small"  # "small" (a small model of the family) or "real" (the published config, random weights)
    backbone: str = "zeroscope"  # "zeroscope" or "wan"
    wan_model: str = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"  # whose published transformer config "real" Wan builds
    device: str = "cpu"
    dtype: str = "float32"
    frames: int = 8  # video frames of training clips and sampled videos
    height: int = 32
    width: int = 32
    rounds: int = 5  # interleaved candidate/floor repetitions per comparison
    steps: int = 2  # denoising steps per sampling benchmark

    @classmethod
    def from_env(cls) -> BenchConfig:
        """``VIDEOMAGE_BENCH_SIZE`` (small | real), ``_BACKBONE`` (zeroscope | wan), ``_WAN_MODEL``,
        ``_DEVICE``, ``_DTYPE``, ``_FRAMES``, ``_HEIGHT``, ``_WIDTH``, ``_ROUNDS``, ``_STEPS``; real size
        defaults to CUDA, bf16, 16 x 256 x 256 (Wan: 17 x 256 x 256, its VAE takes 1 + 4k frames)."""
        env = os.environ.get
        size = env("VIDEOMAGE_BENCH_SIZE", "small")
        if size not in ("small", "real"):
            raise ValueError(f"VIDEOMAGE_BENCH_SIZE must be 'small' or 'real', got {size!r}")
        backbone = env("VIDEOMAGE_BENCH_BACKBONE", "zeroscope")
        if backbone not in ("zeroscope", "wan"):
            raise ValueError(f"VIDEOMAGE_BENCH_BACKBONE must be 'zeroscope' or 'wan', got {backbone!r}")
        real = size == "real"
        wan = backbone == "wan"
        default_device = "cuda" if torch.cuda.is_available() else "cpu"
        return cls(
            size=size,
            backbone=backbone,
            wan_model=env("VIDEOMAGE_BENCH_WAN_MODEL", cls.wan_model),
            device=env("VIDEOMAGE_BENCH_DEVICE", default_device if real else "cpu"),
            dtype=env("VIDEOMAGE_BENCH_DTYPE", "bfloat16" if real else "float32"),
            frames=int(env("VIDEOMAGE_BENCH_FRAMES", (16 if real else 8) + wan)),
            height=int(env("VIDEOMAGE_BENCH_HEIGHT", 256 if real else 32)),
            width=int(env("VIDEOMAGE_BENCH_WIDTH", 256 if real else 32)),
            rounds=int(env("VIDEOMAGE_BENCH_ROUNDS", 5)),
            steps=int(env("VIDEOMAGE_BENCH_STEPS", 2)),
        )


def save_small_model(folder: Path, *, frames: int, seed: int = 0, backbone: str = "zeroscope") -> Path:
    """A small model of the family with random weights, saved in the diffusers layout: the toy
    world's architecture (ZeroScope), or a Wan transformer of 4 blocks, 4 heads of 32 channels."""
    if backbone == "wan":
        return save_small_wan(folder, frames=frames, seed=seed)
    from videomage_toyworld.model import ToyModelConfig, build_components, save_model

    return save_model(build_components(ToyModelConfig(), folder / "tokenizer", seed=seed), folder, frames=frames)


def save_small_wan(folder: Path, *, frames: int, seed: int = 0, heads: int = 4, head_dim: int = 32, layers: int = 4) -> Path:
    """A Wan 2.1 model in the diffusers layout with a ``layers x heads x head_dim`` transformer and the
    tiny test model's VAE, text encoder and tokenizer (:mod:`videomage_wan.tiny`)."""
    from diffusers import WanPipeline, WanTransformer3DModel
    from videomage_wan import tiny

    from videomage.components import VideoSpec
    from videomage.modelfiles import write_video_spec

    torch.manual_seed(seed)
    tokenizer = tiny.build_tokenizer()
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=heads, attention_head_dim=head_dim, in_channels=4, out_channels=4,
        text_dim=16, freq_dim=16, ffn_dim=4 * heads * head_dim, num_layers=layers, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", rope_max_seq_len=64)
    pipe = WanPipeline(tokenizer=tokenizer, text_encoder=tiny.build_text_encoder(len(tokenizer) + 1),
                       transformer=transformer, vae=tiny.build_vae(), scheduler=tiny.build_scheduler())
    pipe.save_pretrained(folder)
    write_video_spec(folder, VideoSpec(height=32, width=32, frames=frames, fps=16))
    return Path(folder)


def build_real_backbone(config: BenchConfig, tokenizer_dir: Path, seed: int = 0):
    """A backbone whose denoiser has the published config and random weights (ZeroScope, or Wan)."""
    if config.backbone == "wan":
        return build_real_wan(config, seed)
    from diffusers import AutoencoderKL, DDIMScheduler, UNet3DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel
    from videomage_toyworld.tokenizer import build_tokenizer
    from videomage_zeroscope.backbone import ZeroScopeBackbone

    from videomage.components import VideoSpec
    from videomage.modelfiles import DTYPES

    torch.manual_seed(seed)
    dtype = DTYPES[config.dtype]
    tokenizer = build_tokenizer(tokenizer_dir)
    tokenizer.model_max_length = 77  # CLIP's sequence length, as ZeroScope's cross-attention sees it
    with torch.device(config.device):
        unet = UNet3DConditionModel.from_config(ZEROSCOPE_UNET)  # from_config: the config keys, not __init__ args
        vae = AutoencoderKL(  # 8x down-sampling, 4 latent channels, like ZeroScope's VAE; tiny widths
            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(32, 32, 32, 32), layers_per_block=1, latent_channels=4, norm_num_groups=8,
            sample_size=config.height,
        )
        text = CLIPTextModel(CLIPTextConfig(
            vocab_size=len(tokenizer), hidden_size=1024, intermediate_size=1024, num_hidden_layers=1,
            num_attention_heads=16, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        ))
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon")
    spec = VideoSpec(height=config.height, width=config.width, frames=config.frames, fps=8)
    return ZeroScopeBackbone(
        unet=unet.to(dtype), vae=vae.to(dtype), text_encoder=text.to(dtype), tokenizer=tokenizer,
        scheduler_config=dict(scheduler.config), model_ref="bench:zeroscope_v2_576w-config-random", spec=spec,
    )


def parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def build_real_wan(config: BenchConfig, seed: int = 0):
    """A Wan backbone whose transformer has ``config.wan_model``'s published config and random weights.

    The VAE and text encoder are small stand-ins with the right interfaces (16 latent channels,
    8x spatial and 4x temporal down-sampling; 4096-wide text states over 512 positions), as for
    ZeroScope: the benchmarks time the transformer's loops.
    """
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel
    from videomage_wan import tiny
    from videomage_wan.backbone import WanBackbone
    from videomage_wan.meta import PUBLISHED
    from videomage_wan.text import MAX_TEXT_LENGTH

    from videomage.components import VideoSpec
    from videomage.memory import cast_as_loaded
    from videomage.modelfiles import DTYPES

    torch.manual_seed(seed)
    dtype = DTYPES[config.dtype]
    tokenizer = tiny.build_tokenizer()
    tokenizer.model_max_length = MAX_TEXT_LENGTH
    with torch.device(config.device):
        transformer = cast_as_loaded(WanTransformer3DModel.from_config(PUBLISHED[config.wan_model]["transformer"]), dtype,
                                     keep_float32_for=(torch.float16, torch.bfloat16))
        vae = AutoencoderKLWan(base_dim=16, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                               temperal_downsample=[False, True, True])
        text = UMT5EncoderModel(UMT5Config(vocab_size=len(tokenizer) + 1, d_model=4096, d_kv=64, d_ff=1024, num_layers=1,
                                           num_heads=8, feed_forward_proj="gated-gelu", dropout_rate=0.0)).to(dtype)
    spec = VideoSpec(height=config.height, width=config.width, frames=config.frames, fps=16)
    return WanBackbone(transformer=transformer, vae=vae, text_encoder=text, tokenizer=tokenizer,
                       scheduler_config=dict(tiny.build_scheduler().config),
                       model_ref=f"bench:{config.wan_model}-config-random", spec=spec)
