"""The trainer every learning stage runs: AdamW over named parameter groups, gradient
accumulation, optional mixed precision, periodic atomic checkpoints and exact resume.

The trainer knows nothing about the method: a stage hands it parameter groups and a
``step_loss(step, generator)`` function returning an :class:`~videomage.ObjectiveOutput`.
All randomness of a step must come from ``generator``; its state is checkpointed, so a run
resumed from step ``k`` computes the same steps as an uninterrupted one.

Data parallel: when started by ``accelerate launch`` or ``torchrun`` (``WORLD_SIZE`` > 1), the
trainer joins the process group, gives each rank its own data stream (seed + rank), averages
gradients across ranks before each optimizer step, and writes checkpoints from rank 0 only, so
every rank ends with the same weights.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path

import attrs
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from videomage.artifact import atomic_write
from videomage.components import ObjectiveOutput
from videomage.errors import ConfigError, TrainingError

__all__ = ["ParamGroup", "Trainer", "TrainerConfig"]

CHECKPOINT = "checkpoint.safetensors"


@attrs.frozen(kw_only=True)
class ParamGroup:
    """Parameters trained at one learning rate (e.g. the LoRA at 1e-4, the token at 1e-5)."""

    name: str
    params: Sequence[torch.nn.Parameter] = attrs.field(converter=tuple)
    lr: float
    weight_decay: float = 0.0


def _mixed(inst, attr, value):
    if value not in ("no", "bf16", "fp16"):
        raise ConfigError(f"TrainerConfig.mixed_precision: expected 'no', 'bf16' or 'fp16', got {value!r}")


@attrs.frozen(kw_only=True)
class TrainerConfig:
    """How to train: steps, accumulation, precision, checkpoints, validation."""

    steps: int
    grad_accum: int = 1
    mixed_precision: str = attrs.field(default="no", validator=_mixed)
    max_grad_norm: float | None = 1.0
    checkpoint_every: int = 50
    validate_every: int | None = None
    seed: int = 0
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
        self.rank, self.world = _init_distributed()
        self.generator = torch.Generator().manual_seed(config.seed * 1_000_003 + self.rank)
        self.optimizer = torch.optim.AdamW(
            [{"params": list(g.params), "lr": g.lr, "weight_decay": g.weight_decay} for g in self.groups]
        )
        self.step = 0
        self.checkpoint_step: int | None = None  # the step the checkpoint on disk holds (always finite)
        self.history: list[dict[str, float]] = []

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
        while self.step < self.config.steps:
            self.optimizer.zero_grad(set_to_none=True)
            logs: dict[str, float] = {}
            total = 0.0
            for _ in range(self.config.grad_accum):
                with self._autocast():
                    out = self.step_loss(self.step, self.generator)
                if not torch.isfinite(out.loss):
                    raise TrainingError(
                        f"{self.config.description}: the loss became {float(out.loss)} at step {self.step + 1} "
                        f"(parts: {dict(out.logs)}). Lower the learning rate, disable mixed precision, or "
                        f"check the inputs; {self._checkpoint_note()}"
                    )
                (out.loss / self.config.grad_accum).backward()
                total += out.loss.detach().item() / self.config.grad_accum
                for k, v in out.logs.items():
                    logs[k] = logs.get(k, 0.0) + float(v) / self.config.grad_accum
            logs["loss"] = total
            self._sync_gradients(params)
            if self.config.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
            self.optimizer.step()
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

    def _autocast(self):
        if self.config.mixed_precision == "no":
            return nullcontext()
        device = self.groups[0].params[0].device.type
        dtype = torch.bfloat16 if self.config.mixed_precision == "bf16" else torch.float16
        return torch.autocast(device_type=device, dtype=dtype)

    def _sync_gradients(self, params: list[torch.nn.Parameter]) -> None:
        if self.world == 1:
            return
        import torch.distributed as dist

        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad)
            p.grad /= self.world

    # -- checkpoints -----------------------------------------------------------------------
    def _tensors(self) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {"rng.generator": self.generator.get_state(), "rng.torch": torch.get_rng_state()}
        for gi, group in enumerate(self.groups):
            for pi, p in enumerate(group.params):
                key = f"{gi}.{pi}"
                out[f"param.{key}"] = p.detach().cpu().contiguous()
                state = self.optimizer.state.get(p, {})
                for name in ("exp_avg", "exp_avg_sq", "step"):
                    if name in state:
                        value = state[name]
                        value = value if torch.is_tensor(value) else torch.tensor(float(value))
                        out[f"optim.{key}.{name}"] = value.detach().cpu().contiguous()
        return out

    def save_checkpoint(self) -> None:
        """Write params, optimizer state and RNG states atomically (rank 0 only)."""
        if self.rank != 0 or self.checkpoint_dir is None:
            return
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        meta = {"step": str(self.step), "layout": json.dumps([[g.name, len(g.params)] for g in self.groups])}
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
        if any(v.is_floating_point() and not bool(torch.isfinite(v).all()) for k, v in tensors.items() if k.startswith("param.")):
            raise TrainingError(f"checkpoint {str(path)!r} holds NaN or infinite weights (it was written by a run that "
                                f"diverged); delete it and re-run with a lower learning rate")
        expected = [[g.name, len(g.params)] for g in self.groups]
        if layout != expected:
            raise TrainingError(
                f"checkpoint {str(path)!r} holds parameter groups {layout}, this run trains {expected}; "
                f"it belongs to another job. Delete it or choose another output folder."
            )
        with torch.no_grad():
            for gi, group in enumerate(self.groups):
                for pi, p in enumerate(group.params):
                    key = f"{gi}.{pi}"
                    if tensors[f"param.{key}"].shape != p.shape:
                        raise TrainingError(f"checkpoint {str(path)!r} does not match this job's parameter shapes")
                    p.copy_(tensors[f"param.{key}"])
                    if f"optim.{key}.exp_avg" in tensors:
                        self.optimizer.state[p] = {
                            "step": tensors[f"optim.{key}.step"],
                            "exp_avg": tensors[f"optim.{key}.exp_avg"].to(p.device),
                            "exp_avg_sq": tensors[f"optim.{key}.exp_avg_sq"].to(p.device),
                        }
        self.generator.set_state(tensors["rng.generator"])
        torch.set_rng_state(tensors["rng.torch"])
        self.step = int(meta["step"])
        self.checkpoint_step = self.step


def _init_distributed() -> tuple[int, int]:
    """Join the process group when a launcher (accelerate, torchrun) started several processes."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()

