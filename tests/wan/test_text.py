"""Learned tokens with Wan's T5 tokenizer and UMT5 encoder (shared, tied input embeddings)."""

from __future__ import annotations

import pytest
import torch

from videomage.errors import ArtifactError, ConfigError
from videomage.stages.common import TokenRows


def test_new_token_starts_from_its_init_word(backbone):
    weight = backbone.token_embedding_weight()
    rows, before = weight.shape[0], weight.detach().clone()
    first, second = backbone.add_tokens(["<toy>", "<pup>"], ["toy", "dog"])
    # The tiny UMT5 has one spare row past the tokenizer, as the published one has many: the
    # first token's id lands there, the second's past the end. The matrix is never resized nor
    # written: each learned token has its own row.
    assert first == rows - 1 and second == rows
    assert backbone.token_embedding_weight() is weight and torch.equal(weight, before)
    text = backbone.text
    assert text.encoder.shared.weight is text.encoder.encoder.embed_tokens.weight  # still tied
    toy = text.tokenizer("toy", add_special_tokens=False).input_ids
    learned = backbone.token_embeddings(["<toy>"])["<toy>"]
    assert learned.dtype == torch.float32 and torch.equal(learned, weight[toy].mean(0))
    # The encoder reads the learned row where the token stands (through ``encoder.embed_tokens``).
    ids = text.tokenize(["a <pup>"]).input_ids
    assert torch.equal(text.encoder.encoder.embed_tokens(ids)[0, 1], backbone.token_embeddings(["<pup>"])["<pup>"])
    # A token is one piece, never split; adding it again keeps its embedding.
    assert backbone.word_positions("a <toy> riding a <pup>", "<toy>") == [1]
    backbone.add_tokens(["<toy>"], ["cat"])
    assert torch.equal(backbone.token_embeddings(["<toy>"])["<toy>"], learned)


def test_prompts_encode_to_a_fixed_length_with_zero_padding(backbone):
    embeds = backbone.encode_prompt(["a toy", "a red toy is riding a horse in the snow"])
    assert embeds.shape == (2, backbone.text.length, 16)
    # "a toy" is three positions ("a", "toy", end-of-text): everything after is zero, as in Wan's pipeline.
    assert embeds[0, 3:].abs().sum() == 0 and embeds[0, :3].abs().sum() > 0


def test_prompts_encode_on_their_own_length_as_on_the_full_length(backbone):
    # The encoder runs on the longest prompt's positions only; the hidden states must be the
    # ones a full-length pass (the Wan pipeline's) gives, padding zero-filled.
    text = backbone.text
    prompts = ["a toy", "a red toy is riding a horse"]
    batch = text.tokenize(prompts)
    assert int(batch.attention_mask.sum(1).max()) < text.length  # the test means something
    with torch.no_grad():
        full = text.encoder(batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
        full = full * batch.attention_mask[..., None].to(full.dtype)
        ours = text.run(prompts)
    assert ours.shape == full.shape
    torch.testing.assert_close(ours, full, rtol=1e-5, atol=1e-6)


def test_word_positions_follow_characters_not_ids(backbone):
    prompt = "a dog and a doggo"  # "doggo" is not a word of the tiny vocabulary: letters
    assert backbone.word_positions(prompt, "dog") == [1]
    doggo = backbone.word_positions(prompt, "doggo")
    assert len(doggo) > 1 and doggo[0] > 3
    assert backbone.word_positions(prompt, "horse") == []


def test_textual_inversion_trains_only_the_new_row(backbone):
    backbone.add_tokens(["<toy>"], ["toy"])
    rows = TokenRows(backbone, ["<toy>"], lr=1e-2)
    try:
        weight = backbone.token_embedding_weight()
        (row,) = rows.group.params
        embeds = backbone.encode_prompt(["a <toy> video"])
        # (Not a squared norm: UMT5 ends in an RMS norm, which makes that constant.)
        loss = (embeds * torch.randn(embeds.shape, generator=torch.Generator().manual_seed(0))).sum()
        loss.backward()
        assert row.grad.abs().sum() > 0 and rows.group.names == ("<toy>",)
        assert weight.grad is None and not weight.requires_grad  # the vocabulary is not trained
        with torch.no_grad():
            row -= row.grad
    finally:
        rows.close()
    # Without gradients encodings are cached; the cache must not serve the old encoding after
    # the token's row changed.
    cached = backbone.encode_prompt(["a <toy> video"])
    assert torch.equal(backbone.encode_prompt(["a <toy> video"]), cached)
    with torch.no_grad():
        row += 1.0
    assert not torch.equal(backbone.encode_prompt(["a <toy> video"]), cached)


def test_token_errors_teach(backbone):
    with pytest.raises(ConfigError, match="never added"):
        backbone.token_ids(["<nobody>"])
    with pytest.raises(ConfigError, match="without spaces"):
        backbone.add_tokens(["<two words>"], ["toy"])
    with pytest.raises(ArtifactError, match="another text encoder"):
        backbone.set_token_embeddings({"<toy>": torch.zeros(7)})
    backbone.set_token_embeddings({"<new>": torch.full((16,), 0.5)})
    assert torch.equal(backbone.token_embeddings(["<new>"])["<new>"], torch.full((16,), 0.5))
