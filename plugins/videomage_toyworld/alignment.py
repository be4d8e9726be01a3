"""Reading a v2 clip against its prompt: colour, shape, background and direction, each right or wrong.

v2's actors are textured (a colour and a darker shade of it, :mod:`~videomage_toyworld.world2`),
so a colour is named by the *pair* of tones that explains the object's pixels best, among the
palette and the novel colours; the object is the largest blob of pixels far from the border
colour; its shape is the template that best fits that blob in most frames; its direction is how
its centroid travels between the first and the last frame. A part the prompt does not name is
not scored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from videomage_toyworld import analysis as an
from videomage_toyworld.metrics import parse_prompt
from videomage_toyworld.vocabulary import NOVEL_COLOURS, PALETTE
from videomage_toyworld.world2 import FAMILIES, SHADE

PARTS = ("colour", "shape", "background", "direction")
COLOURS = {**PALETTE, **NOVEL_COLOURS}


def parse(prompt: str) -> dict[str, Any]:
    """``nouns`` [(colour or None, shape)], ``scene``, ``direction`` (after a v2 motion verb) of a prompt."""
    return parse_prompt(prompt, colours=COLOURS, verbs=tuple(FAMILIES.values()))


def object_masks(video) -> np.ndarray:
    """``[F, H, W]``: each frame's largest blob of pixels that differ from the border colour."""
    return np.stack([an.largest_component(m) for m in an.foreground(video)])


def textured_colour(video, masks: np.ndarray) -> str | None:
    """The colour whose two tones (itself and its shade) lie nearest the masked pixels, on average."""
    v = an.as_array(video)
    pixels = np.moveaxis(v, 1, -1)[masks]
    if len(pixels) == 0:
        return None
    names = list(COLOURS)
    tones = np.asarray([COLOURS[n] for n in names], dtype=np.float32)
    light = np.linalg.norm(pixels[:, None] - tones[None], axis=2)
    dark = np.linalg.norm(pixels[:, None] - SHADE * tones[None], axis=2)
    return names[int(np.minimum(light, dark).mean(axis=0).argmin())]


def score(video, prompt: str) -> dict[str, float]:
    """1.0 or 0.0 for each part of :data:`PARTS` the prompt names, for single-object prompts (the
    object is the largest blob; with two objects only ``background`` is meaningful)."""
    v = an.as_array(video)
    parsed = parse(prompt)
    masks = object_masks(v)
    out: dict[str, float] = {}
    if parsed["nouns"]:
        colour, shape = parsed["nouns"][0]
        if colour:
            out["colour"] = float(textured_colour(v, masks) == colour)
        out["shape"] = float(an.majority([an.shape_of(m) for m in masks]) == shape)
    if parsed["scene"]:
        out["background"] = float(an.scene_name(v) == parsed["scene"])
    if parsed["direction"]:
        out["direction"] = float(an.direction_of(an.centroids(masks)) == parsed["direction"])
    return out


def summary(scores: list[Mapping[str, float]]) -> dict[str, float]:
    """Per part, the share of samples right; ``all``: the share with every named part right."""
    out = {p: float(np.mean([s[p] for s in scores if p in s])) for p in PARTS if any(p in s for s in scores)}
    out["all"] = float(np.mean([all(v == 1.0 for v in s.values()) for s in scores])) if scores else 0.0
    out["n"] = float(len(scores))
    return out
