"""The locally built CLIP tokenizer."""

from __future__ import annotations

import pytest
from videomage_toyworld.tokenizer import build_tokenizer
from videomage_toyworld.vocabulary import words

from videomage.errors import ConfigError


def test_every_world_word_is_one_token(tmp_path):
    tok = build_tokenizer(tmp_path)
    for word in words():
        assert len(tok.tokenize(word)) == 1, word


def test_unknown_text_still_tokenizes_and_new_tokens_can_be_added(tmp_path):
    tok = build_tokenizer(tmp_path)
    assert len(tok.tokenize("zebra")) > 1  # spelled out, never dropped
    tok.add_tokens(["<toy>"])
    assert tok.tokenize("a <toy> moving left") == ["a</w>", "<toy>", "moving</w>", "left</w>"]


def test_files_reload_identically(tmp_path):
    from transformers import CLIPTokenizer

    tok = build_tokenizer(tmp_path)
    again = CLIPTokenizer.from_pretrained(tmp_path)
    text = "a red circle moving left quickly in the snow"
    assert tok(text).input_ids == again(text).input_ids


def test_a_word_that_cannot_be_one_token_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="expected every vocabulary word to be one token"):
        build_tokenizer(tmp_path, ["a", "a"] + ["</w>"])
