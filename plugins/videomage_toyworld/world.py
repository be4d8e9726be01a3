"""The toy world: captioned clips and stills of coloured shapes, with their ground truth.

A clip is a plain-coloured scene with one or two objects moving along straight lines. Every clip
is drawn from a ``numpy.random.Generator``, so a seed reproduces it exactly, and it carries its
ground truth (object centres and masks per frame) for the weight-free metrics.

Sizes are given for 64x64; other sizes scale positions, radii and speeds proportionally.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np
import torch

from videomage_toyworld.render import PATTERNS, paint, pattern_index, shape_masks
from videomage_toyworld.vocabulary import (
    DIRECTIONS,
    PALETTE,
    SCENES,
    SHAPES,
    SPEEDS,
    rgb,
    visible,
)

#: Per-channel colour jitter, so the model learns colour *names*, not eight exact RGB values.
JITTER = 0.04
#: Share of training objects painted in a two-colour pattern (stripes or a checker) of palette
#: colours. Their captions name the shape only ("a circle"), so the class words that subject
#: learning starts from can mean a patterned object; the cases' colours stay unseen.
PATTERNED = 0.25
#: A moving object starts within this fraction of the room its travel leaves, on the side it
#: leaves from, so which half of the frame it fills early and late depends on its direction.
START_ROOM = 0.4


@attrs.frozen(kw_only=True, eq=False)
class Actor:
    """One object: its look and its path (centres ``[F, 2]``, x then y, in pixels)."""

    shape: str
    colours: tuple[str, ...]  # one name for "plain", two for a pattern
    path: np.ndarray
    radius: float
    pattern: str = "plain"
    direction: str | None = None  # None: static or not a straight line
    speed: str | None = None


@attrs.frozen(kw_only=True, eq=False)
class Clip:
    """A rendered clip (a still is a one-frame clip) with its caption and ground truth."""

    frames: np.ndarray  # [F, 3, H, W] float32 in [0, 1]
    caption: str
    scene: str
    actors: tuple[Actor, ...]
    centres: np.ndarray  # [N, F, 2] (x, y) per actor per frame
    masks: np.ndarray  # [N, F, H, W] bool, visible pixels of each actor (later actors occlude)
    background: np.ndarray  # [3] the scene colour actually used

    def video(self) -> torch.Tensor:
        """The frames as a torch tensor ``[F, 3, H, W]``."""
        return torch.from_numpy(self.frames)


def render(
    actors: Sequence[Actor], scene: str, *, size: int = 64, rng: np.random.Generator | None = None, caption: str = ""
) -> Clip:
    """Draw ``actors`` on ``scene`` (later actors in front). ``rng`` jitters colours when given."""
    frames_n = actors[0].path.shape[0] if actors else 1

    def jitter(colour: np.ndarray) -> np.ndarray:
        if rng is None:
            return colour
        return np.clip(colour + rng.uniform(-JITTER, JITTER, 3).astype(np.float32), 0, 1)

    background = jitter(rgb(scene))
    frames = np.empty((frames_n, 3, size, size), dtype=np.float32)
    frames[:] = background[None, :, None, None]
    masks = np.zeros((len(actors), frames_n, size, size), dtype=bool)
    for i, actor in enumerate(actors):
        mask = shape_masks(actor.shape, actor.path, actor.radius, size, size)
        colours = np.stack([jitter(rgb(c)) for c in actor.colours])
        paint(frames, mask, colours, pattern_index(actor.pattern, actor.path, actor.radius, size, size))
        masks[:i] &= ~mask[None]  # an actor in front hides those behind it
        masks[i] = mask
    centres = np.stack([a.path for a in actors]) if actors else np.zeros((0, frames_n, 2), np.float32)
    return Clip(frames=frames, caption=caption, scene=scene, actors=tuple(actors), centres=centres,
                masks=masks, background=background)


def linear_path(
    rng: np.random.Generator, *, frames: int, size: int, radius: float, direction: str | None, step: float,
    band: tuple[float, float] = (0.0, 1.0), start_room: float = START_ROOM,
) -> np.ndarray:
    """A straight path that keeps the whole object inside the frame.

    ``step`` is pixels per frame; ``band`` restricts the coordinate *across* the motion (as
    fractions of the frame) so two objects can share a frame without overlapping;
    ``start_room`` is how much of the room left by the travel the start may use, counted from
    the edge the object moves away from (1: anywhere the path fits).
    """
    dx, dy = DIRECTIONS[direction] if direction else (0.0, 0.0)
    travel = step * (frames - 1)
    lo, hi = radius + 1, size - radius - 1
    # Along the motion the start leaves room for the travel; across it the object sits in its band.
    along = lo + rng.uniform(0.0, start_room) * max(0.0, hi - travel - lo)
    across_lo, across_hi = max(lo, band[0] * size + radius), min(hi, band[1] * size - radius)
    across = rng.uniform(across_lo, max(across_lo, across_hi))
    t = np.arange(frames, dtype=np.float32) * step
    if dx != 0:  # horizontal: x travels, y is fixed
        x = along + t if dx > 0 else (size - along) - t
        y = np.full(frames, across, np.float32)
    elif dy != 0:
        y = along + t if dy > 0 else (size - along) - t
        x = np.full(frames, across, np.float32)
    else:  # static: anywhere in the band, bands split the frame vertically
        x = np.full(frames, rng.uniform(lo, hi), np.float32)
        y = np.full(frames, across, np.float32)
    return np.stack([x, y], axis=1).astype(np.float32)


def caption(actors: Sequence[Actor], scene: str | None, *, still: bool, motion: bool = True) -> str:
    """The canonical caption, e.g. ``"a red circle moving left quickly in the snow"``.

    ``scene=None`` leaves the background out; ``motion=False`` leaves the motion phrase out
    (the clip may still move: such captions teach the model that unspecified means "any").
    An actor whose ``colours`` is empty is named by its shape only.
    """

    def noun(a: Actor) -> str:
        words = [*a.colours[:1], a.shape]
        article = "an" if words[0][0] in "aeiou" else "a"
        return " ".join([article, *words])

    subject = " and ".join(noun(a) for a in actors)
    moving = actors[0].direction is not None
    parts: list[str]
    if still:
        parts = [subject]
    elif motion and moving:
        parts = [subject, "moving", actors[0].direction or ""]
        if actors[0].speed:
            parts.append(actors[0].speed)
    elif motion:
        parts = ["a static video of", subject]
    else:
        parts = [subject]
    if scene:
        parts.append(scene)
    return " ".join(parts)


def random_clip(rng: np.random.Generator, *, size: int = 64, frames: int = 8, still: bool | None = None) -> Clip:
    """One random captioned sample of the base model's training distribution.

    Mixture: 30% stills (one frame), otherwise clips of which 80% show one object, 20% two;
    75% of clips move in one of four directions at one of two speeds, the rest are static.
    A quarter of the objects (:data:`PATTERNED`) wear stripes or a checker in two palette colours
    and are captioned by their shape alone. Caption parts are dropped at random (colour 10%,
    scene 15%, speed 30%, motion 10%) so that partial prompts such as "a square" mean "any
    square", as prior preservation needs.
    """
    scale = size / 64
    if still is None:
        still = bool(rng.random() < 0.3)
    n_frames = 1 if still else frames
    scene = str(rng.choice(list(SCENES)))
    n_actors = 1 if still or rng.random() < 0.8 else 2
    moving = (not still) and bool(rng.random() < 0.75)
    direction = str(rng.choice(list(DIRECTIONS))) if moving else None
    speed = str(rng.choice(list(SPEEDS))) if moving else None
    step = SPEEDS[speed] * scale * rng.uniform(0.85, 1.15) if speed else 0.0
    colours = [c for c in PALETTE if visible(c, scene)]
    picked = rng.choice(len(colours), size=n_actors, replace=False)
    bands = [(0.0, 1.0)] if n_actors == 1 else [(0.0, 0.5), (0.5, 1.0)]
    if n_actors == 2 and rng.random() < 0.5:
        bands = bands[::-1]
    actors = []
    for i in range(n_actors):
        radius = rng.uniform(6.0, 10.0) * scale if n_actors == 1 else rng.uniform(5.0, 7.5) * scale
        path = linear_path(rng, frames=n_frames, size=size, radius=radius, direction=direction, step=step, band=bands[i])
        look: tuple[str, ...] = (colours[picked[i]],)
        pattern = "plain"
        if rng.random() < PATTERNED:
            others = [c for c in colours if c != look[0]]
            look = (look[0], others[int(rng.integers(len(others)))])
            pattern = str(rng.choice(PATTERNS[1:]))
        actors.append(Actor(shape=str(rng.choice(SHAPES)), colours=look, path=path, radius=radius,
                            pattern=pattern, direction=direction, speed=speed))
    # A patterned object is named by its shape: colour words mean plain objects of that colour.
    named = [a if a.pattern == "plain" and rng.random() >= 0.1 else attrs.evolve(a, colours=()) for a in actors]
    shown_speed = [attrs.evolve(a, speed=None) if rng.random() < 0.3 else a for a in named]
    text = caption(
        shown_speed,
        scene if rng.random() >= 0.15 else None,
        still=still,
        motion=bool(rng.random() >= 0.1),
    )
    return render(actors, scene, size=size, rng=rng, caption=text)


def batch(rng: np.random.Generator, n: int, *, size: int = 64, frames: int = 8, still: bool = False) -> dict[str, Any]:
    """``n`` random samples stacked for training: ``video`` ``[n, F, 3, H, W]`` and ``captions``."""
    clips = [random_clip(rng, size=size, frames=frames, still=still) for _ in range(n)]
    return {"video": torch.from_numpy(np.stack([c.frames for c in clips])), "captions": [c.caption for c in clips]}


def autoencoder_frames(rng: np.random.Generator, n: int, *, size: int = 64) -> torch.Tensor:
    """``n`` frames ``[n, 3, H, W]`` of *any* colours and patterns, for training the VAE.

    The VAE must also reproduce what the base model never sees (the novel colours and
    two-colour patterns of the customisation cases), or subject learning could not recover
    them through it. So these frames draw backgrounds and objects from the whole RGB cube,
    with plain, striped and checkered objects, one to three per frame.
    """
    out = np.empty((n, 3, size, size), dtype=np.float32)
    for i in range(n):
        out[i] = rng.uniform(0, 1, 3).astype(np.float32)[:, None, None]
        for _ in range(int(rng.integers(1, 4))):
            radius = float(rng.uniform(4, 12) * size / 64)
            centre = rng.uniform(radius, size - radius, (1, 2)).astype(np.float32)
            shape = str(rng.choice(SHAPES))
            pattern = str(rng.choice(PATTERNS))
            colours = rng.uniform(0, 1, (2, 3)).astype(np.float32)
            paint(out[i : i + 1], shape_masks(shape, centre, radius, size, size), colours,
                  pattern_index(pattern, centre, radius, size, size))
    return torch.from_numpy(out)
