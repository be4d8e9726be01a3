"""Tiny random ZeroScope models in the diffusers layout, built from configs (nothing is downloaded).

[`save_tiny_zeroscope`][videomage_zeroscope.tiny.save_tiny_zeroscope] writes a folder shaped
exactly like ``cerspense/zeroscope_v2_576w`` (``model_index.json``, ``unet/``, ``vae/``,
``text_encoder/``, ``tokenizer/``, ``scheduler/``) whose components have the real classes and
ZeroScope's structure, only a few channels wide:

* ``UNet3DConditionModel``: cross-attention down and up blocks around plain ones at the
  coarsest level, as in ZeroScope, 8 and 16 channels, a temporal transformer at every level;
* ``AutoencoderKL``: two blocks (2x down-sampling), 4 latent channels, ZeroScope's scaling factor;
* ``CLIPTextModel``: one layer, width 32, 32 positions;
* a CLIP byte-pair tokenizer whose merges spell each word of :data:`WORDS` as one token, every
  printable ASCII character kept so that any other text still tokenizes;
* ZeroScope's scheduler settings (DDIM, scaled-linear betas, epsilon prediction).

The native size is 32x48 (not square, so code that swaps height and width fails), 4 frames;
the latents are ``[B, 4, 4, 16, 24]`` and a forward pass takes milliseconds on a CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import diffusers
from diffusers import AutoencoderKL, DDIMScheduler, UNet3DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from videomage import ConfigError, VideoSpec
from videomage.kit import write_video_spec

#: Words the tiny tokenizer keeps whole (others fall back to characters).
WORDS = (
    "a an the of and in on at with is to "
    "video photo static clip scene snow beach park "
    "toy dog cat person horse car ball red green blue "
    "riding running walking jumping playing"
).split()

TINY_SPEC = VideoSpec(height=32, width=48, frames=4, fps=8)
TEXT_LENGTH = 32
BOS, EOS = "<|startoftext|>", "<|endoftext|>"

#: ZeroScope's ``scheduler/scheduler_config.json``, less the bookkeeping keys.
SCHEDULER_CONFIG = {
    "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "clip_sample": False, "set_alpha_to_one": False, "steps_offset": 1, "prediction_type": "epsilon",
}


def word_merges(words: list[str]) -> list[tuple[str, str]]:
    """BPE merges that build each word left to right: ``("t", "o")``, ``("to", "y</w>")``, ...

    CLIP marks a word's last character with ``</w>``. BPE applies the lowest-ranked merge first,
    so longer words take the lower ranks: a short word's merge (``("t", "o</w>")`` of "to") then
    never fires inside a longer one ("photo") before that word's own prefix merges.
    :func:`build_tokenizer` checks that every word came out whole.
    """
    merges: dict[tuple[str, str], None] = {}
    for word in sorted(words, key=len, reverse=True):
        pieces = [*word[:-1], word[-1] + "</w>"]
        prefix = pieces[0]
        for piece in pieces[1:]:
            merges[(prefix, piece)] = None
            prefix += piece
    return list(merges)


def build_tokenizer(folder: str | Path) -> CLIPTokenizer:
    """Write a small CLIP tokenizer into ``folder`` and return it loaded.

    Raises ``ConfigError`` if a word of :data:`WORDS` does not come out as one token.
    """
    merges = word_merges(WORDS)
    symbols = [s for code in range(33, 127) for s in (chr(code), chr(code) + "</w>")]  # CLIP's printable bytes
    vocab = {t: i for i, t in enumerate(dict.fromkeys([BOS, EOS, *symbols, *(a + b for a, b in merges)]))}
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=TEXT_LENGTH)
    if split := [w for w in WORDS if tokenizer.tokenize(w) != [w + "</w>"]]:
        raise ConfigError(f"tiny ZeroScope tokenizer: {split} did not come out whole; every word of WORDS must be "
                          f"one token (reorder or drop the words whose merges clash)")
    Path(folder).mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(folder)
    return tokenizer


def build_unet(text_width: int = 32) -> UNet3DConditionModel:
    return UNet3DConditionModel(
        sample_size=TINY_SPEC.height // 2, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"), up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4, cross_attention_dim=text_width,
        attention_head_dim=2,  # diffusers reads it as the number of heads in UNet3D
    )


def build_vae() -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 8), layers_per_block=1, latent_channels=4,
        norm_num_groups=4, sample_size=TINY_SPEC.height, scaling_factor=0.18215,
    )


def build_text_encoder(tokenizer: CLIPTokenizer, width: int = 32) -> CLIPTextModel:
    return CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=width, intermediate_size=2 * width, num_hidden_layers=1,
        num_attention_heads=2, max_position_embeddings=TEXT_LENGTH, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    ))


def save_tiny_zeroscope(folder: str | Path, seed: int = 0) -> Path:
    """Build a tiny random ZeroScope model and save it at ``folder`` in the diffusers layout."""
    import torch

    folder = Path(folder)
    torch.manual_seed(seed)
    tokenizer = build_tokenizer(folder / "tokenizer")
    parts = {"unet": build_unet(), "vae": build_vae(), "text_encoder": build_text_encoder(tokenizer),
             "scheduler": DDIMScheduler.from_config(SCHEDULER_CONFIG)}
    for name, part in parts.items():
        part.save_pretrained(folder / name)
    # What diffusers' TextToVideoSDPipeline.save_pretrained writes; the pipeline class itself is
    # deprecated in diffusers, so the index is written here.
    index = {"_class_name": "TextToVideoSDPipeline", "_diffusers_version": diffusers.__version__,
             "tokenizer": ["transformers", "CLIPTokenizer"]}
    index.update({name: [type(part).__module__.split(".")[0], type(part).__name__] for name, part in parts.items()})
    (folder / "model_index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    write_video_spec(folder, TINY_SPEC)
    return folder
