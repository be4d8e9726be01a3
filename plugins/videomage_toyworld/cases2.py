"""Toy world v2's customisation cases: the v1 subjects and a held-out interaction, ``chasing``.

- The **subjects** are v1's (:data:`videomage_toyworld.cases.SUBJECTS`): ``<pet>``, a circle in
  a pink and brown checker, and ``<toy>``, a square in orange and cyan stripes. v2's base model
  never saw those colours, nor any two-colour pattern other than a colour and its own shade.
- The **motion** is one 9-frame clip of a green circle *chasing* a blue square to the right
  along a shallow arc in the desert, both textured as v2's actors are. v2 trains on single
  actors and on orbits, never on two actors moving together, and never on the word
  ``chasing``, so a chase comes from the motion LoRA.

The target prompt: ``"<pet> is chasing <toy> in the snow"``. A subject learns from the prompt
``"a <pet>"`` (:data:`PROMPT_TEMPLATE`) and its prior videos are sampled from ``"a circle"``: the
v2 model's T5 tokenizer is case-sensitive and every caption it trained on is lowercase, so the
library's default ``"A {token}"`` would spell ``"\u2581"`` and ``"A"``, two pieces it never trained.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from videomage_toyworld.cases import SUBJECTS, subject_stills, write_subject_stills
from videomage_toyworld.vocabulary import rgb
from videomage_toyworld.world import Actor, Clip
from videomage_toyworld.world2 import FRAMES, HELD_OUT_MOTION, _render_textured

__all__ = ["SUBJECTS", "subject_stills", "PROMPT_TEMPLATE", "MOTION_PROMPT", "MOTION_ENTITIES", "TARGET_PROMPT", "REFERENCE_COLOURS",
           "motion_clip", "write_case_files"]

#: The subject stage's prompt (and, with the class word, its prior videos' prompt).
PROMPT_TEMPLATE = "a {token}"
MOTION_PROMPT = f"a circle is {HELD_OUT_MOTION} a square"
MOTION_ENTITIES = ("circle", "square")
MOTION_SCENE = "in the desert"
REFERENCE_COLOURS = ("green", "blue")
TARGET_PROMPT = f"<pet> is {HELD_OUT_MOTION} <toy> in the snow"
#: The chaser runs this many pixels (at 64x64) behind the chased.
GAP = 18.0


def chase_paths(frames: int = FRAMES, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Centres ``[F, 2]`` of the chaser and the chased: rightwards along a shallow arc, a fixed gap apart."""
    scale = size / 64
    s = np.linspace(0.0, 1.0, frames, dtype=np.float32)
    lead_x = (30 + 26 * s) * scale
    lead = np.stack([lead_x, (36 - 10 * np.sin(np.pi * s)) * scale], axis=1)
    chaser_x = lead_x - GAP * scale
    chaser = np.stack([chaser_x, (36 - 10 * np.sin(np.pi * np.clip(s - 0.15, 0, 1))) * scale], axis=1)
    return chaser.astype(np.float32), lead.astype(np.float32)


def motion_clip(frames: int = FRAMES, *, size: int = 64, colours: tuple[str, str] = REFERENCE_COLOURS,
                scene: str = MOTION_SCENE, seed: int = 0) -> Clip:
    """The reference clip: a textured circle (first colour) chasing a textured square (second)."""
    scale = size / 64
    chaser_path, lead_path = chase_paths(frames, size)
    lead = Actor(shape="square", colours=(colours[1], colours[1]), path=lead_path, radius=7 * scale, pattern="stripes")
    chaser = Actor(shape="circle", colours=(colours[0], colours[0]), path=chaser_path, radius=6 * scale, pattern="checker")
    return _render_textured([lead, chaser], scene, size=size, rng=np.random.default_rng(seed), caption=MOTION_PROMPT)


def reference_colours() -> list[np.ndarray]:
    return [rgb(c) for c in REFERENCE_COLOURS]


def write_case_files(folder: str | Path, *, size: int = 64, frames: int = FRAMES, stills: int = 4) -> dict[str, Path]:
    """Each subject's stills (PNG) and the chase clip (mp4), as a user would supply them."""
    from videomage.kit import write_mp4

    paths = write_subject_stills(Path(folder), size=size, stills=stills)
    paths["motion"] = write_mp4(motion_clip(frames, size=size).video(), Path(folder) / "chase.mp4", fps=8)
    return paths
