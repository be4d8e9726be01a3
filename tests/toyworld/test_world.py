"""The world generator: deterministic, captioned, ground truth that matches the pixels."""

from __future__ import annotations

import numpy as np
from videomage_toyworld import world
from videomage_toyworld.vocabulary import PALETTE, SCENES, rgb, visible


def test_same_seed_same_clip_and_different_seed_different_clip():
    a = world.random_clip(np.random.default_rng(7), still=False)
    b = world.random_clip(np.random.default_rng(7), still=False)
    c = world.random_clip(np.random.default_rng(8), still=False)
    assert a.caption == b.caption and np.array_equal(a.frames, b.frames)
    assert not np.array_equal(a.frames, c.frames)


def test_masks_are_the_pixels_of_the_actor_colour():
    rng = np.random.default_rng(1)
    for _ in range(20):
        clip = world.random_clip(rng, still=False)
        for actor, mask in zip(clip.actors, clip.masks):
            assert mask.any(axis=(1, 2)).all(), "an actor is drawn in every frame"
            pixels = np.moveaxis(clip.frames, 1, -1)[mask]
            assert np.abs(pixels - rgb(actor.colours[0])).max() <= world.JITTER + 1e-6


def test_moving_clips_move_the_captioned_way():
    rng = np.random.default_rng(2)
    checked = 0
    for _ in range(60):
        clip = world.random_clip(rng, still=False)
        direction = clip.actors[0].direction
        if direction and "moving" in clip.caption:
            assert f"moving {direction}" in clip.caption
            dx, dy = clip.centres[0, -1] - clip.centres[0, 0]
            assert {"left": -dx, "right": dx, "up": -dy, "down": dy}[direction] > 5
            checked += 1
    assert checked > 10


def test_objects_stay_inside_the_frame_and_are_visible_on_their_scene():
    rng = np.random.default_rng(3)
    for _ in range(40):
        clip = world.random_clip(rng, still=False)
        for actor in clip.actors:
            assert (actor.path >= actor.radius).all() and (actor.path <= 64 - actor.radius).all()
            assert visible(actor.colours[0], clip.scene)


def test_batch_shapes_and_vocabulary():
    data = world.batch(np.random.default_rng(0), 3, size=32, frames=4)
    assert data["video"].shape == (3, 4, 3, 32, 32)
    assert all(isinstance(c, str) for c in data["captions"])
    assert set(PALETTE).isdisjoint(SCENES)


def test_autoencoder_frames_cover_colours_outside_the_palette():
    frames = world.autoencoder_frames(np.random.default_rng(0), 16, size=32)
    assert frames.shape == (16, 3, 32, 32) and 0 <= float(frames.min()) and float(frames.max()) <= 1
    palette = np.asarray(list(PALETTE.values()) + list(SCENES.values()))
    pixels = frames.permute(0, 2, 3, 1).reshape(-1, 3).numpy()
    far = np.linalg.norm(pixels[:, None] - palette[None], axis=2).min(axis=1) > 0.2
    assert far.mean() > 0.3


def test_unknown_names_are_clear_errors():
    import pytest
    from videomage_toyworld.render import shape_masks

    from videomage.errors import ConfigError

    with pytest.raises(ConfigError, match="valid shapes: circle, square, triangle"):
        shape_masks("hexagon", np.zeros((1, 2), np.float32), 3.0, 8, 8)
    with pytest.raises(ConfigError, match="unknown colour or scene 'teal'"):
        rgb("teal")
