"""The trainer every learning stage runs: AdamW over named parameter groups, gradient
accumulation, optional mixed precision, periodic atomic checkpoints and exact resume.

The trainer knows nothing about the method: a stage hands it parameter groups and a
``step_loss(step, generator)`` function returning an :class:`~videomage.ObjectiveOutput`.
All randomness of a step must come from ``generator``, seeded from ``(seed, stream, rank)``;
its state is checkpointed, so a run resumed from step ``k`` computes the same steps as an
uninterrupted one.

Precision. A trained tensor held in half precision (a LoRA of a bf16 model) gets a float32
*master* copy: the optimizer steps the master, its state is float32, and the model's tensor
is the master rounded after each step. An update far below the half-precision spacing (the
paper's text learning rate of 1e-5 on a bf16 row) therefore accumulates instead of rounding
away. Gradients that pass through float16 compute are loss-scaled (``torch.amp.GradScaler``):
a step whose gradients overflow is skipped and the scale lowered.

Checkpoints key each tensor by its group and its name (``ParamGroup.names``, e.g. a learned
token), so state is restored to the tensor it belongs to, not to a position.

Data parallel: see :mod:`videomage.parallel`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from contextlib import ExitStack, nullcontext
from contextvars import ContextVar
from pathlib import Path

import attrs
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from videomage import parallel
from videomage.artifact import atomic_write
from videomage.components import ObjectiveOutput
from videomage.errors import ConfigError, TrainingError

__all__ = ["ParamGroup", "Trainer", "TrainerConfig", "backward_now", "backward_scope", "stream_seed"]

CHECKPOINT = "checkpoint.safetensors"
FORMAT = "2"  # checkpoint layout: tensors keyed by group and name
HALF = (torch.float16, torch.bfloat16)

_BACKWARD_SCOPE: ContextVar[ExitStack | None] = ContextVar("videomage_backward_scope", default=None)
_BACKWARD_NOW: ContextVar[Callable[[torch.Tensor], None] | None] = ContextVar("videomage_backward_now", default=None)


def backward_scope() -> ExitStack | None:
    """Where an objective keeps a context open until the trainer has backpropagated its loss.

    Inside a trainer's ``step_loss`` this is a ``contextlib.ExitStack`` closed right after
    the step's backward pass; elsewhere it is ``None``. An attention capture needs it: with
    gradient checkpointing the backward pass runs the captured layers again, and they must run
    with the capturing processors, as in the forward pass, to save the same tensors::

        with ExitStack() as local:
            store = (backward_scope() or local).enter_context(backbone.capture_attention(...))
    """
    return _BACKWARD_SCOPE.get()


def backward_now(loss: torch.Tensor) -> torch.Tensor:
    """Backpropagate ``loss``, one additive term of a trainer step's loss, right away; return it detached.

    A step whose loss sums terms from separate forward passes (fusion: one distillation term per
    subject and the attention term) would otherwise hold every pass's graph until the trainer
    backpropagates the sum. Backpropagating each term as soon as it is computed frees its graph
    before the next pass runs: the gradients accumulate to those of the sum, and the step peaks
    at one pass's activations instead of all of them. The step returns the sum of the detached
    terms; the trainer backpropagates only what still has a graph, with the same loss scaling
    and accumulation divisor as a whole loss.

    Outside a trainer step, ``loss`` comes back unchanged, so a caller's sum backpropagates as before.
    """
    run = _BACKWARD_NOW.get()
    if run is None or not loss.requires_grad:
        return loss
    run(loss)
    return loss.detach()


def _names(value) -> tuple[str, ...] | None:
    return None if value is None else tuple(str(v) for v in value)


@attrs.frozen(kw_only=True)
class ParamGroup:
    """Parameters trained at one learning rate (e.g. the LoRA at 1e-4, the token at 1e-5).

    ``names`` (one per parameter) key the checkpoint; without them the position in ``params`` does.
    """

    name: str
    params: Sequence[torch.nn.Parameter] = attrs.field(converter=tuple)
    lr: float
    weight_decay: float = 0.0
    names: tuple[str, ...] | None = attrs.field(default=None, converter=_names)

    @names.validator
    def _check_names(self, attr, value) -> None:
        if value is not None and (len(value) != len(self.params) or len(set(value)) != len(value)):
            raise ConfigError(f"ParamGroup {self.name!r}: expected {len(self.params)} distinct names, got {list(value)}")

    def keys(self) -> tuple[str, ...]:
        return self.names if self.names is not None else tuple(str(i) for i in range(len(self.params)))


def _mixed(inst, attr, value):
    if value not in ("no", "bf16", "fp16"):
        raise ConfigError(f"TrainerConfig.mixed_precision: expected 'no', 'bf16' or 'fp16', got {value!r}")


def stream_seed(seed: int, stream: str, rank: int = 0) -> int:
    """The seed of random stream ``stream`` (a stage and a concept, ``"subject/<toy>"``) of ``seed``.

    Streams of one seed are unrelated to each other. The empty stream keeps the historical
    ``seed * 1_000_003 + rank``, so runs that name no stream reproduce earlier results.
    """
    if not stream:
        return seed * 1_000_003 + rank
    digest = hashlib.sha256(f"{seed}\x00{stream}\x00{rank}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


@attrs.frozen(kw_only=True)
class TrainerConfig:
    """How to train: steps, accumulation, precision, checkpoints, validation.

    ``loss_scaling``: scale the loss for float16 gradients; ``None`` decides alone (on with
    ``mixed_precision="fp16"`` or a float16 trained tensor). A stage sets it for a float16 model.
    """

    steps: int
    grad_accum: int = 1
    mixed_precision: str = attrs.field(default="no", validator=_mixed)
    loss_scaling: bool | None = None
    max_grad_norm: float | None = 1.0
    checkpoint_every: int = 50
    validate_every: int | None = None
    seed: int = 0
    stream: str = ""  # which random stream of ``seed`` this run draws (see ``stream_seed``)
    progress: bool = True
    description: str = "training"


class Trainer:
    """Runs ``config.steps`` optimizer steps of ``step_loss`` over ``groups``."""

    def __init__(
        self,
        config: TrainerConfig,
        groups: Sequence[ParamGroup],
        step_loss: Callable[[int, torch.Generator], ObjectiveOutput],
        *,
        checkpoint_dir: str | Path | None = None,
        validate: Callable[[int], None] | None = None,
    ) -> None:
        self.config = config
        self.groups = list(groups)
        self.step_loss = step_loss
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.validate = validate
        self.rank, self.world = parallel.rank_and_world()
        self.generator = torch.Generator().manual_seed(stream_seed(config.seed, config.stream, self.rank))
        # The optimizer steps float32 tensors: the trained ones themselves, or masters of half ones.
        self.masters: dict[torch.nn.Parameter, torch.Tensor] = {
            p: p.detach().float().clone() for g in self.groups for p in g.params if p.dtype in HALF
        }
        self.optimizer = torch.optim.AdamW(
            [{"params": [self._stepped(p) for p in g.params], "lr": g.lr, "weight_decay": g.weight_decay}
             for g in self.groups]
        )
        params = [p for g in self.groups for p in g.params]
        scaling = config.loss_scaling
        if scaling is None:
            scaling = config.mixed_precision == "fp16" or any(p.dtype == torch.float16 for p in params)
        self.scaler = torch.amp.GradScaler(self._device()) if scaling else None
        self.step = 0
        self.checkpoint_step: int | None = None  # the step the checkpoint on disk holds (always finite)
        self.history: list[dict[str, float]] = []

    def _stepped(self, p: torch.nn.Parameter) -> torch.Tensor:
        return self.masters.get(p, p)

    def _device(self) -> str:
        return self.groups[0].params[0].device.type if self.groups and self.groups[0].params else "cpu"

    # -- the loop --------------------------------------------------------------------------
    def fit(self) -> list[dict[str, float]]:
        """Train to ``config.steps`` (resuming from a checkpoint when one exists); return the logs."""
        self._maybe_resume()
        from tqdm.auto import tqdm

        bar = tqdm(
            total=self.config.steps,
            initial=self.step,
            desc=self.config.description,
            disable=not self.config.progress or self.rank != 0,
        )
        params = [p for g in self.groups for p in g.params]
        stepped = [self._stepped(p) for p in params]
        while self.step < self.config.steps:
            self.optimizer.zero_grad(set_to_none=True)
            for p in params:
                p.grad = None
            logs: dict[str, float] = {}
            total = 0.0
            for _ in range(self.config.grad_accum):
                early: list[bool] = []  # one per term step_loss backpropagated itself (backward_now)

                def backward(part: torch.Tensor) -> None:
                    part = part / self.config.grad_accum
                    (self.scaler.scale(part) if self.scaler else part).backward()
                    early.append(True)

                with ExitStack() as scope:  # what the objective keeps open through the backward pass
                    token = _BACKWARD_SCOPE.set(scope)
                    now = _BACKWARD_NOW.set(backward)
                    try:
                        with self._autocast():
                            out = self.step_loss(self.step, self.generator)
                    finally:
                        _BACKWARD_NOW.reset(now)
                        _BACKWARD_SCOPE.reset(token)
                    if not torch.isfinite(out.loss):
                        raise TrainingError(
                            f"{self.config.description}: the loss became {float(out.loss.detach())} at step "
                            f"{self.step + 1} (parts: {dict(out.logs)}). Lower the learning rate, disable mixed "
                            f"precision, or check the inputs; {self._checkpoint_note()}"
                        )
                    loss = out.loss / self.config.grad_accum
                    if loss.requires_grad or not early:  # (without a graph and nothing done early: autograd's own error)
                        (self.scaler.scale(loss) if self.scaler else loss).backward()
                total += out.loss.detach().item() / self.config.grad_accum
                for k, v in out.logs.items():
                    logs[k] = logs.get(k, 0.0) + float(v) / self.config.grad_accum
            logs["loss"] = total
            for p, master in self.masters.items():
                master.grad = None if p.grad is None else p.grad.float()
            parallel.average_gradients(stepped)
            if self.scaler:
                self.scaler.unscale_(self.optimizer)
            if self.config.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(stepped, self.config.max_grad_norm)
            if self.scaler:
                self.scaler.step(self.optimizer)  # skipped when the scaled gradients overflowed
                self.scaler.update()
            else:
                self.optimizer.step()
            self._write_masters()
            self.step += 1
            self.history.append(logs)
            bar.update(1)
            bar.set_postfix(loss=f"{logs['loss']:.4f}")
            if self.checkpoint_dir and (self.step % self.config.checkpoint_every == 0 or self.step == self.config.steps):
                self.save_checkpoint()
            if self.validate and self.config.validate_every and self.step % self.config.validate_every == 0:
                if self.rank == 0:
                    self.validate(self.step)
        bar.close()
        return self.history

    def _write_masters(self) -> None:
        with torch.no_grad():
            for p, master in self.masters.items():
                p.copy_(master)

    def _autocast(self):
        if self.config.mixed_precision == "no":
            return nullcontext()
        dtype = torch.bfloat16 if self.config.mixed_precision == "bf16" else torch.float16
        return torch.autocast(device_type=self._device(), dtype=dtype)

    # -- checkpoints -----------------------------------------------------------------------
    def _layout(self) -> list:
        return [[g.name, list(g.keys())] for g in self.groups]

    def _tensors(self) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {"rng.generator": self.generator.get_state(), "rng.torch": torch.get_rng_state()}
        if self.scaler:
            state = self.scaler.state_dict()
            out["scaler.scale"] = torch.tensor(float(state["scale"]))
            out["scaler.growth_tracker"] = torch.tensor(int(state["_growth_tracker"]))
        for group in self.groups:
            for name, p in zip(group.keys(), group.params):
                key = f"{group.name}.{name}"
                stepped = self._stepped(p)
                out[f"param.{key}"] = stepped.detach().cpu().contiguous()
                state = self.optimizer.state.get(stepped, {})
                for part in ("exp_avg", "exp_avg_sq", "step"):
                    if part in state:
                        value = state[part]
                        value = value if torch.is_tensor(value) else torch.tensor(float(value))
                        out[f"optim.{key}.{part}"] = value.detach().cpu().contiguous()
        return out

    def save_checkpoint(self) -> None:
        """Write params (float32 masters where kept), optimizer state and RNG states atomically (rank 0 only)."""
        if self.rank != 0 or self.checkpoint_dir is None:
            return
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        meta = {"step": str(self.step), "format": FORMAT, "layout": json.dumps(self._layout())}
        tensors = self._tensors()
        # A diverged step can leave weights NaN while its loss was still finite: never let such
        # weights replace the last good checkpoint, or every re-run resumes into NaN.
        bad = [k for k, v in tensors.items() if k.startswith(("param.", "optim.")) and v.is_floating_point()
               and not bool(torch.isfinite(v).all())]
        if bad:
            raise TrainingError(
                f"{self.config.description}: the weights became NaN or infinite by step {self.step} (tensor {bad[0]}). "
                f"Lower the learning rate or disable mixed precision; {self._checkpoint_note()}"
            )
        atomic_write(self.checkpoint_dir / CHECKPOINT, lambda tmp: save_file(tensors, tmp, metadata=meta))
        self.checkpoint_step = self.step

    def _checkpoint_note(self) -> str:
        if self.checkpoint_dir is None:
            return "there is no checkpoint (no work folder)."
        path = self.checkpoint_dir / CHECKPOINT
        if self.checkpoint_step is None:
            return f"no checkpoint was written yet, so a re-run starts from step 0 ({path} does not exist)."
        return (f"the last checkpoint, {str(path)!r}, holds step {self.checkpoint_step} and is finite; a re-run "
                f"resumes from it.")

    def _maybe_resume(self) -> None:
        path = None if self.checkpoint_dir is None else self.checkpoint_dir / CHECKPOINT
        if path is None or not path.exists():
            return
        try:
            with safe_open(str(path), framework="pt") as fh:
                meta = fh.metadata()
                tensors = {k: fh.get_tensor(k) for k in fh.keys()}
            layout = json.loads(meta["layout"])
            int(meta["step"])
        except (SafetensorError, OSError, KeyError, TypeError, ValueError) as exc:
            raise TrainingError(
                f"checkpoint {str(path)!r} is damaged ({exc}); delete it to restart this stage from step 0"
            ) from None
        if meta.get("format") != FORMAT:
            raise TrainingError(
                f"checkpoint {str(path)!r} was written by an older videomage (tensors kept by position, not by name); "
                f"delete it to restart this stage from step 0"
            )
        if any(v.is_floating_point() and not bool(torch.isfinite(v).all()) for k, v in tensors.items() if k.startswith("param.")):
            raise TrainingError(f"checkpoint {str(path)!r} holds NaN or infinite weights (it was written by a run that "
                                f"diverged); delete it and re-run with a lower learning rate")
        expected = self._layout()
        if layout != expected:
            raise TrainingError(
                f"checkpoint {str(path)!r} holds parameter groups {layout}, this run trains {expected}; "
                f"it belongs to another job. Delete it or choose another output folder."
            )
        with torch.no_grad():
            for group in self.groups:
                for name, p in zip(group.keys(), group.params):
                    key = f"{group.name}.{name}"
                    stepped = self._stepped(p)
                    if tensors[f"param.{key}"].shape != p.shape:
                        raise TrainingError(
                            f"checkpoint {str(path)!r}: {key} has shape {tuple(tensors[f'param.{key}'].shape)}, this job "
                            f"trains {tuple(p.shape)}; it belongs to another model or settings. Delete it to restart."
                        )
                    stepped.copy_(tensors[f"param.{key}"])
                    if f"optim.{key}.exp_avg" in tensors:
                        self.optimizer.state[stepped] = {
                            "step": tensors[f"optim.{key}.step"],
                            "exp_avg": tensors[f"optim.{key}.exp_avg"].to(p.device),
                            "exp_avg_sq": tensors[f"optim.{key}.exp_avg_sq"].to(p.device),
                        }
        self._write_masters()
        if self.scaler and "scaler.scale" in tensors:
            state = self.scaler.state_dict()
            state.update(scale=float(tensors["scaler.scale"]), _growth_tracker=int(tensors["scaler.growth_tracker"]))
            self.scaler.load_state_dict(state)
        self.generator.set_state(tensors["rng.generator"])
        torch.set_rng_state(tensors["rng.torch"])
        self.step = int(meta["step"])
        self.checkpoint_step = self.step
