"""Tiny Wan and ZeroScope models for the interop tests (helpers: ``interop_helpers``)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def wan_dir(tmp_path_factory) -> Path:
    from videomage_wan.tiny import save_tiny_wan

    return save_tiny_wan(tmp_path_factory.mktemp("tiny-wan"))


@pytest.fixture(scope="session")
def zs_dir(tiny_model_dir) -> Path:
    return tiny_model_dir
