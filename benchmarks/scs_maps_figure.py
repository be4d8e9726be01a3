"""The figure of docs/method/sampling.md: both SCS branches' attention maps on the shipped toy model.

    .venv/bin/python -m benchmarks.scs_maps_figure [--out docs/images/scs-maps.png]

The toy world's reference clip (a circle orbiting a square) is encoded and noised to the third
of 25 sampling steps; the toy model then runs once per branch, as a guided step of SCS does, the
subject branch with a spatial adapter and the motion branch with a temporal one (random weights of
the scale training reaches stand in for trained adapters, which this script does not train; the
subject tokens start from their class words), and the figure shows what the two losses compare: per subject, the cross-attention map of its token (subject branch) and of its
class word (motion branch) in every frame, and each branch's temporal self-attention map (frame x
frame, averaged over locations and layers).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from benchmarks.scs_guidance import two_branch_adapters
from videomage.loading import load_backbone
from videomage_samplers.cfg import DEFAULTS, make_scheduler, predict, resolve
from videomage_samplers.matching import matched_positions, motion_prompt_for
from videomage_samplers.scs import subject_maps
from videomage_toyworld import cases

MODEL = Path(__file__).resolve().parents[1] / "plugins" / "videomage_toyworld" / "model"
CELL = 64


def maps_of(backbone, adapter, name, latents, t, prompt, positions):
    adapter.activate(backbone, {name: 1.0})
    union = sorted({p for group in positions for p in group})
    with torch.no_grad(), backbone.capture_attention(cross_tokens=union, temporal=True) as store:
        predict(backbone, latents, t, backbone.encode_prompt([prompt]))
    cross = subject_maps(store.cross, union, positions, tuple(latents.shape[-2:]))[0]  # [N, F, h, w]
    temporal = torch.stack([m[0].mean(0) for m in store.temporal]).mean(0)  # [F, F]
    return cross, temporal


def tile(array: np.ndarray, size: int = CELL) -> Image.Image:
    """A map (stretched from its minimum to its maximum) or an RGB frame as a square tile."""
    if array.ndim == 2:
        a = (array - array.min()) / max(float(array.max() - array.min()), 1e-8)
        rgb = np.stack([a, a ** 0.5 * 0.8, 1 - a], -1)  # dark blue (0) to yellow (1)
    else:
        rgb = array.transpose(1, 2, 0)
    return Image.fromarray((rgb.clip(0, 1) * 255).astype(np.uint8)).resize((size, size), Image.NEAREST)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images/scs-maps.png"))
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    backbone = load_backbone(str(MODEL))
    tokens = {case.token: case.class_word for case in cases.SUBJECTS}
    _, adapter = two_branch_adapters(backbone, None, tokens, rank=4, std=0.1)
    clip = cases.motion_clip(backbone.video_spec.frames, size=backbone.video_spec.height)
    with torch.no_grad():
        x0 = backbone.encode_video(clip.video()[None]).float()
    scheduler = make_scheduler(backbone, resolve({"prompt": "x", "steps": 25}, DEFAULTS, "cfg"))
    t = scheduler.timesteps[2]
    latents = backbone.add_noise(x0, torch.randn(x0.shape, generator=torch.Generator().manual_seed(0)), t.reshape(1))
    prompt = cases.TARGET_PROMPT
    motion = motion_prompt_for(prompt, tokens)
    sub_pos, mot_pos = matched_positions(backbone, prompt, None, tokens)
    cross_s, temp_s = maps_of(backbone, adapter, "subjects", latents, t, prompt, sub_pos)
    cross_m, temp_m = maps_of(backbone, adapter, "motion", latents, t, motion, mot_pos)

    frames = clip.frames.shape[0]
    label_w, gap = 170, 8
    rows = [("clip (noised: step 3 of 25)", [tile(f) for f in clip.frames])]
    names = list(tokens)
    for i, token in enumerate(names):
        rows.append((f"subject: {token}", [tile(m.numpy()) for m in cross_s[i]]))
        rows.append((f"motion: {tokens[token]}", [tile(m.numpy()) for m in cross_m[i]]))
    width = label_w + frames * (CELL + 2) + gap + 2 * (CELL * 2 + gap)
    height = len(rows) * (CELL + 2) + 24
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (label, tiles) in enumerate(rows):
        y = 20 + r * (CELL + 2)
        draw.text((4, y + CELL // 2 - 6), label, fill="black")
        for f, im in enumerate(tiles):
            sheet.paste(im, (label_w + f * (CELL + 2), y))
    draw.text((label_w, 4), "cross-attention maps per frame, each from its min (blue) to its max (yellow); L_s->m compares each pair of rows", fill="black")
    x = label_w + frames * (CELL + 2) + gap
    for k, (label, m) in enumerate((("temporal, subject", temp_s), ("temporal, motion", temp_m))):
        draw.text((x + k * (2 * CELL + gap), 4), label, fill="black")
        sheet.paste(tile(m.numpy(), 2 * CELL), (x + k * (2 * CELL + gap), 20 + CELL + 2))
    draw.text((x, 20 + 3 * CELL + 8), "frame x frame (L_m->s compares these)", fill="black")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    print(f"wrote {args.out} ({motion!r}; L_s->m = {float((cross_m - cross_s).square().mean()):.4f}, "
          f"L_m->s = {float((temp_s - temp_m).square().mean()):.2e})")


if __name__ == "__main__":
    main()
