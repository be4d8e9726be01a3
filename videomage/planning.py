"""``videomage plan``: the memory and compute a job needs, measured before any weight is loaded.

The plan runs the **real stage code** (:func:`~videomage.stages.subject.learn_subject`,
``learn_motion``, ``fuse``, and the sampler plus the decoder of ``generate``) on the backbone
built on the meta device (:meth:`videomage.Backbone.on_meta`): every tensor has its real shape
and dtype and none has memory. :class:`videomage.memory.LiveBytes` counts the bytes of tensors
alive at each moment, the way an accelerator's allocator counts them, and PyTorch's
``FlopCounterMode`` counts the floating-point operations. So the figures follow the code: a
change in a stage (float32 master weights, checkpointing, what a step keeps) changes the plan
with it, and nothing is modelled by hand.

* **device peak** = the weights of every component (the text encoder and VAE stay on the device
  in every stage) + the largest working set of live tensors during the stage (prior or teacher
  videos, encoding the inputs, the training steps with their optimizer state, sampling, decoding);
* **host peak** = the weights, which are read into host memory before they move to the device;
* **time per step** = the floating-point operations of one training or sampling step (the
  difference between a run of two steps and a run of one) divided by a sustained throughput.

Values a stage reads from tensors (a logged loss, a finiteness check) are read as zero on the
meta device. Stages run with one prior and one teacher video per subject: those are generated
one at a time, so their count does not change the peak.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import torch

from videomage.components import Backbone, VideoSpec
from videomage.errors import ConfigError
from videomage.memory import LiveBytes, meta_kernels, storage_bytes
from videomage.sampling import SamplingRequest

__all__ = ["STAGES", "PlanRequest", "StageEstimate", "plan", "suggest"]

STAGES = ("subject", "motion", "fusion", "generate")
GIB = 2**30


@attrs.frozen(kw_only=True)
class PlanRequest:
    """What to plan: a model, how it is loaded, the video size and the settings that change memory."""

    model: str
    backbone: str | None = None
    dtype: str = "bfloat16"
    frames: int | None = None  # the backbone's native size where None
    height: int | None = None
    width: int | None = None
    gradient_checkpointing: bool = False
    release_text_encoder: bool = False  # the stages' option: the text encoder to the host once prompts are encoded
    rank: int = 4
    images: int = 4  # subject images, encoded together
    subjects: int = 2  # fused subjects
    sampler: str = "scs"
    steps: int = 50  # sampling steps of the final video
    tau: int = 15  # guided SCS steps among them
    #: Further options of the sampler component (e.g. a memory/speed trade-off it owns).
    sampler_options: Mapping[str, Any] = attrs.field(factory=dict, converter=dict)


@attrs.frozen(kw_only=True)
class StageEstimate:
    """The plan of one stage."""

    stage: str
    weights_bytes: int  # every component's parameters and buffers
    working_bytes: int  # the largest set of live tensors above the weights
    step_flops: float  # one training step; for ``generate``, one guided step
    unguided_step_flops: float = 0.0  # ``generate`` only: a step past tau
    steps: int = 0  # training steps, or sampling steps
    guided_steps: int = 0
    released_bytes: int = 0  # weights moved to the host during the stage and still there at its end (a released text encoder)
    above_weights_bytes: int | None = None  # the device peak above the weights when some were released; else working_bytes

    @property
    def device_bytes(self) -> int:
        """Weights and live tensors at the stage's peak (weights moved to the host no longer count)."""
        return self.weights_bytes + (self.working_bytes if self.above_weights_bytes is None else self.above_weights_bytes)

    @property
    def host_bytes(self) -> int:
        return self.weights_bytes

    def seconds(self, tflops: float) -> float:
        """Seconds per step (the guided one for ``generate``) at ``tflops`` sustained."""
        return self.step_flops / (tflops * 1e12)

    def total_seconds(self, tflops: float) -> float:
        flops = self.step_flops * (self.guided_steps or self.steps)
        flops += self.unguided_step_flops * max(self.steps - self.guided_steps, 0)
        return flops / (tflops * 1e12)


class _MetaRun(LiveBytes):
    """:class:`LiveBytes` that also counts floating-point operations (PyTorch's own per-operator
    formulas) and answers a meta tensor's ``item()`` (zero; True for a flag), so that stage code
    which logs a loss or checks that it is finite runs on the meta device.

    Operations are counted here rather than by ``FlopCounterMode``, whose module tracker hooks
    the autograd graph and breaks the recomputation of checkpointed blocks.
    """

    def __init__(self) -> None:
        super().__init__()
        self._formulas = _formulas()
        self.flops = 0
        self.marks: list[float] = []

    def mark(self) -> None:
        self.marks.append(float(self.flops))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default and args[0].device.type == "meta":
            return True if args[0].dtype == torch.bool else 0
        out = super().__torch_dispatch__(func, types, args, kwargs)
        formula = self._formulas.get(func._overloadpacket)
        if formula is not None:
            self.flops += formula(*args, **(kwargs or {}), out_val=out)
        return out


def _formulas() -> dict:
    """PyTorch's per-operator formulas, plus the CPU flash-attention kernel that attention on the
    meta device runs (:func:`~videomage.memory.meta_kernels`), which PyTorch's table lacks: without
    it, every fused attention of a plan counted no operations."""
    from torch.utils.flop_counter import flop_registry, sdpa_backward_flop_count, sdpa_flop_count

    aten = torch.ops.aten

    def forward(query, key, value, *args, out_val=None, **kwargs):
        return sdpa_flop_count(query.shape, key.shape, value.shape)

    def backward(grad_out, query, key, value, *args, out_val=None, **kwargs):
        return sdpa_backward_flop_count(grad_out.shape, query.shape, key.shape, value.shape)

    return {**flop_registry, aten._scaled_dot_product_flash_attention_for_cpu: forward,
            aten._scaled_dot_product_flash_attention_for_cpu_backward: backward}


def weights_bytes(backbone: Backbone) -> int:
    """Bytes of every parameter and buffer the backbone holds (denoiser, VAE, text encoder)."""
    modules = {id(m): m for m in vars(backbone).values() if isinstance(m, torch.nn.Module)}
    text = getattr(getattr(backbone, "text", None), "encoder", None)
    if isinstance(text, torch.nn.Module):
        modules[id(text)] = text
    return storage_bytes(t for m in modules.values() for t in (*m.parameters(), *m.buffers()))


def measure(run: Callable[[], Any], marks: Callable[[_MetaRun], Any] | None = None) -> tuple[int, list[float], Any, _MetaRun]:
    """``(peak live bytes, operations counted at each mark, result, counter)`` of ``run()`` on the
    meta device. The peak counts weights moved off the device as gone from then on (the counter's
    ``peak_live`` does not, and its ``released`` is what is still off at the end).

    ``marks(counter)`` installs the hooks that call ``counter.mark()`` at step boundaries (an
    optimizer step, a scheduler step) and returns their handles; the per-step operations are the
    differences between marks.
    """
    from torch.utils.checkpoint import set_checkpoint_early_stop

    # Without early stop, a checkpointed block's recomputation runs whole, as its first forward did.
    with set_checkpoint_early_stop(False), meta_kernels(), _MetaRun() as live:
        handles = marks(live) if marks is not None else ()
        try:
            result = run()
        finally:
            for h in handles:
                h.remove()
    return live.peak, live.marks, result, live


def _optimizer_steps(counter: _MetaRun):
    from torch.optim.optimizer import register_optimizer_step_post_hook

    return [register_optimizer_step_post_hook(lambda *args: counter.mark())]


def _per_step(marks: list[float]) -> float:
    """Operations of one steady step: between the last two marks (the first step also encodes prompts)."""
    return marks[-1] - marks[-2] if len(marks) >= 2 else (marks[0] if marks else 0.0)


# -- the stages, run for real on the meta backbone ---------------------------------------------
#: Artifacts planned stages produced, by model, shapes and stage (see ``_Job.keep``).
_MADE: dict[tuple, Any] = {}


class _Job:
    """A meta backbone of the request's model at the request's size, with the files stages read."""

    def __init__(self, request: PlanRequest, folder: Path, build: Callable[[], Backbone] | None = None) -> None:
        from videomage.plugins import get_registry

        self.request = request
        self.folder = folder
        self.build = build
        registry = get_registry()
        if request.backbone is not None:
            self.cls = registry.get("backbone", request.backbone)
        else:
            from videomage.loading import detect_backbone

            self.cls = registry.get("backbone", detect_backbone(request.model))

    def backbone(self) -> Backbone:
        bb = self.build() if self.build is not None else self.cls.on_meta(self.request.model, dtype=self.request.dtype)
        spec = bb.video_spec
        bb.video_spec = VideoSpec(height=self.request.height or spec.height, width=self.request.width or spec.width,
                                  frames=self.request.frames or spec.frames, fps=spec.fps)
        return bb

    def options(self, **extra):
        from videomage.stages.common import StageOptions

        return StageOptions(progress=False, prior_count=1, prior_steps=1, gradient_checkpointing=self.request.gradient_checkpointing,
                            release_text_encoder=self.request.release_text_encoder, **extra)

    def images(self) -> Path:
        from PIL import Image

        folder = self.folder / "images"
        if not folder.is_dir():
            folder.mkdir()
            for i in range(self.request.images):  # the stage resizes them to the video size
                Image.new("RGB", (16, 16), (40 * i, 90, 160)).save(folder / f"{i}.png")
        return folder

    def _key(self) -> tuple:
        r = self.request
        return (self.cls, r.model, r.dtype, r.rank, r.subjects, r.images, r.frames, r.height, r.width)

    def keep(self, stage: str, artifact) -> None:
        """Save what a planned stage produced (as zeros) for the stages after it, and remember it for
        later plans of the same model and shapes (``suggest`` plans a job several times; a plan that
        measures for real reuses the artifacts its estimate made: only their shapes matter)."""
        _MADE[(*self._key(), stage)] = artifact
        if stage == "subject":
            for i in range(self.request.subjects):
                _cpu_copy(artifact, token=f"<subject{i}>").save(self.folder / f"subject{i}.safetensors")
        elif stage == "motion":
            _cpu_copy(artifact).save(self.folder / "motion.safetensors")
        elif stage == "fusion":
            _cpu_copy(artifact).save(self.folder / "fused.safetensors")

    def artifacts(self) -> tuple[list[Path], Path]:
        """Subject and motion artifacts of the right shapes, from the planned stages or made now."""
        subjects = [self.folder / f"subject{i}.safetensors" for i in range(self.request.subjects)]
        motion = self.folder / "motion.safetensors"
        for stage, path, runner in (("subject", subjects[0], _subject), ("motion", motion, _motion)):
            if not path.is_file():
                made = _MADE.get((*self._key(), stage))
                self.keep(stage, made if made is not None else measure(runner(self), _optimizer_steps)[2])
        return subjects, motion

    def fused(self) -> Path:
        """The fused artifact of the planned fusion, or, without one, a subject artifact of the fused rank."""
        path = self.folder / "fused.safetensors"
        if not path.is_file():
            subjects, _ = self.artifacts()
            from videomage.artifact import Artifact

            art = Artifact.load(subjects[0])
            n = self.request.subjects
            tensors = {k: v.repeat(n, 1) if "lora_A" in k else v.repeat(1, n) for k, v in art.adapter_tensors.items()}
            attrs.evolve(art, kind="fused", adapter_tensors=tensors,
                         adapter_config={**art.adapter_config, "rank": self.request.rank * n}).save(path)
        return path

    def clip(self, frames: int) -> Path:
        from videomage.media import write_gif

        path = self.folder / f"clip-{frames}.gif"
        if not path.is_file():
            write_gif(torch.rand(frames, 3, 16, 16), path)
        return path


def _cpu_copy(artifact, token: str | None = None):
    """The artifact with zero CPU tensors of its meta tensors' shapes, to save and load like a real one
    (optionally under another token, so one subject run stands for every subject of a fusion)."""
    def zeros(tensors):
        return {k: torch.zeros(v.shape, dtype=v.dtype) for k, v in tensors.items()}

    embeddings = zeros(artifact.embeddings)
    tokens = dict(artifact.tokens)
    if token is not None:
        (old, word), = tokens.items()
        tokens, embeddings = {token: word}, {token: embeddings[old]}
    return attrs.evolve(artifact, adapter_tensors=zeros(artifact.adapter_tensors), embeddings=embeddings, tokens=tokens)


#: Training steps a stage runs for its plan: the second is a steady one (the first also sets up
#: the optimizer state and encodes the prompts), so its operations are one step's.
PLAN_STEPS = 2


def _subject(job: _Job):
    from videomage.config import SubjectConfig
    from videomage.loading import make_adapter
    from videomage.stages.subject import learn_subject

    bb = job.backbone()
    config = SubjectConfig(token="<subject0>", class_word="toy", images=job.images(), steps=PLAN_STEPS, rank=job.request.rank)
    return lambda: learn_subject(bb, make_adapter(), config, job.options())


def _motion(job: _Job):
    from videomage.config import MotionConfig
    from videomage.loading import make_adapter
    from videomage.stages.motion import learn_motion

    bb = job.backbone()
    config = MotionConfig(video=job.clip(bb.video_spec.frames), prompt="a person is riding a horse",
                          entities=("person", "horse"), steps=PLAN_STEPS, inversion_steps=1, rank=job.request.rank)
    return lambda: learn_motion(bb, make_adapter(), config, job.options())


def _fusion(job: _Job):
    from videomage.config import FusionConfig
    from videomage.loading import make_adapter
    from videomage.stages.fusion import fuse

    subjects, _ = job.artifacts()
    bb = job.backbone()
    config = FusionConfig(steps=PLAN_STEPS, videos_per_subject=1)
    return lambda: fuse(bb, make_adapter(), subjects, config, job.options())


def guided_option(sampler: str) -> str | None:
    """The option of ``sampler`` that counts its guided (costlier) first steps, which a sampler
    declares as ``guided_steps_option``; ``None`` for a sampler whose steps all cost the same."""
    from videomage.plugins import get_registry

    return getattr(get_registry().get("sampler", sampler), "guided_steps_option", None)


def _generate(job: _Job, guided: int):
    """Sampling ``guided + 1`` steps (the last unguided) and decoding, marked at each scheduler step."""
    from videomage.loading import make_adapter
    from videomage.plugins import get_registry
    from videomage.stages.generate import install_concepts
    from videomage.text import release_text_encoder

    subjects, motion = job.artifacts()
    bb = job.backbone()
    adapter = make_adapter()
    sampler = job.request.sampler
    prompt = " and ".join(f"<subject{i}>" for i in range(job.request.subjects)) + " are riding"

    def run():
        from videomage.stages.generate import concepts_of

        installed = install_concepts(bb, adapter, job.fused(), motion)
        request = SamplingRequest(prompt=prompt, steps=guided + 1, progress=False, **concepts_of(installed))
        option = guided_option(sampler)  # the sampler's own count of guided steps, if it has one
        values = {**job.request.sampler_options, **({option: guided} if option else {})}
        component = get_registry().create("sampler", sampler, **values)
        release_text_encoder(bb, component.prompts(request), job.request.release_text_encoder)
        latents = component.sample(bb, adapter, request)
        with torch.no_grad():
            return bb.decode_latents(latents)

    def marks(counter: _MetaRun):
        make = bb.make_scheduler

        def marked(name=None):
            # A subclass, not a patched method: samplers may deep-copy their scheduler (to probe it),
            # and a copy must step itself.
            scheduler = make(name)
            base = type(scheduler)
            scheduler.__class__ = type(base.__name__, (base,), {"step": _marking_step(base.step, counter)})
            return scheduler

        bb.make_scheduler = marked
        return [_Restore(bb, "make_scheduler")]

    return run, marks


def _marking_step(step, counter: _MetaRun):
    def counted(self, *args, **kwargs):
        out = step(self, *args, **kwargs)
        counter.mark()
        return out

    return counted


class _Restore:
    """A handle whose ``remove()`` drops an instance attribute that shadows the class's."""

    def __init__(self, obj: Any, name: str) -> None:
        self.obj, self.name = obj, name

    def remove(self) -> None:
        self.obj.__dict__.pop(self.name, None)


TRAINING_STEPS = {"subject": 300, "motion": 300, "fusion": 200}  # the stages' default step counts


def plan(request: PlanRequest, stages: Sequence[str] = STAGES, *, log: Callable[[str], None] | None = None,
         build: Callable[[], Backbone] | None = None) -> list[StageEstimate]:
    """Estimate each of ``stages`` for ``request``; nothing is loaded or downloaded.

    ``log`` is told when each stage starts (a real-size stage takes a minute or so on a CPU).
    ``build`` replaces the meta-device backbone with one it returns: given a loaded model, the
    same runs *measure* the stages (what the tests compare the plan with).
    """
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ConfigError(f"plan: unknown stage {unknown[0]!r}; choose from {', '.join(STAGES)}")
    if "generate" in stages:  # a wrong sampler name or option fails now, not after the other stages' plans
        from videomage.plugins import get_registry

        get_registry().build_options("sampler", request.sampler, request.sampler_options)
    out = []
    with tempfile.TemporaryDirectory(prefix="videomage-plan-") as tmp, _quiet():
        job = _Job(request, Path(tmp), build)
        weights = weights_bytes(job.backbone())
        for stage in stages:
            if log is not None:
                log(f"planning {stage} ...")
            if stage == "generate":
                guides = guided_option(request.sampler) is not None
                guided = min(2, request.tau, request.steps) if guides else 1
                run, marks = _generate(job, guided)
                peak, m, _, live = measure(run, marks)
                # The last marks are the sampling steps (a sampler may step copies of its scheduler
                # first): with two guided steps and one unguided, the second guided one is steady.
                unguided = m[-1] - m[-2] if len(m) >= 2 else 0.0
                steady = m[-2] - m[-3] if guides and guided >= 2 and len(m) >= 3 else unguided
                tau = min(request.tau, request.steps) if guides else 0
                out.append(StageEstimate(stage=stage, weights_bytes=weights, step_flops=steady, unguided_step_flops=unguided,
                                         steps=request.steps, guided_steps=tau, **_memory(peak, live)))
                continue
            runner = {"subject": _subject, "motion": _motion, "fusion": _fusion}[stage]
            peak, m, artifact, live = measure(runner(job), _optimizer_steps)
            job.keep(stage, artifact)
            out.append(StageEstimate(stage=stage, weights_bytes=weights, step_flops=_per_step(m),
                                     steps=TRAINING_STEPS[stage], **_memory(peak, live)))
    return out


def _memory(peak: int, live: _MetaRun) -> dict[str, Any]:
    """A stage's memory fields: its working set, and where weights left the device, its peak above them."""
    if live.peak_live == peak and not live.released:  # nothing was released
        return {"working_bytes": peak}
    return {"working_bytes": live.peak_live, "above_weights_bytes": peak, "released_bytes": live.released}


@contextmanager
def _quiet() -> Iterator[None]:
    """Library warnings about meta tensors and progress bars say nothing about the plan."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def suggest(request: PlanRequest, budget_bytes: int, stages: Sequence[str] = STAGES) -> list[tuple[str, PlanRequest, list[StageEstimate]]]:
    """Settings that bring every stage under ``budget_bytes``, cheapest change first.

    Each candidate is ``(what changed, request, estimates)``; an empty list means none of the
    changes this planner knows (a half-precision base model, activation checkpointing, releasing
    the text encoder once prompts are encoded), alone or together, fits.
    """
    savers = [(what, change) for what, change, needed in (
        ("a bfloat16 base model (--dtype bfloat16)", {"dtype": "bfloat16"}, request.dtype == "float32"),
        ("activation checkpointing (--gradient-checkpointing)", {"gradient_checkpointing": True},
         not request.gradient_checkpointing),
        ("the text encoder released after encoding (--release-text-encoder)", {"release_text_encoder": True},
         not request.release_text_encoder and any(s != "subject" for s in stages)),  # subject learning keeps it
    ) if needed]
    # Each saver alone, then (where there are several) all of them together.
    candidates = [(what, attrs.evolve(request, **change)) for what, change in savers]
    if len(savers) > 1:
        every = {k: v for _, change in savers for k, v in change.items()}
        candidates.append((" and ".join(what.split(" (")[0] for what, _ in savers), attrs.evolve(request, **every)))
    fits = []
    for what, candidate in candidates:
        estimates = plan(candidate, stages)
        if all(e.device_bytes <= budget_bytes for e in estimates):
            fits.append((what, candidate, estimates))
    return fits
