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

    size: str = "small"  # "small" (toy-world UNet) or "real" (ZeroScope UNet, random weights)
    device: str = "cpu"
    dtype: str = "float32"
    frames: int = 8  # video frames of training clips and sampled videos
    height: int = 32
    width: int = 32
    rounds: int = 5  # interleaved candidate/floor repetitions per comparison
    steps: int = 2  # denoising steps per sampling benchmark

    @classmethod
    def from_env(cls) -> BenchConfig:
        """``VIDEOMAGE_BENCH_SIZE`` (small | real), ``_DEVICE``, ``_DTYPE``, ``_FRAMES``, ``_HEIGHT``,
        ``_WIDTH``, ``_ROUNDS``, ``_STEPS``; real size defaults to CUDA, bf16, 16 x 256 x 256."""
        env = os.environ.get
        size = env("VIDEOMAGE_BENCH_SIZE", "small")
        if size not in ("small", "real"):
            raise ValueError(f"VIDEOMAGE_BENCH_SIZE must be 'small' or 'real', got {size!r}")
        real = size == "real"
        default_device = "cuda" if torch.cuda.is_available() else "cpu"
        return cls(
            size=size,
            device=env("VIDEOMAGE_BENCH_DEVICE", default_device if real else "cpu"),
            dtype=env("VIDEOMAGE_BENCH_DTYPE", "bfloat16" if real else "float32"),
            frames=int(env("VIDEOMAGE_BENCH_FRAMES", 16 if real else 8)),
            height=int(env("VIDEOMAGE_BENCH_HEIGHT", 256 if real else 32)),
            width=int(env("VIDEOMAGE_BENCH_WIDTH", 256 if real else 32)),
            rounds=int(env("VIDEOMAGE_BENCH_ROUNDS", 5)),
            steps=int(env("VIDEOMAGE_BENCH_STEPS", 2)),
        )


def save_small_model(folder: Path, *, frames: int, seed: int = 0) -> Path:
    """The toy world's model architecture with random weights, saved in the diffusers layout."""
    from videomage_toyworld.model import ToyModelConfig, build_components, save_model

    return save_model(build_components(ToyModelConfig(), folder / "tokenizer", seed=seed), folder, frames=frames)


def build_real_backbone(config: BenchConfig, tokenizer_dir: Path, seed: int = 0):
    """A ZeroScope backbone whose UNet has the published config and random weights."""
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
