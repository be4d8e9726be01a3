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


def test_masks_are_the_pixels_of_the_actor_colours():
    rng = np.random.default_rng(1)
    patterned = 0
    for _ in range(40):
        clip = world.random_clip(rng, still=False)
        for actor, mask in zip(clip.actors, clip.masks):
            assert mask.any(axis=(1, 2)).all(), "an actor is drawn in every frame"
            pixels = np.moveaxis(clip.frames, 1, -1)[mask]
            error = np.stack([np.abs(pixels - rgb(c)).max(axis=1) for c in actor.colours])  # [colours, pixels]
            assert (error.min(axis=0) <= world.JITTER + 1e-6).all()
            if actor.pattern != "plain":
                patterned += 1
                assert len(actor.colours) == 2 and actor.colours[0] != actor.colours[1]
                share = (error.argmin(axis=0) == 0).mean()
                assert 0.2 < share < 0.8, "both colours of a pattern show"
    assert patterned > 3


def test_patterned_objects_are_named_by_their_shape_alone():
    rng = np.random.default_rng(4)
    seen = 0
    for _ in range(200):
        clip = world.random_clip(rng)
        if len(clip.actors) == 1 and clip.actors[0].pattern != "plain" and clip.caption:
            seen += 1
            assert not set(clip.caption.split()) & set(PALETTE), clip.caption
            assert clip.actors[0].shape in clip.caption.split()
    assert seen > 20


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
            assert all(visible(c, clip.scene) for c in actor.colours)


def test_a_moving_object_starts_on_the_side_it_leaves():
    rng = np.random.default_rng(5)
    for direction, (axis, sign) in {"right": (0, 1), "left": (0, -1), "down": (1, 1), "up": (1, -1)}.items():
        for _ in range(20):
            path = world.linear_path(rng, frames=8, size=64, radius=8, direction=direction, step=1.5)
            start = path[0, axis] if sign > 0 else 64 - path[0, axis]
            assert start <= 9 + world.START_ROOM * (64 - 18 - 10.5) + 1e-4
            assert np.sign(path[-1, axis] - path[0, axis]) == sign


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
