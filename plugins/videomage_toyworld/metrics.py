"""Weight-free metrics of the toy world, as metric plugins.

Each reads a generated video ``[F, 3, H, W]`` in ``[0, 1]`` with :mod:`~videomage_toyworld.analysis`
and scores it against its context. They stand in for the paper's CLIP-T (text alignment),
CLIP-I/DINO-I (subject fidelity) and CLIP temporal consistency, and add the two things the paper
argues qualitatively: motion fidelity and appearance leakage. Context keys:

- ``prompt``: the prompt, in the world's words (text alignment);
- ``subject_images``: one ``[N, 3, H, W]`` batch of stills per subject (subject fidelity, motion
  fidelity and leakage use their colours), or ``subject_colours``: one list of RGB per subject;
- ``reference_video`` and ``reference_colours`` (one RGB per actor, in the same order as the
  subjects that replace them): the motion reference (motion fidelity, leakage).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import numpy as np

from videomage import InputError, Metric
from videomage_toyworld import analysis as an
from videomage_toyworld.vocabulary import DIRECTIONS, PALETTE, SCENES, SHAPES, rgb


def _need(context: Mapping[str, Any], key: str, metric: str, what: str) -> Any:
    if key not in context or context[key] is None:
        raise InputError(
            f"metric {metric!r}: the context has no {key!r} ({what}); got keys {sorted(context)}. "
            f"Pass it in the context mapping given to compute()."
        )
    return context[key]


def subject_palettes(context: Mapping[str, Any], metric: str) -> list[np.ndarray]:
    """One ``[K, 3]`` colour table per subject: given, or the dominant colours of its stills."""
    if context.get("subject_colours") is not None:
        return [np.asarray(c, dtype=np.float32).reshape(-1, 3) for c in context["subject_colours"]]
    images = _need(context, "subject_images", metric, "one batch of stills per subject, or 'subject_colours'")
    return [an.dominant_colours(batch)[0] for batch in images]


def _subject_masks(video: np.ndarray, palettes: list[np.ndarray]) -> list[np.ndarray]:
    """``[F, H, W]`` per subject: pixels nearest one of its colours (among all subjects' colours)."""
    table = np.concatenate(palettes)
    masks = an.colour_masks(video, table)
    out, start = [], 0
    for palette in palettes:
        out.append(masks[start : start + len(palette)].any(axis=0))
        start += len(palette)
    return out


def parse_prompt(prompt: str) -> dict[str, Any]:
    """The world words of a prompt: ``nouns`` [(colour or None, shape)], ``scene``, ``direction``."""
    words = prompt.lower().replace(",", " ").split()
    nouns, colour = [], None
    for word in words:
        if word in PALETTE:
            colour = word
        elif word in SHAPES:
            nouns.append((colour, word))
            colour = None
    scene = next((s for s in SCENES if s in " ".join(words)), None)
    direction = next((words[i + 1] for i, w in enumerate(words[:-1]) if w == "moving" and words[i + 1] in DIRECTIONS), None)
    return {"nouns": nouns, "scene": scene, "direction": direction}


class TextAlignment(Metric):
    """Does the video show what the prompt says: colour, shape, background and direction?

    Each part the prompt mentions scores 1 or 0: *colour* when the named palette colour covers at
    least ``MIN_AREA`` of most frames; *shape* when that object's largest blob (the foreground's if
    the colour is missing, so each part is judged on its own), in most frames,
    best fits the named shape's template; *background* when the border colour is nearest the named
    scene; *direction* when the object's centroid travels the named way (by more than 6% of the
    frame). ``text_alignment`` is their mean, the toy analogue of CLIP-T.
    """

    name = "toy_text_alignment"

    def compute(self, video, context: Mapping[str, Any]) -> dict[str, float]:
        v = an.as_array(video)
        parsed = parse_prompt(str(_need(context, "prompt", self.name, "the prompt the video was generated from")))
        scores: dict[str, float] = {}
        object_masks = []
        for colour, shape in parsed["nouns"]:
            mask = an.foreground(v)
            if colour:
                coloured = an.colour_masks(v, [rgb(colour)])[0]
                present = (coloured.mean(axis=(1, 2)) >= an.MIN_AREA).mean() >= 0.5
                scores.setdefault("colour", []).append(float(present))
                # A wrong colour should cost the colour part only: judge shape and motion on the
                # coloured object when it is there, else on whatever stands out.
                mask = coloured if present else mask
            blobs = np.stack([an.largest_component(m) for m in mask])
            object_masks.append(blobs)
            scores.setdefault("shape", []).append(float(an.majority([an.shape_of(b) for b in blobs]) == shape))
        if parsed["scene"]:
            scores["background"] = [float(an.scene_name(v) == parsed["scene"])]
        if parsed["direction"]:
            mask = object_masks[0] if object_masks else an.foreground(v)
            scores["direction"] = [float(an.direction_of(an.centroids(mask)) == parsed["direction"])]
        out = {k: float(np.mean(vals)) for k, vals in scores.items()}
        out["text_alignment"] = float(np.mean(list(out.values()))) if out else 0.0
        return out


class SubjectFidelity(Metric):
    """Does each subject look like its stills: its colours in their proportions, and its shape?

    Per subject: *presence*, the fraction of frames where its colours cover ``MIN_AREA``;
    *pattern*, one minus the total-variation distance between its colour shares in the video
    and in the stills (a striped subject rendered plain loses half); *shape*, the fraction of
    present frames whose blob has the stills' shape. Its score is ``presence * (pattern + shape) / 2``;
    ``subject_fidelity`` averages subjects (the toy analogue of CLIP-I / DINO-I).
    """

    name = "toy_subject_fidelity"

    def compute(self, video, context: Mapping[str, Any]) -> dict[str, float]:
        v = an.as_array(video)
        images = _need(context, "subject_images", self.name, "one batch of stills [N, 3, H, W] per subject")
        refs = [an.dominant_colours(batch) for batch in images]
        palettes = [colours for colours, _ in refs]
        table = np.concatenate(palettes)
        masks = an.colour_masks(v, table)
        out: dict[str, float] = {}
        start = 0
        for i, ((colours, shares), batch) in enumerate(zip(refs, images)):
            own = masks[start : start + len(colours)]
            start += len(colours)
            union = own.any(axis=0)
            present = union.mean(axis=(1, 2)) >= an.MIN_AREA
            counts = own.sum(axis=(1, 2, 3)).astype(np.float64)
            video_shares = counts / counts.sum() if counts.sum() else np.zeros_like(counts)
            pattern = 1 - 0.5 * float(np.abs(video_shares - shares).sum())
            ref_shape = an.majority([an.shape_of(an.largest_component(m)) for m in an.foreground(batch)])
            shapes = [an.shape_of(an.largest_component(union[f])) for f in np.nonzero(present)[0]]
            shape = float(np.mean([s == ref_shape for s in shapes])) if shapes else 0.0
            out[f"subject_{i}"] = float(present.mean()) * (pattern + shape) / 2
        out["subject_fidelity"] = float(np.mean([out[f"subject_{i}"] for i in range(len(refs))]))
        return out


def _resample(path: np.ndarray, frames: int) -> np.ndarray:
    return path[np.linspace(0, len(path) - 1, frames).round().astype(int)]


class MotionFidelity(Metric):
    """Do the subjects move as the reference actors did, wherever they are and whatever they look like?

    Trajectories are per-subject centroids (by the subjects' colours) and per-actor centroids in
    the reference (by the actors' colours), resampled to a common frame count and normalised by
    removing each video's mean position, so only the relative motion counts. ``trajectory_error``
    is the mean distance between matching points, in frame widths (a subject missing from a frame
    counts 0.25 there); ``motion_fidelity = max(0, 1 - error / 0.25)``.
    """

    name = "toy_motion_fidelity"
    MISSING = 0.25

    def compute(self, video, context: Mapping[str, Any]) -> dict[str, float]:
        v = an.as_array(video)
        ref = an.as_array(_need(context, "reference_video", self.name, "the motion reference clip [F, 3, H, W]"))
        ref_colours = [np.asarray(c, dtype=np.float32) for c in _need(context, "reference_colours", self.name, "one RGB per actor")]
        palettes = subject_palettes(context, self.name)
        if len(palettes) != len(ref_colours):
            raise InputError(f"metric {self.name!r}: {len(palettes)} subjects but {len(ref_colours)} reference actors; "
                             f"give one subject per actor, in the same order")
        frames = min(len(v), len(ref))
        gen = np.stack([_resample(an.centroids(m), frames) for m in _subject_masks(v, palettes)])
        want = np.stack([_resample(an.centroids(m), frames) for m in an.colour_masks(ref, ref_colours)])
        if np.isnan(gen).all() or np.isnan(want).all():  # nothing to compare: every point is missing
            return {"motion_fidelity": 0.0, "trajectory_error": self.MISSING}
        gen, want = gen - np.nanmean(gen, axis=(0, 1)), want - np.nanmean(want, axis=(0, 1))
        error = np.linalg.norm(gen - want, axis=-1)
        error = np.where(np.isnan(error), self.MISSING, np.minimum(error, self.MISSING))
        mean = float(error.mean())
        return {"motion_fidelity": max(0.0, 1.0 - mean / self.MISSING), "trajectory_error": mean}


class AppearanceLeakage(Metric):
    """How much of the foreground wears the *reference actors'* colours instead of the subjects'?

    The motion LoRA should carry motion only; if it memorised the reference's appearance, the
    actors' colours show up. Every foreground pixel is given to its nearest colour among the
    subjects' and the actors' (when within 0.3 of it); ``appearance_leakage`` is the actors' share
    of the pixels so given (0 when none are). Lower is better. Actor colours within 0.3 of a
    subject colour are ambiguous and ignored.
    """

    name = "toy_appearance_leakage"

    def compute(self, video, context: Mapping[str, Any]) -> dict[str, float]:
        v = an.as_array(video)
        palettes = subject_palettes(context, self.name)
        subject_table = np.concatenate(palettes)
        actors = [np.asarray(c, dtype=np.float32) for c in _need(context, "reference_colours", self.name, "one RGB per actor")]
        actors = [a for a in actors if np.linalg.norm(subject_table - a, axis=1).min() > an.COLOUR_MATCH]
        if not actors:
            return {"appearance_leakage": 0.0}
        masks = an.colour_masks(v, [*subject_table, *actors])
        counts = masks.sum(axis=(1, 2, 3)).astype(np.float64)
        total = counts.sum()
        leaked = counts[len(subject_table):].sum()
        return {"appearance_leakage": float(leaked / total) if total else 0.0}


class TemporalConsistency(Metric):
    """Do consecutive frames show the same things? (The toy analogue of CLIP frame consistency.)

    Per frame, a 4x4x4-bin colour histogram of the foreground; ``temporal_consistency`` is the
    mean cosine similarity of consecutive histograms: motion leaves it at 1, flicker and
    appearance drift lower it. ``background_drift`` is the mean change of the border colour
    between consecutive frames (RGB distance).
    """

    name = "toy_temporal_consistency"

    def compute(self, video, context: Mapping[str, Any]) -> dict[str, float]:
        v = an.as_array(video)
        if len(v) < 2:
            raise InputError(f"metric {self.name!r}: needs at least 2 frames, got {len(v)}")
        fg = an.foreground(v)
        bins = np.minimum((v * 4).astype(np.int64), 3)
        codes = bins[:, 0] * 16 + bins[:, 1] * 4 + bins[:, 2]
        hists = np.stack([np.bincount(codes[f][fg[f]], minlength=64).astype(np.float64) for f in range(len(v))])
        sims = []
        for a, b in itertools.pairwise(hists):
            na, nb = np.linalg.norm(a), np.linalg.norm(b)
            if na == 0 and nb == 0:
                continue
            sims.append(float(a @ b / (na * nb)) if na and nb else 0.0)
        drift = np.linalg.norm(np.diff(an.background(v), axis=0), axis=1).mean()
        return {"temporal_consistency": float(np.mean(sims)) if sims else 1.0, "background_drift": float(drift)}


METRICS = [TextAlignment, SubjectFidelity, MotionFidelity, AppearanceLeakage, TemporalConsistency]
