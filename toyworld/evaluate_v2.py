"""How well does toy world v2's base model follow its captions? ``python -m toyworld.evaluate_v2 --model DIR``.

Draws ``n`` single-object captions naming everything ("a red circle arcing left quickly in the
snow": colour, shape, motion family, direction, speed, scene), samples one clip per caption
through the ordinary ``wan`` backbone and the ``cfg`` sampler's batched guided step, and scores
colour, shape, background and direction of each (:mod:`videomage_toyworld.alignment`). The
targets are 0.9 for each.

Beside it, :func:`held_out_loss`: the flow-matching loss on 32 held-out clips at five fixed noise
levels, split into the latents an object covers and the background's. It moves smoothly where
the scored samples jump between checkpoints (each part is right or wrong), so it shows whether
training still makes progress on the objects. And :func:`reconstruction_scores`: the same reading
of held-out clips passed through the VAE alone, the most a perfect denoiser could score.
And :func:`word_gaps`: how much worse the denoiser does on moving clips when told the opposite
direction, another shape or another colour (zero: it ignores the word). And :func:`frame_use`:
how much worse it does with a clip's frames reversed, shuffled or each alone (zero: it ignores
their order, their neighbours, the other frames). Each evaluation also counts how its samples
fail (:func:`failure_modes`: no object, an object that does not travel, colour and shape by
word, how well the object's outline fits any shape). And :func:`picture_reading`: still pictures
sampled as one frame ("a red square in the snow"), scored for colour, shape and background, to
see whether the denoiser draws a shape at all with time out of the way. A model trained on
another world (``train_v2 --object-scale``, ``--layout``) draws its held-out clips from that world, and is
never shipped.

``--ship`` copies the model (its transformer in float16) into the package (where the demo finds it) and commits
it, but only when its evaluation beats the one recorded beside the shipped weights
(``evaluation.json``): the score is the lowest of the four parts, ties broken by their mean.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from toyworld.common import sample_batch, write_folder
from videomage_toyworld import alignment
from videomage_toyworld.vocabulary import DIRECTIONS, PALETTE, SCENES, SHAPES, SPEEDS
from videomage_toyworld.wan_model import MODEL_V2_DIR
from videomage_toyworld.world2 import FAMILIES, visible

EVALUATION = "evaluation.json"
TARGET = 0.9


def captions(n: int, seed: int = 0) -> list[str]:
    """``n`` full single-object captions, uniform over visible colour/scene pairs and the families."""
    rng = np.random.default_rng([seed, 21])
    out = []
    while len(out) < n:
        colour, shape, scene = str(rng.choice(list(PALETTE))), str(rng.choice(SHAPES)), str(rng.choice(list(SCENES)))
        family = str(rng.choice(list(FAMILIES)))
        directions = ["left", "right"] if family == "bounce" else list(DIRECTIONS)
        direction, speed = str(rng.choice(directions)), str(rng.choice(list(SPEEDS)))
        if visible(colour, scene):
            out.append(f"a {colour} {shape} {FAMILIES[family]} {direction} {speed} {scene}")
    return out


def failure_modes(videos, prompts: list[str], scores: list[dict[str, float]]) -> dict:
    """How samples fail, beside the four parts (``scores``, :func:`alignment.score` of each):
    ``no_object``, the share in which an object is seen in fewer than half the frames; ``static``,
    the share in which it is seen but does not travel; ``seen_frames``, the mean share of frames
    with an object; ``colour_by_word`` and ``shape_by_word``, the share right on colour (shape)
    for each colour (shape) the prompts name; ``outline_fit``, how well the best shape template
    fits the object's blob (intersection over union, mean over the frames that show one: a
    world clip's objects fit about 0.94, a blob of no particular shape less)."""
    from videomage_toyworld import analysis as an

    seen, absent, static, fits, by_word, by_shape = [], [], [], [], {}, {}
    for video, prompt, score in zip(videos, prompts, scores):
        masks = alignment.object_masks(an.as_array(video))
        path = an.centroids(masks)
        frames = float((~np.isnan(path).any(axis=1)).mean())
        seen.append(frames)
        absent.append(frames < 0.5)
        static.append(frames >= 0.5 and an.direction_of(path) == "static")
        fits += [fit for shape, fit in map(an.shape_fit, masks) if shape is not None]
        nouns = alignment.parse(prompt)["nouns"]
        if "colour" in score:  # the prompt names a colour
            by_word.setdefault(nouns[0][0], []).append(score["colour"])
        if "shape" in score:
            by_shape.setdefault(nouns[0][1], []).append(score["shape"])
    return {"no_object": float(np.mean(absent)), "static": float(np.mean(static)),
            "seen_frames": round(float(np.mean(seen)), 4),
            "colour_by_word": {c: round(float(np.mean(v)), 4) for c, v in sorted(by_word.items())},
            "shape_by_word": {c: round(float(np.mean(v)), 4) for c, v in sorted(by_shape.items())},
            "outline_fit": round(float(np.mean(fits)), 4) if fits else 0.0}


def colourless_captions(n: int, seed: int = 0) -> list[str]:
    """``n`` captions that name no colour, as a subject's prompt starts ("a circle in the snow"):
    every other one with a motion ("a square moving left in the desert")."""
    rng = np.random.default_rng([seed, 26])
    out = []
    for i in range(n):
        shape, scene = str(rng.choice(SHAPES)), str(rng.choice(list(SCENES)))
        family = str(rng.choice(list(FAMILIES)))
        direction = str(rng.choice(["left", "right"] if family == "bounce" else list(DIRECTIONS)))
        out.append(f"a {shape} {FAMILIES[family]} {direction} {scene}" if i % 2 else f"a {shape} {scene}")
    return out


def sampled(backbone, texts: list[str], *, batch: int, steps: int, guidance: float, seed: int,
            frames: int | None = None, progress: str | None = None) -> tuple[list[dict[str, float]], list]:
    """Sample ``texts`` in chunks of ``batch`` (chunk ``k`` from seed ``seed + k * batch``) and read each
    back: the :func:`alignment.score` of every sample, and the samples. ``progress`` names a progress bar."""
    scores, samples = [], []
    for start in tqdm(range(0, len(texts), batch), desc=progress, disable=progress is None):
        prompts = texts[start : start + batch]
        videos = sample_batch(backbone, prompts, steps=steps, guidance=guidance, seed=seed + start, frames=frames).cpu()
        scores += [alignment.score(v, p) for v, p in zip(videos, prompts)]
        samples += list(videos)
    return scores, samples


def colourless_reading(backbone, *, n: int = 16, batch: int = 8, steps: int = 20, guidance: float = 5.0,
                       seed: int = 0) -> dict[str, float]:
    """Samples of :func:`colourless_captions`: ``object``, the share with an object in at least half
    the frames (a prompt without a colour means any colour, not none), and ``shape``, the share
    whose object has the named shape."""
    texts = colourless_captions(n, seed)
    scores, samples = sampled(backbone, texts, batch=batch, steps=steps, guidance=guidance, seed=seed + 1000)
    failures = failure_modes(samples, texts, scores)
    return {"object": round(1 - failures["no_object"], 4), "shape": round(float(np.mean([s["shape"] for s in scores])), 4),
            "n": float(n)}


def picture_captions(n: int, seed: int = 0) -> list[str]:
    """``n`` captions of still pictures naming colour, shape and scene ("a red circle in the snow"),
    the three shapes in turn."""
    rng = np.random.default_rng([seed, 28])
    out = []
    while len(out) < n:
        colour, scene = str(rng.choice(list(PALETTE))), str(rng.choice(list(SCENES)))
        if visible(colour, scene):
            out.append(f"a {colour} {SHAPES[len(out) % len(SHAPES)]} {scene}")
    return out


def picture_reading(backbone, *, n: int = 24, batch: int = 8, steps: int = 20, guidance: float = 5.0,
                    seed: int = 0) -> dict:
    """Samples of :func:`picture_captions` as one-frame clips: can the denoiser draw a shape at all,
    with time out of the way? ``colour``, ``shape``, ``background`` (shares right), and the
    :func:`failure_modes` readings ``shape_by_word`` and ``outline_fit``."""
    texts = picture_captions(n, seed)
    scores, samples = sampled(backbone, texts, batch=batch, steps=steps, guidance=guidance, seed=seed + 2000, frames=1)
    summary = alignment.summary(scores)
    failures = failure_modes(samples, texts, scores)
    return {**{p: round(summary[p], 4) for p in ("colour", "shape", "background")},
            "shape_by_word": failures["shape_by_word"], "outline_fit": failures["outline_fit"], "n": float(n)}


#: The options of ``world2.random_clip`` that a model's ``training.json`` may record, with the
#: world's own values (a record leaves those out).
WORLD_OPTIONS = {"object_scale": 1.0, "layout": 0.0}


def world_of(model: str | Path) -> dict[str, float]:
    """The options of the world a model trained on that are not the world's own, as its
    ``training.json`` records them (``train_v2 --object-scale``, ``--layout``; empty for the world
    itself): its held-out clips are drawn from that world."""
    record = Path(model) / "training.json"
    saved = json.loads(record.read_text()) if record.exists() else {}
    return {k: float(saved[k]) for k, own in WORLD_OPTIONS.items() if k in saved and saved[k] != own}


def object_scale_of(model: str | Path) -> float:
    """The size of the actors of the world a model trained on (``train_v2 --object-scale``; 1 where
    its ``training.json`` records none)."""
    return world_of(model).get("object_scale", 1.0)


def evaluate(model: str | Path, *, n: int = 64, batch: int = 8, steps: int = 20, guidance: float = 5.0, seed: int = 0,
             sheet: str | Path | None = None, progress: bool = True, device: str = "cpu",
             colourless: int = 16, pictures: int = 24) -> dict[str, float]:
    from videomage.loading import load_backbone

    backbone = load_backbone(str(model), device=device)
    texts = captions(n, seed)
    scores, samples = sampled(backbone, texts, batch=batch, steps=steps, guidance=guidance, seed=seed,
                              progress="evaluating" if progress else None)
    if sheet:
        from videomage.media import write_contact_sheet

        write_contact_sheet(torch.stack(samples[:16]).flatten(0, 1), str(sheet), columns=samples[0].shape[0])
    out = alignment.summary(scores)
    out["failures"] = failure_modes(samples, texts, scores)
    world = world_of(model)
    out.update(steps=float(steps), guidance=float(guidance), held_out_loss=held_out_loss(backbone, world=world),
               reconstruction=reconstruction_scores(backbone, world=world))
    out["word_gaps"] = word_gaps(backbone, world=world)
    out["frame_use"] = frame_use(backbone, world=world)
    if pictures:
        out["pictures"] = picture_reading(backbone, n=pictures, batch=batch, steps=steps, guidance=guidance, seed=seed)
    out.update(world)
    if colourless:
        out["colourless"] = colourless_reading(backbone, n=colourless, batch=batch, steps=steps, guidance=guidance,
                                               seed=seed)
    return out


#: Noise levels (sigma, 1 is pure noise) of the held-out loss.
SIGMAS = (0.1, 0.3, 0.5, 0.7, 0.9)


def split_loss(error: torch.Tensor, covered: torch.Tensor) -> tuple[float, float]:
    """Mean of ``error`` ``[B, C, F, h, w]`` over the positions ``covered`` ``[B, 1, F, h, w]`` marks, and over the rest."""
    covered = covered.expand_as(error).float()
    return (float((error * covered).sum() / covered.sum().clamp_min(1)),
            float((error * (1 - covered)).sum() / (1 - covered).sum().clamp_min(1)))


def covered_latents(masks: torch.Tensor, latent_size) -> torch.Tensor:
    """``[B, 1, F, h, w]``: the latent positions that pixel masks ``[B, F, H, W]`` reach (any pixel of their patch)."""
    import torch.nn.functional as F

    return F.adaptive_max_pool2d(masks.float(), tuple(latent_size))[:, None]


@torch.no_grad()
def encoded(backbone, clips: list, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The latents of ``clips``, the latent positions their objects' pixels reach ``[B, 1, F, h, w]``,
    and noise like the latents drawn from ``seed``."""
    z = backbone.encode_video(torch.from_numpy(np.stack([c.frames for c in clips])))
    masks = torch.from_numpy(np.stack([c.masks.any(0) for c in clips]))  # [B, F, H, W]
    covered = covered_latents(masks, z.shape[-2:]).to(z.device)
    noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(seed)).to(z.device, z.dtype)
    return z, covered, noise


@torch.no_grad()
def errors_at(backbone, z: torch.Tensor, noise: torch.Tensor, texts: list, sigma: float, batch: int) -> torch.Tensor:
    """Squared flow-matching errors ``[B, 1, F, h, w]`` (mean over channels) of latents ``z`` noised
    with ``noise`` to level ``sigma``, in chunks of ``batch`` with their encoded captions ``texts``."""
    from videomage_wan.flow import train_steps

    errors = []
    for i, text in zip(range(0, z.shape[0], batch), texts):
        zi, ni = z[i : i + batch], noise[i : i + batch]
        t = torch.full((zi.shape[0],), sigma * train_steps(backbone.scheduler_config), device=z.device)
        pred = backbone.predict(backbone.add_noise(zi, ni, t), t, text)
        errors.append((pred.float() - backbone.training_target(zi, ni, t).float()).pow(2).mean(1, keepdim=True))
    return torch.cat(errors)


@torch.no_grad()
def held_out_loss(backbone, *, n: int = 32, batch: int = 8, seed: int = 7,
                  world: dict | None = None) -> dict[str, list[float]]:
    """The flow-matching loss on ``n`` held-out captioned clips (full captions) at :data:`SIGMAS`:
    ``{"object": [...], "background": [...]}``, one value per noise level, over the latents an
    object's pixels reach and the others. The clips, noise and levels are fixed by ``seed``."""
    from videomage_toyworld.world2 import NO_DROPS, random_clip

    rng = np.random.default_rng([seed, 22])
    clips = [random_clip(rng, size=backbone.video_spec.height, drops=NO_DROPS, **(world or {})) for _ in range(n)]
    z, covered, noise = encoded(backbone, clips, seed)
    texts = [backbone.text.run([c.caption for c in clips[i : i + batch]]) for i in range(0, n, batch)]  # once, for every level
    out: dict[str, list[float]] = {"object": [], "background": []}
    for sigma in SIGMAS:
        obj, rest = split_loss(errors_at(backbone, z, noise, texts, sigma, batch), covered)
        out["object"].append(round(obj, 4))
        out["background"].append(round(rest, 4))
    return out


def moving_clips(backbone, n: int, stream: list[int], world: dict | None = None) -> list:
    """``n`` fully captioned world clips of the motion families (lines, arcs, bounces), at the
    backbone's size, drawn from the generator seeded by ``stream`` (each reading its own) in the
    world ``world`` names (options of ``world2.random_clip``; none: the world itself)."""
    from videomage_toyworld.world2 import NO_DROPS, random_clip

    rng = np.random.default_rng(stream)
    return [random_clip(rng, size=backbone.video_spec.height, drops=NO_DROPS, family=str(rng.choice(list(FAMILIES))),
                        **(world or {})) for _ in range(n)]


OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}
#: Noise levels of the direction-word gap: where a clip's frames show less and less of its path.
GAP_SIGMAS = (0.5, 0.7, 0.9, 0.97)


def opposite_direction(caption: str) -> str:
    """``caption`` with its direction word turned round ("moving left" -> "moving right")."""
    return " ".join(OPPOSITE.get(word, word) for word in caption.split(" "))


def other_shape(caption: str) -> str:
    """``caption`` with its shape word replaced by the next of :data:`SHAPES` ("circle" -> "square")."""
    return _next_word(caption, list(SHAPES))


def other_colour(caption: str) -> str:
    """``caption`` with its colour word replaced by the next palette colour ("red" -> "green")."""
    return _next_word(caption, list(PALETTE))


def _next_word(caption: str, pool: list[str]) -> str:
    words = caption.split(" ")
    for i, word in enumerate(words):
        if word in pool:
            words[i] = pool[(pool.index(word) + 1) % len(pool)]
            break
    return " ".join(words)


#: What each word gap tells the denoiser instead of the truth.
WORD_SWAPS = {"direction": opposite_direction, "shape": other_shape, "colour": other_colour}


@torch.no_grad()
def word_gaps(backbone, *, n: int = 32, batch: int = 8, seed: int = 7,
              world: dict | None = None) -> dict[str, list[float]]:
    """Does the denoiser read each word? The held-out object loss of ``n`` moving clips (lines,
    arcs, bounces) captioned with one word changed (:data:`WORD_SWAPS`: the opposite direction,
    another shape, another colour), minus the loss with their own caption, at :data:`GAP_SIGMAS`
    (same clips and noise). Zero: the word changes nothing; the larger, the more it tells."""
    clips = moving_clips(backbone, n, [seed, 25], world)
    z, covered, noise = encoded(backbone, clips, seed)
    captions = {"own": [c.caption for c in clips], **{k: [swap(c.caption) for c in clips] for k, swap in WORD_SWAPS.items()}}
    texts = {k: [backbone.text.run(v[i : i + batch]) for i in range(0, n, batch)] for k, v in captions.items()}
    gaps: dict[str, list[float]] = {k: [] for k in WORD_SWAPS}
    for sigma in GAP_SIGMAS:
        loss = {kind: split_loss(errors_at(backbone, z, noise, chunks, sigma, batch), covered)[0]
                for kind, chunks in texts.items()}
        for kind in WORD_SWAPS:
            gaps[kind].append(round(loss[kind] - loss["own"], 5))
    return gaps


#: Noise levels of :func:`frame_use`.
FRAME_SIGMAS = (0.5, 0.7, 0.9)
#: How :func:`frame_use` rearranges a clip's frames (index ``[F]`` for a clip of ``F`` frames).
FRAME_ORDERS = {"reversed": lambda f: torch.arange(f - 1, -1, -1),
                "shuffled": lambda f: torch.from_numpy(np.random.default_rng([f, 27]).permutation(f))}


@torch.no_grad()
def frame_use(backbone, *, n: int = 16, batch: int = 8, seed: int = 7,
              world: dict | None = None) -> dict[str, list[float]]:
    """Does the denoiser use the other frames, and their order? The held-out object loss of ``n``
    moving clips at :data:`FRAME_SIGMAS` with their frames in order, and how much worse it is
    (a difference; zero: no use) with the frames reversed (``reversed``: a denoiser that knows
    which way time runs does worse, since the caption's direction is then wrong), shuffled
    (``shuffled``: one that follows the object from frame to frame does worse) and each frame
    denoised on its own as a one-frame clip (``alone``: one that reads the other frames at all
    does worse). Same clips and noise for every arrangement."""
    clips = moving_clips(backbone, n, [seed, 27], world)
    z, covered, noise = encoded(backbone, clips, seed)
    texts = [backbone.text.run([c.caption for c in clips[i : i + batch]]) for i in range(0, n, batch)]
    frames = z.shape[2]
    out: dict[str, list[float]] = {"ordered": [], **{k: [] for k in FRAME_ORDERS}, "alone": []}
    for sigma in FRAME_SIGMAS:
        ordered = split_loss(errors_at(backbone, z, noise, texts, sigma, batch), covered)[0]
        out["ordered"].append(round(ordered, 4))
        for kind, order in FRAME_ORDERS.items():
            index = order(frames).to(z.device)
            moved = errors_at(backbone, z[:, :, index], noise[:, :, index], texts, sigma, batch)
            out[kind].append(round(split_loss(moved, covered[:, :, index])[0] - ordered, 4))
        alone = torch.cat([errors_at(backbone, z[:, :, f : f + 1], noise[:, :, f : f + 1], texts, sigma, batch)
                           for f in range(frames)], dim=2)
        out["alone"].append(round(split_loss(alone, covered)[0] - ordered, 4))
    return out


@torch.no_grad()
def reconstruction_scores(backbone, *, n: int = 24, seed: int = 7, world: dict | None = None) -> dict[str, float]:
    """The evaluation's reading of ``n`` held-out world clips passed through the VAE alone (encode,
    decode): the most a perfect denoiser could score with this VAE."""
    clips = moving_clips(backbone, n, [seed, 23], world)
    video = torch.from_numpy(np.stack([c.frames for c in clips]))
    decoded = torch.cat([backbone.decode_latents(backbone.encode_video(video[i : i + 8])) for i in range(0, n, 8)])
    summary = alignment.summary([alignment.score(v, c.caption) for v, c in zip(decoded.float().cpu(), clips)])
    return {p: round(summary[p], 4) for p in alignment.PARTS}


def rank(result: dict) -> tuple[float, float]:
    """What ``ship`` compares: the lowest, then the mean, of the four parts and the colourless
    reading's object share (a subject's prompt names no colour; 0 where an evaluation lacks it)."""
    parts = [result.get(p, 0.0) for p in alignment.PARTS] + [result.get("colourless", {}).get("object", 0.0)]
    return min(parts), float(np.mean(parts))


def ship(model: Path, result: dict, *, commit: bool) -> bool:
    """Copy ``model`` as float16 into the package and commit it, if ``result`` beats the shipped one.
    A model trained on another world (``train_v2 --object-scale``, ``--layout``) is never shipped:
    the cases, the demo and the stages draw the world itself."""
    if world_of(model):
        options = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in world_of(model).items())
        print(f"not shipped: {model} trained on another world ({options}); only a model of the world itself "
              "can be shipped")
        return False
    recorded = MODEL_V2_DIR / EVALUATION
    if recorded.exists() and rank(result) <= rank(json.loads(recorded.read_text())):
        print(f"not shipped: {rank(result)} does not beat the shipped model's {rank(json.loads(recorded.read_text()))}")
        return False
    from diffusers import WanPipeline, WanTransformer3DModel

    # The transformer in float16, loaded so that diffusers keeps the modules Wan needs in float32
    # (RoPE, time embedder, norms, modulation table); the VAE and the small text encoder stay float32.
    transformer = WanTransformer3DModel.from_pretrained(str(model), subfolder="transformer", torch_dtype=torch.float16)
    pipe = WanPipeline.from_pretrained(str(model), transformer=transformer)

    def write(staging: Path) -> None:
        pipe.save_pretrained(staging)
        for name in ("videomage.json", "training.json"):
            if (model / name).exists():
                shutil.copy(model / name, staging / name)
        (staging / EVALUATION).write_text(json.dumps(result, indent=1) + "\n")

    write_folder(MODEL_V2_DIR, write)
    step = json.loads((MODEL_V2_DIR / "training.json").read_text()).get("step") if (MODEL_V2_DIR / "training.json").exists() else "?"
    print(f"shipped step {step} to {MODEL_V2_DIR}: {json.dumps(result)}")
    if commit:
        repo = MODEL_V2_DIR.parents[2]
        rel = str(MODEL_V2_DIR.relative_to(repo))
        parts = ", ".join(f"{p} {result.get(p, 0):.2f}" for p in alignment.PARTS)
        message = f"Toy world v2 base model, step {step}: {parts} over {int(result['n'])} samples"
        # Someone else may hold the index lock for a moment: try a few times.
        for attempt in range(10):
            added = subprocess.run(["git", "-C", str(repo), "add", "-A", "--", rel])
            done = added.returncode == 0 and subprocess.run(
                ["git", "-C", str(repo), "commit", "-q", "-m", message, "--", rel]).returncode == 0
            if done:
                break
            time.sleep(5 + 5 * attempt)
        else:
            print(f"shipped but not committed: commit {rel} by hand")
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m toyworld.evaluate_v2", description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=MODEL_V2_DIR)
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--colourless", type=int, default=16,
                        help="samples of prompts that name no colour, for the 'colourless' reading (0: none)")
    parser.add_argument("--pictures", type=int, default=24,
                        help="still pictures sampled as one frame, for the 'pictures' reading (0: none)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sheet", default=None, help="write the first 16 samples as a contact sheet PNG here")
    parser.add_argument("--ship", action="store_true", help="ship (and commit) the model if it beats the shipped one")
    parser.add_argument("--no-commit", action="store_true", help="with --ship: copy into the package, do not commit")
    parser.add_argument("--log", type=Path, default=None, help="append the result as a JSON line here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    # Evaluate a private copy: training may swap a new export in while sampling runs. The shipped
    # folder is read in place (nothing exports into it), however its path is spelt.
    shipped = Path(args.model).resolve() == MODEL_V2_DIR.resolve()
    snapshot = Path(args.model) if shipped else Path(str(args.model).rstrip("/") + ".eval")
    if not shipped:
        shutil.rmtree(snapshot, ignore_errors=True)
        shutil.copytree(args.model, snapshot)
    try:
        result = evaluate(snapshot, n=args.n, batch=args.batch, steps=args.steps, guidance=args.guidance, seed=args.seed,
                          sheet=args.sheet, device=args.device, colourless=args.colourless,
                          pictures=args.pictures)
        record = snapshot / "training.json"
        result["step"] = float(json.loads(record.read_text())["step"]) if record.exists() else -1.0
        print(json.dumps(result))
        if args.log:
            with open(args.log, "a") as fh:
                fh.write(json.dumps({**result, "time": time.strftime("%H:%M:%S")}) + "\n")
        if args.ship and not shipped:
            ship(snapshot, result, commit=not args.no_commit)
    finally:
        if not shipped:
            shutil.rmtree(snapshot, ignore_errors=True)


if __name__ == "__main__":
    main()
