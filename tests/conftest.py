"""Tiny ZeroScope-architecture models, built from configs and saved in the diffusers layout.

Nothing is downloaded: the UNet3D, VAE and CLIP text encoder are random, the tokenizer is the
toy world's locally built CLIP tokenizer. Two configs differ in depth and width so that code
which hard-codes module names of one of them fails on the other.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

# The fixtures third-party plugin suites use too (tiny_backbone_with_lora, tiny_choice, ...), and
# pytester, which runs the docs' contract-test example as a user's suite.
pytest_plugins = ["videomage.testing.fixtures", "pytester"]

# Tiny models gain nothing from intra-op threads, and on a shared 2-core machine the threads of
# one test fight those of other processes (a tiny forward took 4-8x longer with two threads).
torch.set_num_threads(1)

TINY_FRAMES = 4


def save_tiny_model(folder: Path, config, *, frames: int = TINY_FRAMES, seed: int = 0) -> Path:
    """Build a tiny model from ``config`` (a ``ToyModelConfig``) and save it at ``folder``."""
    from videomage_toyworld.model import build_components, save_model

    return save_model(build_components(config, folder / "tokenizer", seed=seed), folder, frames=frames)


def tiny_configs():
    from videomage_toyworld.model import ToyModelConfig

    base = ToyModelConfig.tiny()
    deeper = ToyModelConfig(unet_channels=(8, 16, 16), vae_channels=(16, 16), text_width=32, text_layers=1, heads=2,
                            norm_groups=4, image_size=32)
    return {"tiny": base, "deeper": deeper}


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny-model"), tiny_configs()["tiny"])


@pytest.fixture(scope="session", params=["tiny", "deeper"])
def any_tiny_model_dir(request, tmp_path_factory) -> Path:
    """Each tiny config in turn."""
    return save_tiny_model(tmp_path_factory.mktemp(f"model-{request.param}"), tiny_configs()[request.param])
