"""Tiny random Wan 2.1 models in the diffusers layout, built from configs (nothing is downloaded).

Tests, and third parties checking a plugin against Wan, call :func:`save_tiny_wan` to get a
folder shaped exactly like ``Wan-AI/Wan2.1-T2V-1.3B-Diffusers`` (``model_index.json``,
``transformer/``, ``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``) whose components
have the real classes and the real structure, only a few channels wide:

* ``WanTransformer3DModel``: 2 blocks, 2 heads of 12 channels, patch ``(1, 2, 2)``;
* ``AutoencoderKLWan``: the real 8x spatial / 4x temporal causal VAE with 8 channels and 4
  latent channels (with non-trivial latent mean and std, so normalisation is exercised);
* ``UMT5EncoderModel``: one layer, width 16;
* a T5 (sentencepiece-style Unigram) tokenizer over a small English vocabulary with single
  letters as fallback pieces, so every word tokenizes;
* Wan's own scheduler settings: ``UniPCMultistepScheduler`` with flow prediction, shift 3.

With ``frames=5`` at 32x48 the latents are ``[B, 4, 2, 4, 6]`` and a forward pass takes a few
milliseconds on a CPU.

:func:`save_tiny_wan22` builds the two Wan 2.2 shapes the same way: ``kind="a14b"`` two such
transformers as ``transformer`` (high noise) and ``transformer_2`` (low noise) with
``boundary_ratio`` 0.875, like ``Wan-AI/Wan2.2-T2V-A14B-Diffusers``; ``kind="ti2v5b"`` one
transformer on Wan 2.2's VAE (48 latent channels, a 2x2 patchify before the 8x encoder: 16x in
space) with ``expand_timesteps``, like ``Wan-AI/Wan2.2-TI2V-5B-Diffusers`` (at 64x64, 5 frames,
latents ``[B, 48, 2, 4, 4]``).
"""

from __future__ import annotations

import string
from pathlib import Path

from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel
from transformers import T5Tokenizer, UMT5Config, UMT5EncoderModel

from videomage import VideoSpec
from videomage.kit import write_video_spec

#: Words of the tiny tokenizer (others fall back to letters, as sentencepiece does).
WORDS = (
    "a an the of and in on at with is are to its A An The "
    "video photo picture static still clip scene snow beach park street "
    "toy dog cat person horse man woman car ball square circle red green blue "
    "riding running walking jumping playing moving"
).split()

#: Native size of the tiny model (written to its ``videomage.json``): 5 frames make 2 latent frames.
TINY_SPEC = VideoSpec(height=32, width=48, frames=5, fps=8)
#: Native size of the tiny TI2V-5B-shaped model: sides in multiples of 32 (16x VAE, 2x2 patches).
TINY_TI2V_SPEC = VideoSpec(height=64, width=64, frames=5, fps=24)
#: The kinds :func:`save_tiny_wan22` builds.
WAN22_KINDS = ("a14b", "ti2v5b")

#: Text length of the tiny model (the real one reads 512 positions).
TEXT_LENGTH = 24


def build_tokenizer() -> T5Tokenizer:
    """A T5 tokenizer over :data:`WORDS`: ``<pad>`` = 0, ``</s>`` = 1, ``<unk>`` = 2, as in T5."""
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [("\u2581" + w, -5.0) for w in WORDS]
    pieces += [(c, -10.0) for c in string.ascii_letters + string.digits + string.punctuation]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=TEXT_LENGTH)


def build_text_encoder(vocab_size: int, width: int = 16) -> UMT5EncoderModel:
    config = UMT5Config(
        vocab_size=vocab_size, d_model=width, d_kv=8, d_ff=2 * width, num_layers=1, num_heads=2,
        relative_attention_num_buckets=8, relative_attention_max_distance=16, feed_forward_proj="gated-gelu",
        dropout_rate=0.0,
    )
    return UMT5EncoderModel(config)


def build_transformer(text_width: int = 16, latent_channels: int = 4, layers: int = 2) -> WanTransformer3DModel:
    return WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=latent_channels,
        out_channels=latent_channels, text_dim=text_width, freq_dim=16, ffn_dim=32, num_layers=layers,
        cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=64,
    )


def build_vae(latent_channels: int = 4) -> AutoencoderKLWan:
    return AutoencoderKLWan(
        base_dim=8, z_dim=latent_channels, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
        temperal_downsample=[False, True, True],
        latents_mean=[0.1 * (i - latent_channels / 2) for i in range(latent_channels)],
        latents_std=[1.0 + 0.25 * i for i in range(latent_channels)],
    )


def build_vae22(latent_channels: int = 48) -> AutoencoderKLWan:
    """Wan 2.2's VAE shape: residual blocks, 2x2 pixel patchify (12 input channels), 16x in space."""
    return AutoencoderKLWan(
        base_dim=8, z_dim=latent_channels, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
        temperal_downsample=[False, True, True], is_residual=True, in_channels=12, out_channels=12, patch_size=2,
        scale_factor_spatial=16, scale_factor_temporal=4,
        latents_mean=[0.05 * (i % 7 - 3) for i in range(latent_channels)],
        latents_std=[1.0 + 0.1 * (i % 5) for i in range(latent_channels)],
    )


def build_scheduler() -> UniPCMultistepScheduler:
    return UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0,
                                   num_train_timesteps=1000)


def save_tiny_wan(folder: str | Path, seed: int = 0) -> Path:
    """Build a tiny random Wan 2.1 text-to-video model and save it in the diffusers layout."""
    import torch

    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    # As in UMT5, the embedding matrix has a spare row beyond the tokenizer's vocabulary.
    text_encoder = build_text_encoder(len(tokenizer) + 1)
    pipe = WanPipeline(
        tokenizer=tokenizer, text_encoder=text_encoder, transformer=build_transformer(), vae=build_vae(),
        scheduler=build_scheduler(),
    )
    folder = Path(folder)
    pipe.save_pretrained(folder)
    write_video_spec(folder, TINY_SPEC)
    return folder


def save_tiny_wan22(folder: str | Path, kind: str = "a14b", seed: int = 0) -> Path:
    """Build a tiny random Wan 2.2 model of ``kind`` (``"a14b"`` or ``"ti2v5b"``) in the diffusers layout."""
    import torch

    if kind not in WAN22_KINDS:
        raise ValueError(f"kind must be one of {', '.join(WAN22_KINDS)}, got {kind!r}")
    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    text_encoder = build_text_encoder(len(tokenizer) + 1)
    if kind == "a14b":
        pipe = WanPipeline(
            tokenizer=tokenizer, text_encoder=text_encoder, transformer=build_transformer(),
            transformer_2=build_transformer(), vae=build_vae(), scheduler=build_scheduler(), boundary_ratio=0.875,
        )
        spec = TINY_SPEC
    else:
        pipe = WanPipeline(
            tokenizer=tokenizer, text_encoder=text_encoder, transformer=build_transformer(latent_channels=48),
            vae=build_vae22(), scheduler=build_scheduler(), expand_timesteps=True,
        )
        spec = TINY_TI2V_SPEC
    folder = Path(folder)
    pipe.save_pretrained(folder)
    write_video_spec(folder, spec)
    return folder
