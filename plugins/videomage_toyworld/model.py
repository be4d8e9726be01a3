"""The tiny text-to-video model of the toy world, in ZeroScope's architecture and file layout.

Components are built from configs (nothing is downloaded): a diffusers ``UNet3DConditionModel``
(the ZeroScope/ModelScope denoiser, shrunk), an ``AutoencoderKL`` that maps 64x64 frames to
4x16x16 latents, a small ``transformers.CLIPTextModel`` with the world's own tokenizer, and
ZeroScope's ``DDIMScheduler`` settings. :func:`save_model` writes them in the diffusers layout
(``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/`` and ``model_index.json``)
so any loader of real ZeroScope folders can load this one.
"""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import diffusers
import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet3DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from videomage import VideoSpec
from videomage.kit import write_video_spec
from videomage_toyworld.tokenizer import MAX_LENGTH, build_tokenizer

#: The committed, trained base model (see docs/toyworld.md for how it was made).
MODEL_DIR = Path(__file__).resolve().parent / "model"

COMPONENT_CLASSES = {
    "scheduler": ("diffusers", "DDIMScheduler"),
    "text_encoder": ("transformers", "CLIPTextModel"),
    "tokenizer": ("transformers", "CLIPTokenizer"),
    "unet": ("diffusers", "UNet3DConditionModel"),
    "vae": ("diffusers", "AutoencoderKL"),
}


@attrs.frozen(kw_only=True)
class ToyModelConfig:
    """Sizes of the tiny model. ``ToyModelConfig()`` is the shipped model; tests use ``tiny()``."""

    unet_channels: tuple[int, ...] = (32, 64, 64)
    vae_channels: tuple[int, ...] = (32, 64, 64)  # three blocks: 64x64 frames -> 16x16 latents
    text_width: int = 64
    text_layers: int = 3
    heads: int = 4  # the UNet's ``attention_head_dim``, which diffusers uses as the head *count*
    norm_groups: int = 8
    image_size: int = 64

    @classmethod
    def tiny(cls) -> ToyModelConfig:
        """A model small enough for unit tests (a forward pass in milliseconds)."""
        return cls(unet_channels=(16, 32), vae_channels=(16, 16), text_width=32, text_layers=1, heads=2,
                   norm_groups=4, image_size=32)


def build_unet(config: ToyModelConfig) -> UNet3DConditionModel:
    n = len(config.unet_channels)
    # Cross-attention everywhere but the coarsest level, as ZeroScope does (its last down block
    # and first up block are plain).
    down = ("CrossAttnDownBlock3D",) * (n - 1) + ("DownBlock3D",)
    up = ("UpBlock3D",) + ("CrossAttnUpBlock3D",) * (n - 1)
    return UNet3DConditionModel(
        sample_size=config.image_size // 2 ** (len(config.vae_channels) - 1),
        in_channels=4,
        out_channels=4,
        down_block_types=down,
        up_block_types=up,
        block_out_channels=config.unet_channels,
        layers_per_block=1,
        norm_num_groups=config.norm_groups,
        cross_attention_dim=config.text_width,
        attention_head_dim=config.heads,
    )


def build_vae(config: ToyModelConfig) -> AutoencoderKL:
    n = len(config.vae_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=config.vae_channels,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=config.norm_groups,
        sample_size=config.image_size,
    )


def build_text_encoder(config: ToyModelConfig, tokenizer: CLIPTokenizer) -> CLIPTextModel:
    text_config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.text_width,
        intermediate_size=4 * config.text_width,
        num_hidden_layers=config.text_layers,
        num_attention_heads=4 if config.text_width % 4 == 0 else 1,
        max_position_embeddings=MAX_LENGTH,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(text_config)


def build_scheduler() -> DDIMScheduler:
    """ZeroScope's scheduler settings (scaled-linear betas, epsilon prediction)."""
    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type="epsilon",
    )


def build_components(config: ToyModelConfig, tokenizer_dir: str | Path, seed: int = 0) -> dict:
    """Fresh (untrained) components; the tokenizer files are written into ``tokenizer_dir``."""
    torch.manual_seed(seed)
    tokenizer = build_tokenizer(tokenizer_dir)
    return {
        "tokenizer": tokenizer,
        "text_encoder": build_text_encoder(config, tokenizer),
        "vae": build_vae(config),
        "unet": build_unet(config),
        "scheduler": build_scheduler(),
    }


#: Frames per clip the model is trained on (and samples by default).
FRAMES = 8


def save_model(components: dict, folder: str | Path, *, dtype: torch.dtype = torch.float32, frames: int = FRAMES) -> Path:
    """Write ``components`` in the diffusers layout with safetensors weights (cast to ``dtype``).

    Beside the diffusers files, ``videomage.json`` declares the native clip size (the VAE's
    frame size, ``frames`` frames at 8 fps), so samplers default to what the model was trained on.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("unet", "vae", "text_encoder"):
        module = components[name]
        original = next(module.parameters()).dtype
        module.to(dtype).save_pretrained(folder / name, safe_serialization=True)
        module.to(original)
    components["tokenizer"].save_pretrained(folder / "tokenizer")
    components["scheduler"].save_pretrained(folder / "scheduler")
    index = {"_class_name": "TextToVideoSDPipeline", "_diffusers_version": diffusers.__version__}
    index.update({k: list(v) for k, v in COMPONENT_CLASSES.items()})
    (folder / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    side = int(components["vae"].config.sample_size)
    write_video_spec(folder, VideoSpec(height=side, width=side, frames=frames, fps=8))
    return folder


def load_model(folder: str | Path = MODEL_DIR, *, dtype: torch.dtype = torch.float32) -> dict:
    """Load every component of a diffusers-layout folder, offline, as ``dtype``."""
    folder = str(folder)
    return {
        "tokenizer": CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer"),
        "text_encoder": CLIPTextModel.from_pretrained(folder, subfolder="text_encoder", torch_dtype=dtype),
        "vae": AutoencoderKL.from_pretrained(folder, subfolder="vae", torch_dtype=dtype),
        "unet": UNet3DConditionModel.from_pretrained(folder, subfolder="unet", torch_dtype=dtype),
        "scheduler": DDIMScheduler.from_pretrained(folder, subfolder="scheduler"),
    }
