"""Reading a toy-world video back: background, objects, colours, shapes and trajectories.

The metrics need no learned weights because the world is simple enough to parse by hand: the
background is the colour of the frame's border, an object is a set of pixels far from it, a
colour is named by its nearest palette entry, a shape by the template that best fills the
object's bounding box, a motion by the path of the object's centroid. Every function takes
videos ``[F, 3, H, W]`` in ``[0, 1]`` (torch or numpy) and returns numpy values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from videomage import InputError
from videomage_toyworld.render import shape_masks
from videomage_toyworld.vocabulary import NOVEL_COLOURS, PALETTE, SCENES, SHAPES

#: A pixel is foreground when its colour is at least this far (RGB Euclidean) from the background.
FOREGROUND = 0.25
#: A pixel belongs to a known colour when it is within this distance of it.
COLOUR_MATCH = 0.3
#: An object must cover this fraction of a frame to count as present in it.
MIN_AREA = 0.01
#: A centroid that travels less than this fraction of the frame is "static".
STATIC = 0.06


def as_array(video) -> np.ndarray:
    """``[F, 3, H, W]`` float32 numpy from a torch tensor or array (a single image gains F=1)."""
    if hasattr(video, "detach"):
        video = video.detach().float().cpu().numpy()
    video = np.asarray(video, dtype=np.float32)
    if video.ndim == 3:
        video = video[None]
    if video.ndim != 4 or video.shape[1] != 3:
        raise InputError(f"toy-world analysis: expected a video [F, 3, H, W] or an image [3, H, W] in [0, 1], "
                         f"got shape {tuple(video.shape)}; pass frames channel-first")
    return video


def background(video) -> np.ndarray:
    """Per-frame background colour ``[F, 3]``: the median of the one-pixel border."""
    v = as_array(video)
    border = np.concatenate([v[..., 0, :], v[..., -1, :], v[..., :, 0], v[..., :, -1]], axis=-1)
    return np.median(border, axis=-1)


def foreground(video, threshold: float = FOREGROUND) -> np.ndarray:
    """Boolean masks ``[F, H, W]`` of pixels far from their frame's background colour."""
    v = as_array(video)
    distance = np.linalg.norm(v - background(v)[:, :, None, None], axis=1)
    return distance >= threshold


def nearest(colour: np.ndarray, table: Mapping[str, Sequence[float]]) -> str:
    """The name in ``table`` whose RGB is nearest ``colour``."""
    names = list(table)
    rgbs = np.asarray([table[n] for n in names], dtype=np.float32)
    return names[int(np.argmin(np.linalg.norm(rgbs - np.asarray(colour)[None], axis=1)))]


def colour_name(colour: np.ndarray) -> str:
    """The palette or novel colour name nearest ``colour``."""
    return nearest(colour, {**PALETTE, **NOVEL_COLOURS})


def scene_name(video) -> str:
    """The scene whose colour is nearest the video's median background."""
    return nearest(np.median(background(video), axis=0), SCENES)


def shape_fit(mask: np.ndarray) -> tuple[str | None, float]:
    """The shape whose template, fitted to ``mask``'s ``[H, W]`` bounding box, overlaps it best,
    and that overlap (intersection over union; 1 is a perfect outline).

    ``(None, 0.0)`` when the mask is empty. Templates are drawn by the renderer itself, centred
    on the box with the half-extent of its larger side, so a rendered shape matches its own
    template.
    """
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None, 0.0
    radius = max(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1) / 2
    centre = np.array([[(xs.max() + xs.min() + 1) / 2, (ys.max() + ys.min() + 1) / 2]], dtype=np.float32)
    scores = {}
    for shape in SHAPES:
        template = shape_masks(shape, centre, radius, *mask.shape)[0]
        scores[shape] = float((template & mask).sum() / max((template | mask).sum(), 1))
    best = max(scores, key=scores.get)
    return best, scores[best]


def shape_of(mask: np.ndarray) -> str | None:
    """The best-fitting shape of :func:`shape_fit` (``None`` for an empty mask)."""
    return shape_fit(mask)[0]


def majority(values: Sequence[str | None]) -> str | None:
    """The most common non-``None`` value (first seen wins ties)."""
    kept = [v for v in values if v is not None]
    return max(dict.fromkeys(kept), key=kept.count) if kept else None


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected component of an ``[H, W]`` mask (speckles of a blurry sample go)."""
    labels = np.zeros(mask.shape, dtype=np.int32)
    best, best_size, current = 0, 0, 0
    for y, x in zip(*np.nonzero(mask)):
        if labels[y, x]:
            continue
        current += 1
        stack, size = [(y, x)], 0
        labels[y, x] = current
        while stack:
            cy, cx = stack.pop()
            size += 1
            for ny, nx in ((cy - 1, cx), (cy + 1, cx), (cy, cx - 1), (cy, cx + 1)):
                if 0 <= ny < mask.shape[0] and 0 <= nx < mask.shape[1] and mask[ny, nx] and not labels[ny, nx]:
                    labels[ny, nx] = current
                    stack.append((ny, nx))
        if size > best_size:
            best, best_size = current, size
    return labels == best if best else np.zeros_like(mask)


def two_coloured(video, min_share: float = 0.2) -> bool:
    """Whether the video's main object wears two palette colours (a pattern) rather than one.

    Per frame, the interior of the largest foreground component (its one-pixel rim dropped,
    where an object's colour blends into the background) is named pixel by pixel with the
    nearest palette colour; the object is two-coloured when the second most common name covers
    at least ``min_share`` of those pixels over the frames where the object is present.
    """
    v = as_array(video)
    names = list(PALETTE)
    table = np.asarray([PALETTE[n] for n in names], dtype=np.float32)
    counts = np.zeros(len(names))
    for frame, mask in zip(v, foreground(v)):
        blob = largest_component(mask)
        inner = blob.copy()
        inner[1:] &= blob[:-1]
        inner[:-1] &= blob[1:]
        inner[:, 1:] &= blob[:, :-1]
        inner[:, :-1] &= blob[:, 1:]
        if inner.sum() < MIN_AREA * mask.size:
            continue
        pixels = np.moveaxis(frame, 0, -1)[inner]
        closest = np.linalg.norm(pixels[:, None] - table[None], axis=2).argmin(axis=1)
        counts += np.bincount(closest, minlength=len(names))
    if not counts.sum():
        return False
    return bool(np.sort(counts)[-2] / counts.sum() >= min_share)


def centroids(masks: np.ndarray, min_area: float = MIN_AREA) -> np.ndarray:
    """Centroids ``[F, 2]`` (x, y) as fractions of the frame; NaN where the object is absent."""
    f, h, w = masks.shape
    out = np.full((f, 2), np.nan, dtype=np.float32)
    for i in range(f):
        ys, xs = np.nonzero(masks[i])
        if len(xs) >= min_area * h * w:
            out[i] = ((xs.mean() + 0.5) / w, (ys.mean() + 0.5) / h)
    return out


def direction_of(path: np.ndarray, static: float = STATIC) -> str | None:
    """``left``/``right``/``up``/``down`` from a centroid path, ``static``, or ``None`` if unseen.

    Uses the displacement between the first and last frames where the object is seen.
    """
    seen = path[~np.isnan(path).any(axis=1)]
    if len(seen) < 2:
        return None
    dx, dy = seen[-1] - seen[0]
    if max(abs(dx), abs(dy)) < static:
        return "static"
    if abs(dx) >= abs(dy):
        return "right" if dx > 0 else "left"
    return "down" if dy > 0 else "up"


def colour_masks(video, colours: Sequence[np.ndarray], threshold: float = COLOUR_MATCH) -> np.ndarray:
    """``[K, F, H, W]``: pixels nearest to each of ``colours`` (within ``threshold``), foreground only."""
    v = as_array(video)
    fg = foreground(v)
    table = np.asarray(colours, dtype=np.float32)  # [K, 3]
    distance = np.linalg.norm(v[:, None] - table[None, :, :, None, None], axis=2)  # [F, K, H, W]
    closest = distance.argmin(axis=1)
    close = distance.min(axis=1) <= threshold
    return np.stack([(closest == k) & close & fg for k in range(len(table))])


def dominant_colours(images, k: int = 2, iterations: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` main foreground colours of ``images`` and their pixel shares (k-means in RGB).

    For a two-colour pattern these are its two colours; a plain subject gives two near-equal ones.
    """
    v = as_array(images)
    pixels = np.moveaxis(v, 1, -1)[foreground(v)]
    if len(pixels) == 0:
        raise InputError("toy-world analysis: expected images showing a subject, got only background (no pixel "
                         f"differs from the border colour by {FOREGROUND}); check the subject stills")
    # Start from the two pixels farthest apart along the main axis, then refine.
    order = np.argsort(pixels @ (pixels.std(axis=0) + 1e-6))
    centres = pixels[order[np.linspace(0, len(order) - 1, k).astype(int)]].copy()
    for _ in range(iterations):
        assign = np.linalg.norm(pixels[:, None] - centres[None], axis=2).argmin(axis=1)
        for j in range(k):
            if (assign == j).any():
                centres[j] = pixels[assign == j].mean(axis=0)
    shares = np.bincount(assign, minlength=k) / len(assign)
    return centres, shares
