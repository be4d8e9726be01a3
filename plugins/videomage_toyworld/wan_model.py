"""The v2 base model's architecture: a tiny Wan 2.1 text-to-video model, built from configs.

Wan removes both faults v1's ZeroScope-architecture model had in this world
(``docs/toyworld-investigations.md``): its transformer attends over all frames with 3D RoPE,
so frame order is in every attention score, and rectified flow starts sampling from pure noise,
so the background cannot be read from the initial noise's mean. The folder it is saved as is an
ordinary Wan folder in the diffusers layout, loaded by the ``wan`` backbone plugin like a
published one:

* ``WanTransformer3DModel``: 6 blocks of width 128 (4 heads of 32), patch ``(1, 2, 2)``, about
  1.75 M parameters;
* ``AutoencoderKLWan`` with a 4x4 pixel patchify, no further downsampling in space or time
  (``scale_factor_temporal`` 1) and 16 latent channels, coding each frame on its own: 9 frames
  of 64x64 become latents ``[16, 9, 16, 16]``, so a motion is seen frame by frame;
* ``UMT5EncoderModel``: 2 layers of width 64 over the world's own words (a T5 tokenizer whose
  pieces are the world's words, with single characters as fallback, so learned tokens work);
* Wan's scheduler (UniPC, flow prediction) with a shift of 2 for these short sequences.
"""

from __future__ import annotations

import string
from pathlib import Path

from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel
from transformers import T5Tokenizer, UMT5Config, UMT5EncoderModel

from videomage import VideoSpec
from videomage.kit import write_video_spec
from videomage_toyworld.vocabulary import words

MODEL_V2_DIR = Path(__file__).resolve().parent / "model_v2"
#: v2's native size: 9 frames (``1 + 4k``, as Wan's VAE takes) of 64x64.
SPEC = VideoSpec(height=64, width=64, frames=9, fps=8)
TEXT_LENGTH = 24
#: Latent channels of a frame's 4x4 pixel patch (48 numbers): 16, so a 2x2 token carries 64 numbers,
#: half the transformer's width (see :func:`build_vae`).
LATENT_CHANNELS = 16
#: Words v2's captions add to v1's vocabulary (motion families).
V2_WORDS = ("bouncing", "arcing")


def vocabulary() -> list[str]:
    return [*words(), *[w for w in V2_WORDS if w not in words()]]


def build_tokenizer() -> T5Tokenizer:
    """A T5 tokenizer whose pieces are the world's words: ``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2."""
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [("\u2581" + w, -5.0) for w in vocabulary()]
    pieces += [(c, -10.0) for c in string.ascii_letters + string.digits + string.punctuation]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=TEXT_LENGTH)


def build_text_encoder(vocab_size: int, width: int = 64, layers: int = 2) -> UMT5EncoderModel:
    return UMT5EncoderModel(UMT5Config(
        vocab_size=vocab_size, d_model=width, d_kv=16, d_ff=2 * width, num_layers=layers, num_heads=4,
        relative_attention_num_buckets=16, relative_attention_max_distance=32, feed_forward_proj="gated-gelu",
        dropout_rate=0.0,
    ))


def build_transformer(*, layers: int = 6, heads: int = 4, head_dim: int = 32, text_width: int = 64,
                      latent_channels: int = LATENT_CHANNELS) -> WanTransformer3DModel:
    return WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=heads, attention_head_dim=head_dim, in_channels=latent_channels,
        out_channels=latent_channels, text_dim=text_width, freq_dim=64, ffn_dim=4 * heads * head_dim,
        num_layers=layers, cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=64,
    )


def build_vae(base_dim: int = 48, latent_channels: int = LATENT_CHANNELS) -> AutoencoderKLWan:
    """Wan's VAE (the 2.2 variant with a pixel patchify) at 4x in space and none in time, frame by frame.

    A 4x4 patchify (48 channels) feeds one resolution level of Wan's causal blocks, and the latents
    keep ``latent_channels`` of those 48 numbers' worth: little to learn, where the 8x-compressing
    shape did not learn in 400 CPU steps. Objects need more: 3,000 steps with their pixels
    weighted (``toyworld/train_v2.py``) return their shapes, 400 unweighted steps blurred them.
    16 channels make a 2x2 token 64 numbers, half the transformer's width; the 48 of the first v2 models made it
    192, more than the width carries (``docs/toyworld.md``). See :func:`frame_by_frame` for the
    time axis.
    """
    return frame_by_frame(AutoencoderKLWan(
        base_dim=base_dim, z_dim=latent_channels, dim_mult=[1], num_res_blocks=1, temperal_downsample=[],
        in_channels=48, out_channels=48, patch_size=4, scale_factor_spatial=4, scale_factor_temporal=1,
        latents_mean=[0.0] * latent_channels, latents_std=[1.0] * latent_channels,
    ))


def frame_by_frame(vae: AutoencoderKLWan) -> AutoencoderKLWan:
    """Zero the taps of every causal convolution that reach back to earlier frames.

    The VAE then codes each frame on its own (its norms, attention and resampling are already
    per frame), so it can be trained on single images, several times cheaper than on clips, and
    all motion is left to the transformer, whose 3D RoPE sees frame order. Trained on images, the
    zeroed taps only ever meet the causal zero padding, get no gradient and stay zero.
    """
    import torch
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d

    with torch.no_grad():
        for module in vae.modules():
            if isinstance(module, WanCausalConv3d) and module.weight.shape[2] > 1:
                module.weight[:, :, :-1] = 0
    return vae


def build_scheduler() -> UniPCMultistepScheduler:
    return UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=2.0,
                                   num_train_timesteps=1000)


WIDTH, TINY_WIDTH = 128, 24  # the transformer's width: the model's, and the unit tests'
HEADS, TINY_HEADS = 4, 2


def split_heads(heads: int | None = None, *, tiny: bool = False) -> tuple[int, int]:
    """``(heads, head_dim)`` for the transformer's width split into ``heads`` attention heads.

    The width, and so every weight's shape, stays the same whatever the split; what changes is
    3D RoPE, which divides each head's channels between time, height and width: a wider head gives
    each axis more rotation frequencies. Wan's RoPE needs an even head width of at least 6.
    ``None`` is the model's own split (4 heads of 32; tiny: 2 of 12).
    """
    width = TINY_WIDTH if tiny else WIDTH
    heads = (TINY_HEADS if tiny else HEADS) if heads is None else heads
    valid = [h for h in range(1, width + 1) if width % h == 0 and (width // h) % 2 == 0 and width // h >= 6]
    if heads not in valid:
        raise ValueError(f"{heads} attention heads do not split the width of {width} into heads Wan's 3D RoPE can "
                         f"use (an even head width of at least 6); choose one of {', '.join(map(str, valid))}")
    return heads, width // heads


def build_pipeline(seed: int = 0, *, tiny: bool = False, latent_channels: int = LATENT_CHANNELS,
                   heads: int | None = None) -> WanPipeline:
    """Freshly initialised components; ``tiny`` shrinks them for unit tests (same structure).
    ``heads`` splits the transformer's width otherwise (:func:`split_heads`)."""
    import torch

    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    width = 16 if tiny else 64
    heads, head_dim = split_heads(heads, tiny=tiny)
    return WanPipeline(
        tokenizer=tokenizer, text_encoder=build_text_encoder(len(tokenizer) + 1, width=width, layers=1 if tiny else 2),
        transformer=build_transformer(layers=2 if tiny else 6, heads=heads, head_dim=head_dim, text_width=width,
                                      latent_channels=latent_channels),
        vae=build_vae(base_dim=8 if tiny else 48, latent_channels=latent_channels), scheduler=build_scheduler(),
    )


def save_pipeline(pipe: WanPipeline, folder: str | Path, *, spec: VideoSpec = SPEC) -> Path:
    folder = Path(folder)
    pipe.save_pretrained(folder)
    write_video_spec(folder, spec)
    return folder
