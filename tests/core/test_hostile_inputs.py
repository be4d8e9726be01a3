"""Hostile input and injected faults, one row per case: what a user does, and what must happen.

Every case of the "faults and bad input" review is a row of :data:`CASES`: an id, the review's
item number, the expected outcome (refused cleanly, or worked), the words the refusal must
say (and must not say), and a function that builds the case's files and returns a
:class:`hostile.Plan`: the command line (or library call), the files it must not touch, and a
check of the result. To add a case, write one more ``@case(...)`` function.

Cases run on the tiny test model with one or two steps, and most are refused before any model
loads. ``python tests/core/test_hostile_inputs.py [counts.json]`` runs the table outside pytest
and prints the outcome of every case and the counts per outcome. To measure another version of
videomage with the same table, put its checkout first on the path::

    git worktree add /tmp/old <commit>
    PYTHONPATH=/tmp/old:/tmp/old/plugins python tests/core/test_hostile_inputs.py
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from hostile import OUTCOMES, REFUSED, WORKED, Case, Plan, _message, classify, copy_model, open_to_all, shared_dir  # noqa: E402

CASES: list[Case] = []


def case(id: str, item: int, expect: str, says: tuple[str, ...] = (), never: tuple[str, ...] = ()):
    def register(build):
        CASES.append(Case(id=id, item=item, expect=expect, build=build, says=says, never=never, note=build.__doc__ or ""))
        return build

    return register


# -- the world a case starts from ---------------------------------------------------------------
class Env:
    """A tiny model, photos, clips and artifacts; each case gets a fresh folder ``env.dir()``."""

    def __init__(self, root: Path, model: Path) -> None:
        self.root = root
        self.model = copy_model(model, root / "model")
        self.n = 0
        base = self.dir("base")
        self.toy = self.photos(base / "toy", (220, 40, 40))
        self.dog = self.photos(base / "dog", (40, 40, 220))
        self.clip = self.video(base / "ride.mp4")
        self.subject = base / "toy.safetensors"
        self.subject2 = base / "dog.safetensors"
        self.motion = base / "ride.safetensors"
        from videomage.cli import main

        for images, token, out in ((self.toy, "<toy>", self.subject), (self.dog, "<dog>", self.subject2)):
            assert main(self.learn_subject(images, out, token=token)) == 0
        assert main(["learn-motion", *self.m, "--video", str(self.clip), "--prompt", "a person is riding a horse",
                     "--entities", "person,horse", "--inversion-steps", "1", "--out", str(self.motion), *FAST]) == 0
        open_to_all(root)

    @property
    def m(self) -> list[str]:
        return ["--model", str(self.model)]

    def dir(self, name: str | None = None) -> Path:
        self.n += 1
        path = self.root / (name or f"case{self.n}")
        path.mkdir()
        path.chmod(0o777)
        return path

    @staticmethod
    def photos(folder: Path, colour, n: int = 3, offset: int = 0) -> Path:
        import imageio.v3 as iio

        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            frame = np.full((32, 32, 3), 30, dtype=np.uint8)
            x, y = 8 + 5 * i + offset, 12 + 3 * i
            frame[y - 5 : y + 5, x - 5 : x + 5] = colour
            iio.imwrite(folder / f"{i}.png", frame)
        return folder

    @staticmethod
    def video(path: Path, frames: int = 4, colour=(40, 200, 40)) -> Path:
        import imageio.v3 as iio

        clip = np.full((frames, 32, 32, 3), 30, dtype=np.uint8)
        for i in range(frames):
            clip[i, 12:20, 4 + 3 * i : 12 + 3 * i] = colour
        iio.imwrite(path, clip, fps=8, plugin="FFMPEG", codec="libx264", macro_block_size=2)
        return path

    def learn_subject(self, images: Path, out: Path, *extra: str, token: str = "<toy>") -> list[str]:
        return ["learn-subject", *self.m, "--images", str(images), "--token", token, "--class-word",
                token.strip("<>") or "toy", "--out", str(out), "-o", "lambda_reg=0", *FAST, *extra]

    def generate(self, out: Path, *extra: str, sampler: str = "cfg", subjects: Path | None = None) -> list[str]:
        extra_args = ["--motion", str(self.motion)] if sampler == "scs" else []
        return ["generate", *self.m, "--subjects", str(subjects or self.subject), *extra_args, "--prompt",
                "<toy> is riding <person>" if sampler == "scs" else "a <toy>", "--sampler", sampler, "--steps", "1",
                *(["-o", "tau=1"] if sampler == "scs" else []), "--no-progress", "--out", str(out), *extra]


FAST = ["--steps", "1", "--no-progress", "--sample-steps", "2"]


def tensors(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def same_tensors(a: Path, b: Path) -> bool:
    ta, tb = tensors(a), tensors(b)
    return ta.keys() == tb.keys() and all(bool((ta[k] == tb[k]).all()) for k in ta)


def main_ok(argv) -> None:
    from videomage.cli import main

    code = main([str(a) for a in argv])
    if code != 0:
        raise RuntimeError(f"setup command failed ({code}): {argv}")


def recipe(folder: Path, env: Env, body: str, name: str = "recipe.toml") -> Path:
    text = f'seed = 0\n[model]\nid = "{env.model}"\n' + body
    path = folder / name
    path.write_text(text)
    return path


SUBJECT_TOML = '[[subjects]]\ntoken = "<toy>"\nclass_word = "toy"\nimages = "{images}"\nsteps = {steps}\nlambda_reg = 0.0\n'
MOTION_TOML = ('[motion]\nvideo = "{video}"\nprompt = "a person is riding a horse"\nentities = {entities}\n'
               'steps = 1\ninversion_steps = 1\n')


def run_recipe_argv(path: Path) -> list[str]:
    return ["run", str(path), "--no-progress"]


# == 1. stale results ===========================================================================
def _rerun_equals_fresh(env: Env, first: list, second: list, fresh: list, out: Path, fresh_out: Path) -> Plan:
    main_ok(first)
    return Plan(argv=second, check=lambda r: (main_ok(fresh), same_tensors(out, fresh_out))[1])


def _rerun_differs(first: list, second: list, out: Path, change=lambda: None) -> Plan:
    """Run ``first``, ``change`` an input, run ``second`` on the same output: a result bit-identical
    to the first run's means the second run resumed the first one's finished state."""
    main_ok(first)
    before = tensors(out)
    change()

    def differs(r):
        after = tensors(out)
        return any(not bool((after[k] == before[k]).all()) for k in before if k.startswith("adapter."))

    return Plan(argv=second, check=differs)


@case("stale: other images, same --out", 1, WORKED)
def _(env):
    """Re-running learn-subject on other photos must learn them, not return the old subject."""
    d = env.dir()
    images = env.photos(d / "photos", (220, 40, 40))
    out, fresh = d / "toy.safetensors", d / "fresh.safetensors"
    first = env.learn_subject(images, out, "--steps", "2")
    plan = Plan(argv=env.learn_subject(images, out, "--steps", "2"))
    main_ok(first)
    env.photos(images, (40, 220, 220), offset=3)  # every photo replaced
    plan.check = lambda r: (main_ok(env.learn_subject(images, fresh, "--steps", "2")), same_tensors(out, fresh))[1]
    return plan


# learn-subject run with the first flags, then again on the same --out with the second: the
# result must equal a fresh run with the second flags (case, first flags, second flags).
RERUNS = [
    ("stale: changed --lr", ["--steps", "2"], ["--steps", "2", "--lr", "0.01"]),
    ("stale: smaller --steps", ["--steps", "3"], ["--steps", "1"]),
    ("holds: a larger --steps trains on from the finished run", ["--steps", "2"], ["--steps", "3"]),
]


def _rerun(first: list[str], second: list[str]):
    def build(env):
        d = env.dir()
        out, fresh = d / "toy.safetensors", d / "fresh.safetensors"
        return _rerun_equals_fresh(env, env.learn_subject(env.toy, out, *first), env.learn_subject(env.toy, out, *second),
                                   env.learn_subject(env.toy, fresh, *second), out, fresh)

    return build


for _id, _first, _second in RERUNS:
    case(_id, 1, WORKED)(_rerun(_first, _second))


@case("stale: other model weights, same architecture", 1, WORKED)
def _(env):
    d = env.dir()
    other = copy_model(env.model, d / "model2")
    from safetensors.torch import load_file, save_file

    weights = other / "unet" / "diffusion_pytorch_model.safetensors"
    t = load_file(str(weights))
    save_file({k: v * 1.01 for k, v in t.items()}, str(weights))
    out, fresh = d / "toy.safetensors", d / "fresh.safetensors"

    def swap(argv, model):
        argv = list(argv)
        argv[argv.index("--model") + 1] = str(model)
        return argv

    return _rerun_equals_fresh(env, env.learn_subject(env.toy, out, "--steps", "2"),
                               swap(env.learn_subject(env.toy, out, "--steps", "2"), other),
                               swap(env.learn_subject(env.toy, fresh, "--steps", "2"), other), out, fresh)


@case("stale: learn-motion on another clip", 1, WORKED)
def _(env):
    d = env.dir()
    clip = env.video(d / "clip.mp4")
    out = d / "m.safetensors"

    def argv(o):
        return ["learn-motion", *env.m, "--video", str(clip), "--prompt", "a person is riding a horse", "--entities",
                "person,horse", "--inversion-steps", "1", "--out", str(o), *FAST]

    return _rerun_differs(argv(out), argv(out), out, change=lambda: env.video(clip, colour=(220, 220, 40)))


@case("stale: fuse with another subject", 1, WORKED)
def _(env):
    d = env.dir()
    other = d / "cat.safetensors"
    main_ok(env.learn_subject(env.photos(d / "cat", (200, 200, 200)), other, token="<cat>"))
    out = d / "pair.safetensors"

    def argv(second):
        return ["fuse", *env.m, "--subjects", str(env.subject), str(second), "--videos-per-subject", "1", "--out", str(out), *FAST]

    return _rerun_differs(argv(env.subject2), argv(other), out)


@case("stale: recipe with every image replaced", 1, WORKED)
def _(env):
    d = env.dir()
    images = env.photos(d / "photos", (220, 40, 40))
    path = recipe(d, env, SUBJECT_TOML.format(images="photos", steps=2) + '[output]\ndir = "out"\n')
    return _rerun_differs(run_recipe_argv(path), run_recipe_argv(path), d / "out" / "subjects" / "toy.safetensors",
                          change=lambda: env.photos(images, (40, 220, 220), offset=3))


# == 2. data loss ===============================================================================
@case("loss: learn-subject --out is an input photo", 2, REFUSED, says=("input",))
def _(env):
    d = env.dir()
    images = env.photos(d / "photos", (220, 40, 40))
    return Plan(argv=env.learn_subject(images, images / "0.png"), keep=[images / "0.png"])


@case("loss: learn-motion --out is the reference clip", 2, REFUSED, says=("input",))
def _(env):
    d = env.dir()
    clip = env.video(d / "clip.mp4")
    return Plan(argv=["learn-motion", *env.m, "--video", str(clip), "--prompt", "a person is riding a horse",
                      "--entities", "person,horse", "--inversion-steps", "1", "--out", str(clip), *FAST], keep=[clip])


@case("loss: fuse --out is one of its subjects", 2, REFUSED, says=("input",))
def _(env):
    d = env.dir()
    toy = d / "toy.safetensors"
    toy.write_bytes(env.subject.read_bytes())
    return Plan(argv=["fuse", *env.m, "--subjects", str(toy), str(env.subject2), "--videos-per-subject", "1",
                      "--out", str(toy), *FAST], keep=[toy])


@case("loss: generate on a full disk (ffmpeg writes 0 bytes)", 2, REFUSED, says=("out.mp4",))
def _(env):
    d = env.dir()
    out = d / "out.mp4"
    main_ok(env.generate(out))

    def ffmpeg_writes_nothing():
        import imageio.v3 as iio

        real = iio.imwrite

        def imwrite(uri, *args, **kwargs):
            if str(uri).endswith(".mp4"):
                Path(uri).write_bytes(b"")
                return None
            return real(uri, *args, **kwargs)

        iio.imwrite = imwrite

    return Plan(argv=env.generate(out), patch=ffmpeg_writes_nothing, keep=[out])


# == 3. tracebacks ==============================================================================
def _full_disk_safetensors():
    """Writers of safetensors get the error safetensors really raises on a full disk."""
    from safetensors.torch import save_file

    import videomage.artifact

    videomage.artifact.save_file = lambda tensors, filename, metadata=None: save_file(tensors, "/dev/full", metadata=metadata)


def _safetensors_raises_disk_full():
    """safetensors' own error on a full disk, after a partial write."""
    from safetensors import SafetensorError

    import videomage.artifact

    def save_file(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\x10\x00")
        raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space '
                              'left on device" })')

    videomage.artifact.save_file = save_file


@case("traceback: full disk while saving an artifact (safetensors raises)", 3, REFUSED, says=("toy.safetensors", "disk"))
def _(env):
    d = env.dir()
    (d / "toy.safetensors").write_bytes(env.subject.read_bytes())  # a good artifact from an earlier run
    return Plan(argv=env.learn_subject(env.toy, d / "toy.safetensors"), patch=_safetensors_raises_disk_full,
                keep=[d / "toy.safetensors"])


@case("loss: full disk while saving an artifact (/dev/full: nothing written, no error)", 2, REFUSED,
      says=("toy.safetensors",))
def _(env):
    d = env.dir()
    (d / "toy.safetensors").write_bytes(env.subject.read_bytes())
    return Plan(argv=env.learn_subject(env.toy, d / "toy.safetensors"), patch=_full_disk_safetensors,
                keep=[d / "toy.safetensors"])


@case("traceback: --out in a read-only folder", 3, REFUSED, says=("writable",))
def _(env):
    d = env.dir()
    ro = d / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    return Plan(argv=env.learn_subject(env.toy, ro / "toy.safetensors"), as_user=True)


@case("traceback: photo folder without permission", 3, REFUSED, says=("permission",))
def _(env):
    d = env.dir()
    images = env.photos(d / "photos", (220, 40, 40))
    images.chmod(0o000)
    return Plan(argv=env.learn_subject(images, d / "toy.safetensors"), as_user=True)


@case("traceback: --work-dir names a file", 3, REFUSED, says=("work", "file"))
def _(env):
    d = env.dir()
    (d / "notes.txt").write_text("mine")
    return Plan(argv=env.learn_subject(env.toy, d / "toy.safetensors", "--work-dir", str(d / "notes.txt")),
                keep=[d / "notes.txt"])


@case("traceback: a corrupt checkpoint", 3, REFUSED, says=("checkpoint", "delete"))
def _(env):
    d = env.dir()
    out = d / "toy.safetensors"
    main_ok(env.learn_subject(env.toy, out, "--steps", "2"))
    (ckpt,) = (d / "toy.safetensors.work").glob("ckpt-*/checkpoint.safetensors")
    ckpt.write_bytes(b"\x00" * 64)
    return Plan(argv=env.learn_subject(env.toy, out, "--steps", "2"))


@case("traceback: a recipe that is not UTF-8", 3, REFUSED, says=("utf-8",))
def _(env):
    d = env.dir()
    (d / "r.toml").write_bytes(b'seed = 0\n# caf\xe9\n')
    return Plan(argv=run_recipe_argv(d / "r.toml"))


@case("traceback: the recipe is a folder", 3, REFUSED, says=("folder",))
def _(env):
    d = env.dir()
    (d / "r.toml").mkdir()
    return Plan(argv=run_recipe_argv(d / "r.toml"))


@case("traceback: demo --out names a file", 3, REFUSED, says=("file",))
def _(env):
    d = env.dir()
    (d / "demo").write_text("mine")
    return Plan(argv=["demo", "--out", str(d / "demo"), "--quick"], keep=[d / "demo"])


# One flag with a bad value: (case, item, command, flag, value, words the refusal must say).
BAD_FLAGS = [
    ("traceback: --frames -2", 3, "generate", "--frames", "-2", ("--frames",)),
    ("traceback: --height 100000", 3, "generate", "--height", "100000", ("--height",)),
    ("traceback: --checkpoint-every 0", 3, "learn-subject", "--checkpoint-every", "0", ("--checkpoint-every",)),
    ("traceback: --device cuda on a CPU build", 3, "learn-subject", "--device", "cuda", ("cuda",)),
    ("traceback: --device bogus", 3, "learn-subject", "--device", "bogus", ("bogus",)),
    ("wrong: generate --frames 0", 4, "generate", "--frames", "0", ("--frames",)),
    ("wrong: generate --height 0", 4, "generate", "--height", "0", ("--height",)),
    ("wrong: --grad-accum 0", 4, "learn-subject", "--grad-accum", "0", ("--grad-accum",)),
    ("wrong: --lr nan", 4, "learn-subject", "--lr", "nan", ("--lr",)),
    ("wrong: --guidance-scale nan", 4, "generate", "--guidance-scale", "nan", ("--guidance-scale",)),
    ("wrong: --beta-s nan", 4, "generate-scs", "--beta-s", "nan", ("--beta-s",)),
]


def _bad_flag(command: str, flag: str, value: str):
    def build(env):
        if value == "cuda":
            import torch

            if torch.cuda.is_available():
                pytest.skip("this machine has CUDA")
        out = env.dir() / ("o.mp4" if command.startswith("generate") else "t.safetensors")
        if command == "learn-subject":
            return Plan(argv=env.learn_subject(env.toy, out, flag, value))
        return Plan(argv=env.generate(out, flag, value, sampler="scs" if command == "generate-scs" else "cfg"))

    return build


for _id, _item, _command, _flag, _value, _says in BAD_FLAGS:
    case(_id, _item, REFUSED, says=_says)(_bad_flag(_command, _flag, _value))


@case("wrong: a NaN artifact", 4, REFUSED, says=("nan",))
def _(env):
    from safetensors import safe_open
    from safetensors.torch import save_file

    d = env.dir()
    with safe_open(str(env.subject), framework="pt") as fh:
        meta, t = fh.metadata(), {k: fh.get_tensor(k) for k in fh.keys()}
    t = {k: v * float("nan") if k.startswith("adapter.") else v for k, v in t.items()}
    save_file(t, str(d / "nan.safetensors"), metadata=meta)
    return Plan(argv=env.generate(d / "o.mp4", subjects=d / "nan.safetensors"))


@case("wrong: token <|endoftext|>", 4, REFUSED, says=("token",))
def _(env):
    return Plan(argv=env.learn_subject(env.toy, env.dir() / "t.safetensors", token="<|endoftext|>"))


@case("wrong: token <../../../x> writes outside the output folder", 4, REFUSED, says=("token",))
def _(env):
    d = env.dir()
    deep = d / "a" / "b" / "c"
    deep.mkdir(parents=True)
    return Plan(argv=env.learn_subject(env.toy, deep / "t.safetensors", token="<../../../x>"),
                check=lambda r: not any(p.name.startswith("ckpt-subject-..") or p.name == "x" for p in d.rglob("*")))


def _read(path: Path):
    def call():
        from videomage.media import read_image

        return read_image(path, 16, 16)[0].mean(dim=(1, 2)).tolist()  # mean R, G, B

    return call


@case("wrong: a CMYK jpeg (red) comes out red", 4, WORKED)
def _(env):
    from PIL import Image

    path = env.dir() / "cmyk.jpg"
    Image.new("CMYK", (32, 32), (0, 255, 255, 0)).save(path)
    return Plan(call=_read(path), check=lambda r: r["value"][0] > 0.8 and max(r["value"][1:]) < 0.2)


@case("wrong: a 1-bit png (white) comes out white", 4, WORKED)
def _(env):
    from PIL import Image

    path = env.dir() / "bits.png"
    Image.new("1", (32, 32), 1).save(path)
    return Plan(call=_read(path), check=lambda r: min(r["value"]) > 0.95)


@case("wrong: EXIF rotation is applied", 4, WORKED)
def _(env):
    from PIL import Image

    path = env.dir() / "rotated.jpg"
    image = Image.new("RGB", (64, 32), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 32, 32))  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": the left half ends up on top

    def call():
        from videomage.media import read_image

        frame = read_image(path, 32, 16)[0]
        return [frame[:, :16].mean().item(), frame[:, 16:].mean().item()]

    image.save(path, exif=exif, quality=95)
    return Plan(call=call, check=lambda r: r["value"][0] > 0.8 and r["value"][1] < 0.2)


@case("wrong: a grey+alpha png, which the docs accept", 4, WORKED)
def _(env):
    from PIL import Image

    path = env.dir() / "la.png"
    Image.new("LA", (32, 32), (200, 128)).save(path)
    return Plan(call=_read(path), check=lambda r: all(abs(v - 200 / 255) < 0.02 for v in r["value"]))


# == 5. NaN =====================================================================================
@case("nan: --lr 1e6 stops, and the checkpoint kept is finite", 5, REFUSED, says=("step",))
def _(env):
    d = env.dir()
    out = d / "t.safetensors"

    def finite(r):
        import torch

        for ckpt in (d / "t.safetensors.work").glob("ckpt-*/checkpoint.safetensors"):
            if not all(bool(torch.isfinite(v).all()) for k, v in tensors(ckpt).items() if v.is_floating_point()):
                return False
        return True

    return Plan(argv=env.learn_subject(env.toy, out, "--steps", "8", "--lr", "1e6", "--text-lr", "1e6",
                                       "--checkpoint-every", "1"), check=finite)


# == 6. memory from tiny files ==================================================================
def _ffmpeg_colour(path: Path, size: str, seconds: float, fps: int = 8, source: str = "testsrc") -> Path:
    """A clip made by ffmpeg itself (never held in this process): ``testsrc`` patterns or a flat ``color``."""
    import subprocess

    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i",
                    f"{source}=s={size}:d={seconds}:r={fps}", "-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset",
                    "ultrafast", str(path)], check=True)
    return path


def _read_video(path: Path, frames: int = 4):
    def call():
        from videomage.media import read_video

        return list(read_video(path, frames, 32, 32).shape)

    return call


@case("memory: a 4096x4096 mp4", 6, WORKED)
def _(env):
    path = _ffmpeg_colour(env.dir() / "big.mp4", "4096x4096", 1, source="color")  # a few KB on disk
    return Plan(call=_read_video(path), memory=True, check=lambda r: r["value"] == [4, 3, 32, 32] and r["peak_mb"] < 400)


@case("memory: a 12000x12000 png", 6, REFUSED, says=("megapixels", "VIDEOMAGE_MAX_PIXELS"))
def _(env):
    from PIL import Image

    path = env.dir() / "huge.png"
    Image.new("1", (12000, 12000), 1).save(path)
    return Plan(call=_read(path), memory=True, check=lambda r: r["peak_mb"] < 400)


@case("memory: a 20 s 360p clip", 6, WORKED)
def _(env):
    path = _ffmpeg_colour(env.dir() / "long.mp4", "640x360", 20, fps=30)
    return Plan(call=_read_video(path, 8), memory=True, check=lambda r: r["value"] == [8, 3, 32, 32] and r["peak_mb"] < 200)


@case("memory: the pixel limit can be raised", 6, WORKED)
def _(env):
    from PIL import Image

    path = env.dir() / "wide.png"
    Image.new("RGB", (400, 100), (255, 0, 0)).save(path)

    def call():
        os.environ["VIDEOMAGE_MAX_PIXELS"] = "20000"
        from videomage.errors import InputError
        from videomage.media import read_image

        try:
            read_image(path, 16, 16)
            refused = False
        except InputError:
            refused = True
        os.environ["VIDEOMAGE_MAX_PIXELS"] = "40000"
        return [refused, read_image(path, 16, 16).shape[-1]]

    return Plan(call=call, check=lambda r: r["value"] == [True, 16])


# == 7. late failures ===========================================================================
def _nothing_trained(out: Path):
    return lambda r: not list(out.rglob("*.safetensors"))


def _late_recipe(env, body: str) -> Plan:
    """A recipe in a fresh folder, its inputs linked in under relative names (item 8 is about absolute ones)."""
    d = env.dir()
    for name, target in (("toy", env.toy), ("dog", env.dog), ("ride.mp4", env.clip)):
        (d / name).symlink_to(target)
    return Plan(argv=run_recipe_argv(recipe(d, env, body + '[output]\ndir = "out"\n')), check=_nothing_trained(d))


TOY = SUBJECT_TOML.format(images="toy", steps=1)
DOG = SUBJECT_TOML.format(images="dog", steps=1).replace("toy", "dog")


@case("late: a recipe whose motion video is missing", 7, REFUSED, says=("missing.mp4",))
def _(env):
    return _late_recipe(env, TOY + MOTION_TOML.format(video="missing.mp4", entities='["person", "horse"]'))


@case("late: a recipe with an unknown sampler", 7, REFUSED, says=("sampler", "bogus"))
def _(env):
    return _late_recipe(env, TOY + '[sampling]\nprompt = "a <toy>"\nsampler = "bogus"\nsteps = 1\n')


@case("late: a recipe with an unknown mask source", 7, REFUSED, says=("mask_source", "bogus"))
def _(env):
    return _late_recipe(env, TOY + DOG + '[fusion]\nmask_source = "bogus"\nsteps = 1\nvideos_per_subject = 1\n')


@case('late: recipe entities = "cat" (read as c, a, t)', 7, REFUSED, says=("entities", "cat"))
def _(env):
    motion = MOTION_TOML.format(video="ride.mp4", entities='"cat"').replace("a person is riding a horse", "a cat is jumping")
    return _late_recipe(env, TOY + motion)


@case("late: learn-subject --out is a folder", 7, REFUSED, says=("folder",))
def _(env):
    d = env.dir()
    (d / "out").mkdir()
    return Plan(argv=env.learn_subject(env.toy, d / "out"), check=_nothing_trained(d))


# == 8. recipes with absolute paths =============================================================
@case("absolute: recipe images path", 8, WORKED)
def _(env):
    d = env.dir()
    path = recipe(d, env, SUBJECT_TOML.format(images=env.toy, steps=1) + '[output]\ndir = "out"\n')
    return Plan(argv=run_recipe_argv(path), check=lambda r: (d / "out" / "subjects" / "toy.safetensors").is_file())


@case("absolute: recipe video path", 8, WORKED)
def _(env):
    d = env.dir()
    (d / "photos").symlink_to(env.toy)
    body = SUBJECT_TOML.format(images="photos", steps=1) + MOTION_TOML.format(video=env.clip, entities='["person", "horse"]')
    path = recipe(d, env, body + '[output]\ndir = "out"\n')
    return Plan(argv=run_recipe_argv(path), check=lambda r: (d / "out" / "motion.safetensors").is_file())


@case("absolute: recipe output dir", 8, WORKED)
def _(env):
    d = env.dir()
    (d / "photos").symlink_to(env.toy)
    path = recipe(d, env, SUBJECT_TOML.format(images="photos", steps=1) + f'[output]\ndir = "{d / "abs-out"}"\n')
    return Plan(argv=run_recipe_argv(path), check=lambda r: (d / "abs-out" / "subjects" / "toy.safetensors").is_file())


# == 9. messages ================================================================================
@case("message: a damaged video", 9, REFUSED, says=("junk.mp4", "decoded"), never=("ffmpeg version",))
def _(env):
    d = env.dir()
    (d / "junk.mp4").write_bytes(b"\x00\x01junk" * 50)
    return Plan(argv=["learn-motion", *env.m, "--video", str(d / "junk.mp4"), "--prompt", "a person is riding a horse",
                      "--entities", "person,horse", "--out", str(d / "m.safetensors"), *FAST])


@case("message: a damaged image", 9, REFUSED, says=("0.png",), never=("pip install",))
def _(env):
    d = env.dir()
    images = env.photos(d / "photos", (220, 40, 40))
    (images / "0.png").write_bytes(b"junk" * 20)
    return Plan(argv=env.learn_subject(images, d / "t.safetensors"))


def _odd_entry(kind: str):
    def build(env):
        d = env.dir()
        images = env.photos(d / "photos", (220, 40, 40))
        odd = images / "9.png"
        if kind == "loop":
            odd.symlink_to(odd)
        elif kind == "folder":
            odd.mkdir()
        else:
            os.mkfifo(odd)
        return Plan(argv=env.learn_subject(images, d / "t.safetensors"))

    return build


case("message: a symlink loop among the photos", 9, REFUSED, says=("9.png", "loop"), never=("does not exist",))(_odd_entry("loop"))
case("message: a folder named like a photo", 9, REFUSED, says=("9.png", "folder"), never=("does not exist",))(_odd_entry("folder"))
case("message: a FIFO named like a photo", 9, REFUSED, says=("9.png", "fifo"), never=("does not exist",))(_odd_entry("fifo"))


@case("message: a photo without read permission", 9, REFUSED, says=("0.png", "permission"), never=("re-export",))
def _(env):
    d = env.dir()
    images = env.photos(d / "photos", (220, 40, 40))
    (images / "0.png").chmod(0o000)
    return Plan(argv=env.learn_subject(images, d / "t.safetensors"), as_user=True)


@case("message: an unreadable local model", 9, REFUSED, says=("permission",), never=("download",))
def _(env):
    d = env.dir()
    model = copy_model(env.model, d / "model")
    (model / "unet" / "diffusion_pytorch_model.safetensors").chmod(0o000)
    argv = env.learn_subject(env.toy, d / "t.safetensors")
    argv[argv.index("--model") + 1] = str(model)
    return Plan(argv=argv, as_user=True)


class _Started:
    """A ``videomage`` run in a forked process (no interpreter start-up to wait for)."""

    def __init__(self, argv: list[str]) -> None:
        out = Path(argv[argv.index("--out") + 1])
        self.pid = os.fork()
        if self.pid == 0:
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
                os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
                from videomage.cli import main

                main(argv)
            finally:
                os._exit(0)
        deadline = time.time() + 120
        while not list(out.parent.glob(f"{out.name}.work/ckpt-*/checkpoint.safetensors")) and time.time() < deadline:
            if os.waitpid(self.pid, os.WNOHANG) != (0, 0):
                break
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: nothing of the run's own clean-up happens."""
        import signal

        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)


# == 10. concurrent runs ========================================================================
@case("concurrent: a second run on the same --out", 10, REFUSED, says=("process",))
def _(env):
    d = env.dir()
    out = d / "t.safetensors"
    first = _Started(env.learn_subject(env.toy, out, "--steps", "100000", "--checkpoint-every", "1"))

    def stop(r):
        first.kill()
        return str(first.pid) in r["err"]

    return Plan(argv=env.learn_subject(env.toy, out, "--steps", "2"), check=stop)


@case("holds: after SIGKILL a re-run resumes to the same weights", 0, WORKED)
def _(env):
    d = env.dir()
    out, fresh = d / "t.safetensors", d / "fresh.safetensors"
    first = _Started(env.learn_subject(env.toy, out, "--steps", "6", "--checkpoint-every", "1"))
    first.kill()  # no clean-up runs: the lock must still be free for the re-run
    return Plan(argv=env.learn_subject(env.toy, out, "--steps", "6"),
                check=lambda r: (main_ok(env.learn_subject(env.toy, fresh, "--steps", "6")), same_tensors(out, fresh))[1])


# == what held up must keep holding =============================================================
@case("holds: an oversized safetensors header", 0, REFUSED, says=("evil.safetensors",))
def _(env):
    path = env.dir() / "evil.safetensors"
    path.write_bytes((1 << 60).to_bytes(8, "little") + b"{}")
    return Plan(argv=env.generate(path.with_suffix(".mp4"), subjects=path))


@case("holds: a pickle is never unpickled", 0, REFUSED, says=("evil.safetensors",))
def _(env):
    import pickle

    d = env.dir()
    marker = d / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (d / "evil.safetensors").write_bytes(pickle.dumps(Evil()))
    return Plan(argv=env.generate(d / "o.mp4", subjects=d / "evil.safetensors"), check=lambda r: not marker.exists())


@case("holds: Ctrl-C exits 130", 0, REFUSED, says=("interrupted",))
def _(env):
    def interrupt():
        import videomage.stages.subject

        def stop(*a, **k):
            raise KeyboardInterrupt

        videomage.stages.subject.learn_subject = stop

    return Plan(argv=env.learn_subject(env.toy, env.dir() / "t.safetensors"), patch=interrupt,
                check=lambda r: r["code"] == 130)


@case("modes: an artifact is written with the umask's permissions", 0, WORKED)
def _(env):
    d = env.dir()

    def umask():
        os.umask(0o022)

    return Plan(argv=env.learn_subject(env.toy, d / "t.safetensors"), patch=umask,
                check=lambda r: (d / "t.safetensors").stat().st_mode & 0o777 == 0o644)


# -- pytest ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def env(tiny_model_dir):
    return Env(shared_dir("videomage-hostile-"), tiny_model_dir)


@pytest.mark.parametrize("row", CASES, ids=[c.id for c in CASES])
def test_case(row, env):
    outcome, report = classify(row, env)
    detail = report.escaped or " ".join(_message(report.err)) or report.err.strip()[-600:] or report.extra.get("check", "")
    assert outcome == row.expect, f"{row.id}: {outcome} ({detail})"


def test_every_item_of_the_review_has_cases():
    assert {c.item for c in CASES} >= set(range(1, 11))


# -- the counts, outside pytest ------------------------------------------------------------------
def main() -> None:
    import shutil

    sys.path.insert(0, str(Path(__file__).parents[1]))
    from conftest import save_tiny_model, tiny_configs

    root = shared_dir("videomage-hostile-")
    model = save_tiny_model(root / "tiny", tiny_configs()["tiny"])
    (root / "env").mkdir()
    env = Env(root / "env", model)
    counts = dict.fromkeys(OUTCOMES, 0)
    rows = []
    for row in CASES:
        try:
            outcome, report = classify(row, env)
            said = " ".join(_message(report.err)) or " ".join(report.err.split())[-160:]
            detail = report.escaped or said or report.extra.get("check", "")
            if report.peak_mb is not None:
                detail = f"[peak {report.peak_mb:.0f} MB] {detail}"
        except BaseException as exc:  # noqa: BLE001 - a case whose setup fails on old code counts as a traceback
            if isinstance(exc, KeyboardInterrupt):
                raise
            outcome, detail = "traceback", f"setup: {type(exc).__name__}: {exc}"
        counts[outcome] += 1
        rows.append({"case": row.id, "item": row.item, "expected": row.expect, "outcome": outcome, "detail": detail[:300]})
        print(f"{outcome:27s} {row.id}  | {detail[:140]}", flush=True)
    print(json.dumps({"cases": len(CASES), **counts}, indent=1))
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(json.dumps({"counts": counts, "rows": rows}, indent=1))
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
