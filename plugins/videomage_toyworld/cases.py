"""The customisation cases: what the base model never saw, and what the method must learn.

- Two **subjects** of novel appearance, each given as a few stills: ``<toy>``, a square in
  orange and cyan vertical stripes, and ``<pet>``, a circle in a pink and brown checker. Their
  colours are outside the training palette: the base model saw stripes and checkers only in its
  six palette colours (captioned "a circle", "a square"), so an orange-and-cyan striped square
  or a pink-and-brown checkered circle in a sample comes from a subject LoRA.
- One **interaction motion**, given as one clip: a green circle *orbiting* a blue square in the
  desert. Training clips only ever move in straight lines, so an orbit comes from the motion
  LoRA; the actors' green and blue are what appearance leakage looks for.

The target prompt combines them: ``"<pet> is orbiting <toy> in the snow"``.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import numpy as np

from videomage_toyworld.vocabulary import SCENES
from videomage_toyworld.world import Actor, Clip, render


@attrs.frozen(kw_only=True)
class SubjectCase:
    """A novel subject: its token, class word and look."""

    token: str
    class_word: str
    shape: str
    colours: tuple[str, str]
    pattern: str


SUBJECTS = (
    SubjectCase(token="<pet>", class_word="circle", shape="circle", colours=("pink", "brown"), pattern="checker"),
    SubjectCase(token="<toy>", class_word="square", shape="square", colours=("orange", "cyan"), pattern="stripes"),
)
#: The motion clip's caption and the words naming its actors, orbiter first (matching SUBJECTS).
MOTION_PROMPT = "a circle is orbiting a square"
MOTION_ENTITIES = ("circle", "square")
MOTION_SCENE = "in the desert"
REFERENCE_COLOURS = ("green", "blue")
#: The target: the first subject orbits the second, on a scene the reference clip did not use.
TARGET_PROMPT = "<pet> is orbiting <toy> in the snow"


def subject_stills(case: SubjectCase, n: int = 4, *, size: int = 64, seed: int = 0) -> list[Clip]:
    """``n`` stills of a subject at varied places and sizes on varied scenes (never one it is invisible on)."""
    rng = np.random.default_rng(seed)
    scenes = [s for s in SCENES if s != "on the grass" or case.colours[0] != "green"]
    out = []
    for i in range(n):
        radius = float(rng.uniform(9, 13) * size / 64)
        centre = rng.uniform(radius + 2, size - radius - 2, (1, 2)).astype(np.float32)
        actor = Actor(shape=case.shape, colours=case.colours, path=centre, radius=radius, pattern=case.pattern)
        out.append(render([actor], scenes[i % len(scenes)], size=size, rng=rng, caption=f"a {case.token}"))
    return out


def orbit_paths(frames: int = 8, size: int = 64, *, orbit: float = 20.0, turns: float = 1.0, phase: float = 0.0):
    """Centres ``[F, 2]`` of the orbiter (counter-clockwise on screen) and of the resting hub."""
    scale = size / 64
    angle = phase + 2 * np.pi * turns * np.arange(frames) / frames
    hub = np.full((frames, 2), size / 2, dtype=np.float32)
    orbiter = hub + orbit * scale * np.stack([np.cos(angle), -np.sin(angle)], axis=1)
    return orbiter.astype(np.float32), hub


def motion_clip(frames: int = 8, *, size: int = 64, colours: tuple[str, str] = REFERENCE_COLOURS,
                scene: str = MOTION_SCENE, seed: int = 0) -> Clip:
    """The reference clip: an orbiting circle (first colour) around a resting square (second)."""
    scale = size / 64
    orbiter_path, hub_path = orbit_paths(frames, size)
    hub = Actor(shape="square", colours=(colours[1],), path=hub_path, radius=7 * scale)
    orbiter = Actor(shape="circle", colours=(colours[0],), path=orbiter_path, radius=6 * scale)
    return render([hub, orbiter], scene, size=size, rng=np.random.default_rng(seed), caption=MOTION_PROMPT)


def write_case_files(folder: str | Path, *, size: int = 64, frames: int = 8, stills: int = 4) -> dict[str, Path]:
    """Write each subject's stills (PNG) and the motion clip (mp4) as a user would supply them."""
    from videomage.kit import write_contact_sheet, write_mp4

    folder = Path(folder)
    paths: dict[str, Path] = {}
    for case in SUBJECTS:
        sub = folder / case.token.strip("<>")
        sub.mkdir(parents=True, exist_ok=True)
        for i, clip in enumerate(subject_stills(case, stills, size=size)):
            write_contact_sheet(clip.video(), sub / f"{i}.png", columns=1)  # one frame: a plain PNG
        paths[case.token] = sub
    paths["motion"] = write_mp4(motion_clip(frames, size=size).video(), folder / "orbit.mp4", fps=8)
    return paths
