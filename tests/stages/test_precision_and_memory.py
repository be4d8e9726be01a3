"""Training at users' precision and vocabulary sizes: bf16 models, 100x larger embedding matrices.

A learned token's row is trained in float32 whatever the model's dtype, so the paper's text
learning rate (1e-5) moves it; and only the learned rows are trained and checkpointed, so the
optimizer state and the checkpoint do not grow with the vocabulary.
"""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors import safe_open
from transformers import CLIPTextModel

from videomage.config import SubjectConfig
from videomage.loading import load_backbone, make_adapter
from videomage.stages.subject import StageOptions, learn_subject
from videomage.trainer import CHECKPOINT


def share_moved(before: torch.Tensor, after: torch.Tensor) -> float:
    return (before.float() != after.float()).float().mean().item()


def test_a_bf16_model_trains_its_token_row_at_the_papers_text_learning_rate(tiny_model_dir, subject_images):
    backbone, adapter = load_backbone(str(tiny_model_dir), dtype="bfloat16"), make_adapter("lora")
    assert backbone.dtype == torch.bfloat16
    backbone.add_tokens(["<toy>"], ["toy"])
    before = backbone.token_embeddings(["<toy>"])["<toy>"]
    config = SubjectConfig(token="<toy>", class_word="toy", images=subject_images, steps=20, text_lr=1e-5, lambda_reg=0.0)
    art = learn_subject(backbone, adapter, config, StageOptions(progress=False))
    moved = share_moved(before, art.embeddings["<toy>"])
    print(f"bf16, text lr 1e-5, 20 steps: {moved:.1%} of the token row's entries moved")
    assert moved >= 0.95
    # The frozen model stays in bf16; only the trainable tensors are float32.
    assert backbone.dtype == torch.bfloat16 and art.embeddings["<toy>"].dtype == torch.float32


def vocabulary_copy(source, folder, factor):
    """The tiny model with a text encoder whose embedding matrix has ``factor`` times the rows
    (like UMT5, whose published matrix is larger than its tokenizer)."""
    shutil.copytree(source, folder)
    encoder = CLIPTextModel.from_pretrained(str(source), subfolder="text_encoder")
    rows = encoder.get_input_embeddings().weight.shape[0]
    encoder.resize_token_embeddings(rows * factor, mean_resizing=False)
    encoder.save_pretrained(folder / "text_encoder", safe_serialization=True)
    return folder, rows * factor


def footprint(checkpoint):
    """(optimizer-state bytes, checkpoint file bytes) of a trainer checkpoint."""
    with safe_open(str(checkpoint), framework="pt") as fh:
        optim = sum(fh.get_tensor(k).nbytes for k in fh.keys() if k.startswith("optim."))
    return optim, checkpoint.stat().st_size


@pytest.mark.parametrize("factor", [100])
def test_token_memory_does_not_grow_with_the_vocabulary(tiny_model_dir, subject_images, tmp_path, factor):
    sizes = {}
    for name, model in (("small", tiny_model_dir), ("large", None)):
        rows = None
        if model is None:
            model, rows = vocabulary_copy(tiny_model_dir, tmp_path / "large-model", factor)
        backbone, adapter = load_backbone(str(model)), make_adapter("lora")
        if rows is not None:
            assert backbone.token_embedding_weight().shape[0] == rows
        config = SubjectConfig(token="<toy>", class_word="toy", images=subject_images, steps=1, lambda_reg=0.0)
        work = tmp_path / f"work-{name}"
        learn_subject(backbone, adapter, config, StageOptions(progress=False, work_dir=work))
        sizes[name] = footprint(work / "ckpt-subject-toy" / CHECKPOINT)
    print(f"optimizer-state bytes, checkpoint bytes: small {sizes['small']}, {factor}x vocabulary {sizes['large']}")
    assert sizes["small"] == sizes["large"]


def test_a_float16_model_trains_with_loss_scaling(tiny_model_dir, subject_images, monkeypatch):
    import videomage.trainer

    trainers = []
    original = videomage.trainer.Trainer.__init__

    def spy(self, *args, **kwargs):
        original(self, *args, **kwargs)
        trainers.append(self)

    monkeypatch.setattr(videomage.trainer.Trainer, "__init__", spy)
    backbone, adapter = load_backbone(str(tiny_model_dir), dtype="float16"), make_adapter("lora")
    config = SubjectConfig(token="<toy>", class_word="toy", images=subject_images, steps=3, lambda_reg=0.0)
    art = learn_subject(backbone, adapter, config, StageOptions(progress=False))
    (trainer,) = trainers
    assert trainer.scaler is not None  # float16 gradients are scaled, with or without autocast
    assert all(m.dtype == torch.float32 for m in trainer.masters.values()) and trainer.masters  # LoRA masters
    assert torch.isfinite(art.embeddings["<toy>"]).all() and all(torch.isfinite(v.float()).all() for v in art.adapter_tensors.values())
