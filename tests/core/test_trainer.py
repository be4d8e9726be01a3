"""The trainer: it lowers a loss, resumes exactly, accumulates faithfully and stops on NaN."""

from __future__ import annotations

import pytest
import torch

from videomage.components import ObjectiveOutput
from videomage.errors import TrainingError
from videomage.trainer import CHECKPOINT, ParamGroup, Trainer, TrainerConfig

TRUE_W = torch.tensor([1.5, -2.0, 0.5])


def regression_problem():
    w = torch.nn.Parameter(torch.zeros(3))
    b = torch.nn.Parameter(torch.zeros(1))

    def step_loss(step, generator):
        x = torch.randn(8, 3, generator=generator)
        y = x @ TRUE_W + 0.3
        loss = ((x @ w + b - y) ** 2).mean()
        return ObjectiveOutput(loss=loss, logs={"mse": loss.item()})

    return w, b, step_loss


def run(steps, tmp=None, **cfg):
    w, b, step_loss = regression_problem()
    groups = [ParamGroup(name="w", params=[w], lr=0.05), ParamGroup(name="b", params=[b], lr=0.01)]
    config = TrainerConfig(steps=steps, progress=False, seed=7, **cfg)
    history = Trainer(config, groups, step_loss, checkpoint_dir=tmp).fit()
    return w.detach().clone(), b.detach().clone(), history


def test_loss_goes_down():
    _, _, history = run(60)
    assert history[-1]["loss"] < 0.2 * history[0]["loss"]


def test_groups_keep_their_learning_rates():
    w, b, _ = run(1, max_grad_norm=None)
    # Adam's first step moves every coordinate by about its learning rate.
    assert torch.allclose(w.abs(), torch.full((3,), 0.05), atol=1e-3)
    assert torch.allclose(b.abs(), torch.full((1,), 0.01), atol=1e-3)


def test_resume_equals_an_uninterrupted_run(tmp_path):
    w_full, b_full, _ = run(20)
    run(12, tmp_path, checkpoint_every=4)  # "interrupted" after 12 steps (checkpoint at 12)
    w_res, b_res, history = run(20, tmp_path, checkpoint_every=4)
    assert len(history) == 8  # only the remaining steps ran
    assert torch.equal(w_res, w_full) and torch.equal(b_res, b_full)


def test_checkpoint_of_another_job_is_refused(tmp_path):
    run(2, tmp_path, checkpoint_every=1)
    p = torch.nn.Parameter(torch.zeros(3))
    trainer = Trainer(TrainerConfig(steps=4, progress=False), [ParamGroup(name="other", params=[p], lr=0.1)],
                      lambda s, g: ObjectiveOutput(loss=(p**2).sum()), checkpoint_dir=tmp_path)
    with pytest.raises(TrainingError, match="another job"):
        trainer.fit()


def test_gradient_accumulation_matches_the_mean_gradient():
    p = torch.nn.Parameter(torch.tensor([1.0]))
    seen = []

    def step_loss(step, generator):
        k = len(seen) + 1.0
        seen.append(k)
        return ObjectiveOutput(loss=k * p.sum())

    trainer = Trainer(TrainerConfig(steps=1, grad_accum=3, progress=False, max_grad_norm=None),
                      [ParamGroup(name="p", params=[p], lr=0.1)], step_loss)
    trainer.optimizer.step = lambda: None  # look at the gradient the optimizer would get
    trainer.fit()
    assert p.grad.item() == pytest.approx((1 + 2 + 3) / 3)


def test_nan_loss_is_a_clear_error_and_keeps_the_checkpoint(tmp_path):
    p = torch.nn.Parameter(torch.tensor([1.0]))

    def step_loss(step, generator):
        return ObjectiveOutput(loss=p.sum() * (float("nan") if step == 3 else 1.0), logs={"part": 1.0})

    trainer = Trainer(TrainerConfig(steps=5, progress=False, checkpoint_every=1),
                      [ParamGroup(name="p", params=[p], lr=0.1)], step_loss, checkpoint_dir=tmp_path)
    with pytest.raises(TrainingError, match="nan at step 4.*Lower the learning rate"):
        trainer.fit()
    assert (tmp_path / CHECKPOINT).exists()


def test_half_precision_parameters_step_through_float32_masters(tmp_path):
    # A bf16 tensor near 1 has a spacing of 2**-7: 20 Adam steps at 1e-5 (2e-4 in all) round away in bf16.
    p = torch.nn.Parameter(torch.ones(64, dtype=torch.bfloat16))
    direction = torch.randn(64, generator=torch.Generator().manual_seed(0))

    def step_loss(step, generator):
        return ObjectiveOutput(loss=(p.float() * direction).sum())

    trainer = Trainer(TrainerConfig(steps=20, progress=False, checkpoint_every=20),
                      [ParamGroup(name="p", params=[p], lr=1e-5)], step_loss, checkpoint_dir=tmp_path)
    trainer.fit()
    master = trainer.optimizer.param_groups[0]["params"][0]
    assert master.dtype == torch.float32 and trainer.optimizer.state[master]["exp_avg"].dtype == torch.float32
    assert (master != 1.0).float().mean() >= 0.95  # every entry moved by about 2e-4
    assert torch.equal(p.detach(), master.to(torch.bfloat16))  # the model holds the rounded master
    from safetensors.torch import load_file

    assert load_file(str(tmp_path / CHECKPOINT))["param.p.0"].dtype == torch.float32  # resume keeps the precision


def test_float16_gradients_are_loss_scaled():
    # d(loss)/dy = 1e-9 is below float16's smallest number: without a scaler the gradient is zero.
    w = torch.nn.Parameter(torch.ones(8))
    x = torch.rand(4, 8, generator=torch.Generator().manual_seed(0)) + 0.5

    def step_loss(step, generator):
        return ObjectiveOutput(loss=(x @ w).float().sum() * 1e-9)

    trainer = Trainer(TrainerConfig(steps=3, progress=False, mixed_precision="fp16", max_grad_norm=None),
                      [ParamGroup(name="w", params=[w], lr=1e-3)], step_loss)
    trainer.fit()
    assert trainer.scaler is not None
    assert (w.detach() < 1.0).all()  # every entry stepped against its (tiny) gradient


def test_checkpoint_state_follows_names_not_positions(tmp_path):
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    target = {"<a>": 1.0, "<b>": -1.0}

    def trainer_for(names, params, steps):
        def step_loss(step, generator):
            return ObjectiveOutput(loss=sum(((q - target[n]) ** 2).sum() for n, q in zip(names, params)))

        return Trainer(TrainerConfig(steps=steps, progress=False, checkpoint_every=1),
                       [ParamGroup(name="tokens", params=params, names=names, lr=0.1)], step_loss, checkpoint_dir=tmp_path)

    trainer_for(["<b>"], [b], 3).fit()
    resumed = torch.nn.Parameter(torch.zeros(2))
    trainer_for(["<b>"], [resumed], 5).fit()
    assert torch.all(resumed < -0.3)  # <b>'s own state came back and went on towards -1
    with pytest.raises(TrainingError, match="another job"):
        trainer_for(["<a>"], [torch.nn.Parameter(torch.zeros(2))], 5).fit()


def test_streams_of_one_seed_differ_and_the_default_stream_is_unchanged():
    from videomage.trainer import stream_seed

    assert stream_seed(7, "") == 7 * 1_000_003
    seeds = {stream_seed(7, s) for s in ("subject/<a>", "subject/<b>", "motion/inversion", "motion/adapter")}
    assert len(seeds) == 4 and stream_seed(7, "subject/<a>") != stream_seed(8, "subject/<a>")
