"""The built-in foreground mask source."""

from __future__ import annotations

import pytest
import torch

from videomage.errors import InputError
from videomage.testing import MaskSourceContract
from videomage_masks import ForegroundMask


def scene():
    video = torch.full((3, 3, 16, 16), 0.1)
    truth = torch.zeros(3, 16, 16)
    for f in range(3):
        video[f, :, 4:9, 2 + 3 * f : 7 + 3 * f] = torch.tensor([0.9, 0.2, 0.2])[:, None, None]
        truth[f, 4:9, 2 + 3 * f : 7 + 3 * f] = 1
    return video, truth


def test_recovers_the_subject_exactly_on_a_plain_background():
    video, truth = scene()
    masks = ForegroundMask().masks(video, subject="toy")
    assert torch.equal(masks, truth)


def test_empty_frame_gives_an_empty_mask():
    assert ForegroundMask().masks(torch.full((2, 3, 8, 8), 0.5), subject="toy").sum() == 0


def test_wrong_shape_is_a_clear_error():
    with pytest.raises(InputError, match=r"expected a video \[F, 3, H, W\]"):
        ForegroundMask().masks(torch.zeros(3, 8, 8), subject="toy")


class TestForegroundContract(MaskSourceContract):
    @pytest.fixture
    def component_class(self):
        return ForegroundMask

    @pytest.fixture
    def sample(self):
        return scene()[0], "toy"
