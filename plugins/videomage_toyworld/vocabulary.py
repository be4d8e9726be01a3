"""The toy world's words: named colours, shapes, scenes and motions, and the caption grammar.

Everything that names something in the world lives here, so the renderer, the captioner, the
tokenizer and the metrics agree on one vocabulary. Colours are RGB triples in ``[0, 1]``.
"""

from __future__ import annotations

import numpy as np

from videomage import ConfigError

# Colours the base model is trained on. Kept few and far apart so that a 2-core CPU can teach a
# tiny model to tell them apart, and so that nearest-neighbour colour classification is reliable.
PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.12, 0.12),
    "green": (0.15, 0.75, 0.20),
    "blue": (0.15, 0.30, 0.90),
    "yellow": (0.95, 0.85, 0.10),
    "white": (0.97, 0.97, 0.97),
    "purple": (0.55, 0.20, 0.75),
}

# Colours the base model never sees: the customisation cases paint their novel subjects with
# these, so a subject's appearance can only come from its LoRA.
NOVEL_COLOURS: dict[str, tuple[float, float, float]] = {
    "orange": (1.00, 0.55, 0.10),
    "pink": (1.00, 0.55, 0.75),
    "cyan": (0.10, 0.85, 0.85),
    "brown": (0.45, 0.25, 0.10),
}

# Backgrounds ("scenes"): the caption phrase and its plain colour.
SCENES: dict[str, tuple[float, float, float]] = {
    "in the snow": (0.86, 0.90, 0.95),
    "on the grass": (0.30, 0.55, 0.22),
    "in the desert": (0.82, 0.70, 0.48),
    "at night": (0.06, 0.08, 0.28),
}

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")

# Unit vectors in image coordinates (x to the right, y downwards).
DIRECTIONS: dict[str, tuple[float, float]] = {
    "left": (-1.0, 0.0),
    "right": (1.0, 0.0),
    "up": (0.0, -1.0),
    "down": (0.0, 1.0),
}

# Pixels per frame at 64x64; scaled with the clip size. 8 frames at "fast" cross ~40% of the frame.
SPEEDS: dict[str, float] = {"slowly": 1.5, "quickly": 3.5}

# Interaction verbs the base model never sees in training; they are in the vocabulary so that
# prompts such as "<toy> is chasing <dog>" tokenize into whole words.
INTERACTIONS: tuple[str, ...] = ("chasing", "orbiting", "following", "riding", "around")

# Function words of the caption grammar (see world.caption()).
FUNCTION_WORDS: tuple[str, ...] = ("a", "an", "and", "is", "moving", "static", "video", "of", "photo", "the")

# A colour and a scene closer than this are never combined: a white circle in the snow is
# invisible, so its caption could not be followed or measured.
MIN_CONTRAST = 0.35


def rgb(name: str) -> np.ndarray:
    """The RGB triple of a palette, novel or scene colour name."""
    for table in (PALETTE, NOVEL_COLOURS, SCENES):
        if name in table:
            return np.asarray(table[name], dtype=np.float32)
    raise ConfigError(f"toy world: unknown colour or scene {name!r}; valid names: {sorted([*PALETTE, *NOVEL_COLOURS, *SCENES])}")


def visible(colour: str, scene: str) -> bool:
    """Whether ``colour`` stands out enough from ``scene`` to be drawn on it."""
    return float(np.linalg.norm(rgb(colour) - rgb(scene))) >= MIN_CONTRAST


def words() -> list[str]:
    """Every word of the world's vocabulary, in a stable order (the tokenizer's base vocabulary)."""
    out: list[str] = []
    phrases = [*PALETTE, *NOVEL_COLOURS, *SHAPES, *DIRECTIONS, *SPEEDS, *INTERACTIONS, *FUNCTION_WORDS]
    for scene in SCENES:
        phrases.extend(scene.split())
    for w in phrases:
        if w not in out:
            out.append(w)
    return out
