"""Tiny random Wan 2.1 models, built from configs and saved in the diffusers layout."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from videomage.loading import load_backbone
from videomage_wan.tiny import save_tiny_wan


@pytest.fixture(scope="session")
def wan_dir(tmp_path_factory) -> Path:
    return save_tiny_wan(tmp_path_factory.mktemp("tiny-wan"))


@pytest.fixture
def backbone(wan_dir):
    """A fresh tiny Wan backbone per test, loaded by path through detection."""
    return load_backbone(str(wan_dir))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Run these tests' tiny tensors on one thread (restored afterwards).

    A tiny model's operations are microseconds long; splitting each across threads costs more
    than it saves, and on a busy CI machine it can make a forward pass fifty times slower.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
