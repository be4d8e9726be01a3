"""Toy world v2: textured actors on several trajectory families, for the Wan-architecture base model.

What changed from v1 (:mod:`videomage_toyworld.world`) and why:

* every actor is *textured*: stripes or a checker of its colour and a darker shade of it, so a
  static video of an object carries more than one flat colour and "moving" differs from "static"
  in more than where one colour is (the negative-CFG loss needs that);
* motions come in families: straight lines, arcs and bounces (each with a net direction and a
  speed), and orbits of one actor around another; 9 frames (``1 + 4k``, what Wan's VAE takes);
* held out of training: the novel colours of :data:`~videomage_toyworld.vocabulary.NOVEL_COLOURS`
  (subjects' patterns) and the interaction ``chasing`` (one actor following another), which
  the customisation cases use.

A clip is drawn from a ``numpy.random.Generator``, so a seed reproduces it, and carries its
ground truth (:class:`~videomage_toyworld.world.Clip`). Sizes are for 64x64 and scale.
"""

from __future__ import annotations

import attrs
import numpy as np
import torch

from videomage_toyworld.render import PATTERNS, paint, pattern_index, shape_masks
from videomage_toyworld.vocabulary import DIRECTIONS, PALETTE, SCENES, SHAPES, SPEEDS, rgb
from videomage_toyworld.world import Actor, Clip, linear_path, render

FRAMES = 9
#: Texture patterns of v2 actors (every actor wears one).
TEXTURES = ("stripes", "checker")
#: The texture's second colour is the actor's colour times this: a darker shade of the same hue.
SHADE = 0.55
#: Motion families with a net direction, and the caption verb of each.
FAMILIES: dict[str, str] = {"line": "moving", "arc": "arcing", "bounce": "bouncing"}
#: The interaction the base model sees (two actors); ``chasing`` stays unseen.
ORBIT = "orbiting"
HELD_OUT_MOTION = "chasing"
#: Family mixture of moving single-actor clips, then the share of two-actor orbits and statics.
FAMILY_WEIGHTS = {"line": 0.5, "arc": 0.25, "bounce": 0.25}
ORBIT_SHARE = 0.15
STATIC_SHARE = 0.15
#: Contrast a colour *and its shade* need against the scene to be drawn there.
MIN_CONTRAST = 0.35
#: The largest ``layout`` amplitude: ramps of half of it either way keep every background pixel
#: within about 0.15 of its frame's border median, below the reader's foreground threshold (0.25).
MAX_LAYOUT = 0.2


def shade(colour: np.ndarray) -> np.ndarray:
    return (colour * SHADE).astype(np.float32)


def visible(colour: str, scene: str) -> bool:
    """Whether both tones of a textured ``colour`` stand out from ``scene``."""
    c, s = rgb(colour), rgb(scene)
    return bool(np.linalg.norm(c - s) >= MIN_CONTRAST and np.linalg.norm(shade(c) - s) >= MIN_CONTRAST)


def textured_mean(colour: np.ndarray) -> np.ndarray:
    """The mean colour of a textured actor of ``colour`` (both tones cover about half of it)."""
    return (colour + shade(colour)) / 2


def _fit(path: np.ndarray, radius: float, size: int) -> np.ndarray:
    lo, hi = radius + 1, size - radius - 1
    return np.clip(path, lo, hi).astype(np.float32)


def family_path(rng: np.random.Generator, family: str, *, frames: int, size: int, radius: float, direction: str,
                step: float) -> np.ndarray:
    """A path of ``family`` whose net displacement is ``step * (frames - 1)`` towards ``direction``.

    Arcs bulge sideways by half a sine period, bounces hop twice with ``|sin|`` (always upwards
    for left/right, sideways for up/down); the bulge's room is taken from the middle of the frame
    so the path stays inside it.
    """
    scale = size / 64
    base = linear_path(rng, frames=frames, size=size, radius=radius, direction=direction, step=step,
                       band=(0.3, 0.7) if family != "line" else (0.0, 1.0))
    if family == "line":
        return base
    dx, dy = DIRECTIONS[direction]
    s = np.linspace(0.0, 1.0, frames, dtype=np.float32)
    height = rng.uniform(8.0, 12.0) * scale
    if family == "arc":
        offset = height * np.sin(np.pi * s) * (1 if rng.random() < 0.5 else -1)
    else:
        offset = -height * np.abs(np.sin(2 * np.pi * s))
    perp = np.array([dy, dx], dtype=np.float32) if dx == 0 else np.array([0.0, 1.0], dtype=np.float32)
    return _fit(base + offset[:, None] * perp[None], radius, size)


def orbit_path(rng: np.random.Generator, *, frames: int, size: int, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """A static centre actor and an actor circling it (about 0.6 turns, either way round)."""
    scale = size / 64
    orbit = rng.uniform(15.0, 19.0) * scale
    lo, hi = orbit + radius + 1, size - orbit - radius - 1
    centre = rng.uniform(lo, max(lo, hi), 2).astype(np.float32)
    turns = rng.uniform(0.5, 0.7) * (1 if rng.random() < 0.5 else -1)
    angle = rng.uniform(0, 2 * np.pi) + 2 * np.pi * turns * np.linspace(0, 1, frames, dtype=np.float32)
    mover = centre[None] + orbit * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return np.repeat(centre[None], frames, axis=0), mover.astype(np.float32)


def _noun(colour: str | None, shape: str) -> str:
    words = [w for w in (colour, shape) if w]
    return ("an " if words[0][0] in "aeiou" else "a ") + " ".join(words)


@attrs.frozen(kw_only=True)
class Drops:
    """Chances that a caption part is left out (so partial prompts mean "any")."""

    colour: float = 0.1
    scene: float = 0.15
    speed: float = 0.3
    motion: float = 0.1


NO_DROPS = Drops(colour=0.0, scene=0.0, speed=0.0, motion=0.0)


def random_clip(rng: np.random.Generator, *, size: int = 64, frames: int = FRAMES, drops: Drops = Drops(),
                family: str | None = None, object_scale: float = 1.0, layout: float = 0.0) -> Clip:
    """One captioned sample of the v2 base model's training distribution.

    ``family`` forces a kind (``line``, ``arc``, ``bounce``, ``orbit`` or ``static``); by default
    they are mixed by :data:`FAMILY_WEIGHTS`, :data:`ORBIT_SHARE` and :data:`STATIC_SHARE`.
    ``object_scale`` multiplies every actor's size (the random draws stay the same, so scale 1 is
    the world itself): a world of larger objects, whose outline spans more of the denoiser's tokens.
    ``layout`` lays ramps of that amplitude over the background (:func:`lay_out`; 0, the world
    itself, keeps it one flat colour), after every random draw, so the clip is otherwise the same.
    """
    if not 0.25 <= object_scale <= 2.0:
        raise ValueError(f"object_scale must lie in [0.25, 2] (actors must fit a 64-pixel frame), got {object_scale}")
    if not 0.0 <= layout <= MAX_LAYOUT:
        raise ValueError(f"layout must lie in [0, {MAX_LAYOUT}] (the reader must still tell the background), "
                         f"got {layout}")
    scale = size / 64
    size_scale = scale * object_scale
    if family is None:
        u = rng.random()
        if u < ORBIT_SHARE:
            family = "orbit"
        elif u < ORBIT_SHARE + STATIC_SHARE:
            family = "static"
        else:
            family = str(rng.choice(list(FAMILY_WEIGHTS), p=list(FAMILY_WEIGHTS.values())))
    scene = str(rng.choice(list(SCENES)))
    colours = [c for c in PALETTE if visible(c, scene)]
    n = 2 if family == "orbit" else 1
    picked = [colours[i] for i in rng.choice(len(colours), size=n, replace=False)]
    shapes = [str(rng.choice(SHAPES)) for _ in range(n)]
    textures = [str(rng.choice(TEXTURES)) for _ in range(n)]
    direction = speed = None
    if family == "orbit":
        radius = [rng.uniform(5.0, 7.0) * size_scale for _ in range(n)]
        centre, mover = orbit_path(rng, frames=frames, size=size, radius=max(radius))
        paths = [mover, centre]
    elif family == "static":
        radius = [rng.uniform(6.0, 10.0) * size_scale]
        paths = [linear_path(rng, frames=frames, size=size, radius=radius[0], direction=None, step=0.0)]
    else:
        radius = [rng.uniform(6.0, 10.0) * size_scale]
        direction = str(rng.choice(list(DIRECTIONS)))
        if family == "bounce" and direction in ("up", "down"):
            direction = str(rng.choice(["left", "right"]))
        speed = str(rng.choice(list(SPEEDS)))
        # Nine frames span eight steps; v1's speeds were for seven, so they are scaled to keep the travel.
        step = SPEEDS[speed] * scale * rng.uniform(0.85, 1.15) * 7 / max(frames - 1, 1)
        paths = [family_path(rng, family, frames=frames, size=size, radius=radius[0], direction=direction, step=step)]
    actors = [Actor(shape=shapes[i], colours=(picked[i], picked[i]), path=paths[i], radius=radius[i],
                    pattern=textures[i], direction=direction, speed=speed) for i in range(n)]
    words = [_noun(None if rng.random() < drops.colour else picked[i], shapes[i]) for i in range(n)]
    if family == "orbit":
        text = f"{words[0]} {ORBIT} {words[1]}"
    elif family == "static":
        text = words[0] if rng.random() < drops.motion else f"a static video of {words[0]}"
    elif rng.random() < drops.motion:
        text = words[0]
    else:
        text = f"{words[0]} {FAMILIES[family]} {direction}"
        if rng.random() >= drops.speed:
            text += f" {speed}"
    if rng.random() >= drops.scene:
        text += f" {scene}"
    clip = _render_textured(actors, scene, size=size, rng=rng, caption=text)
    return lay_out(clip, layout) if layout else clip


def lay_out(clip: Clip, amplitude: float) -> Clip:
    """``clip`` with three ramps of ``amplitude`` (from ``-amplitude / 2`` to ``+amplitude / 2``)
    added to its background pixels, in place: red along the width, green down the height and blue
    over the frames (one frame: none), so each background pixel tells where and when it is.

    Wan's transformer has no absolute position: 3D RoPE gives attention the offsets between
    tokens only, and on a flat background, noise and a VAE that codes each frame alone, no token
    can tell the first frame from the last. A direction word ("moving left": the object starts
    near the right edge and ends further left) then changes how frames relate, not what any
    frame holds on average; with a layout it changes that too."""
    f, _, h, w = clip.frames.shape
    ramp = np.zeros((f, 3, h, w), dtype=np.float32)
    ramp[:, 0] += np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, None, :]
    ramp[:, 1] += np.linspace(-0.5, 0.5, h, dtype=np.float32)[None, :, None]
    if f > 1:
        ramp[:, 2] += np.linspace(-0.5, 0.5, f, dtype=np.float32)[:, None, None]
    background = ~clip.masks.any(0)[:, None]  # [F, 1, H, W]
    clip.frames[:] = np.where(background, np.clip(clip.frames + amplitude * ramp, 0.0, 1.0), clip.frames)
    return clip


def _render_textured(actors: list[Actor], scene: str, *, size: int, rng: np.random.Generator | None,
                     caption: str) -> Clip:
    """:func:`world.render` with the second tone of each actor set to a shade of its first."""
    clip = render(actors, scene, size=size, rng=rng, caption=caption)
    # render() painted both tones with the same (jittered) colour; darken the pattern's second
    # tone in place, inside each actor's visible mask, so the jitter stays shared.
    for i, actor in enumerate(actors):
        second = pattern_index(actor.pattern, actor.path, actor.radius, size, size).astype(bool) & clip.masks[i]
        clip.frames[:] = np.where(second[:, None], clip.frames * SHADE, clip.frames)
    return clip


def batch(rng: np.random.Generator, n: int, *, size: int = 64, frames: int = FRAMES, drops: Drops = Drops(),
          object_scale: float = 1.0, layout: float = 0.0) -> dict:
    """``n`` random clips stacked: ``video`` ``[n, F, 3, H, W]``, ``captions``, and ``masks`` ``[n, F, H, W]``
    (bool: the pixels any actor covers)."""
    clips = [random_clip(rng, size=size, frames=frames, drops=drops, object_scale=object_scale, layout=layout)
             for _ in range(n)]
    return {"video": torch.from_numpy(np.stack([c.frames for c in clips])), "captions": [c.caption for c in clips],
            "masks": torch.from_numpy(np.stack([c.masks.any(0) for c in clips]))}


def image_batch(rng: np.random.Generator, n: int, *, size: int = 64, drops: Drops = Drops(),
                object_scale: float = 1.0, layout: float = 0.0) -> dict:
    """``n`` captioned still images as one-frame clips, as :func:`batch` returns them (``video``
    ``[n, 1, 3, H, W]``, ``masks`` ``[n, 1, H, W]``): one actor at rest, captioned as a picture
    ("a red circle in the snow", never "a static video of"). Wan trains on images beside videos,
    and the subject stage learns from one-frame videos: a base model that never saw one would
    meet them first in a user's stills."""
    clips = [random_clip(rng, size=size, frames=1, drops=drops, family="static", object_scale=object_scale,
                         layout=layout) for _ in range(n)]
    captions = [c.caption.replace("a static video of ", "") for c in clips]
    return {"video": torch.from_numpy(np.stack([c.frames for c in clips])), "captions": captions,
            "masks": torch.from_numpy(np.stack([c.masks.any(0) for c in clips]))}


def autoencoder_clips(rng: np.random.Generator, n: int, *, size: int = 64, frames: int = 5) -> torch.Tensor:
    """``n`` short clips ``[n, F, 3, H, W]`` of *any* colours, for the VAE: half world clips, half
    random-colour objects moving on random backgrounds, so the VAE also reproduces the novel
    colours and patterns the base model never sees."""
    out = []
    for i in range(n):
        if i % 2 == 0:
            out.append(random_clip(rng, size=size, frames=frames).frames)
            continue
        clip = np.empty((frames, 3, size, size), dtype=np.float32)
        clip[:] = rng.uniform(0, 1, 3).astype(np.float32)[None, :, None, None]
        for _ in range(int(rng.integers(1, 3))):
            radius = float(rng.uniform(5, 11) * size / 64)
            start = rng.uniform(radius, size - radius, 2)
            velocity = rng.uniform(-4, 4, 2) * size / 64
            path = _fit(start[None] + velocity[None] * np.arange(frames)[:, None], radius, size)
            mask = shape_masks(str(rng.choice(SHAPES)), path, radius, size, size)
            index = pattern_index(str(rng.choice(PATTERNS)), path, radius, size, size)
            paint(clip, mask, rng.uniform(0, 1, (2, 3)).astype(np.float32), index)
        out.append(clip)
    return torch.from_numpy(np.stack(out))
