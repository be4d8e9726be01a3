"""Wan's text side: a T5 tokenizer and the UMT5 encoder, with learned tokens.

Prompts are encoded as the Wan pipeline does: tokenized to a fixed length (512 positions for
the published models, or the tokenizer's ``model_max_length`` when that is shorter), run
through the encoder with the attention mask, and every position after the prompt's end-of-text
token set to zero. Zeroing is a multiplication by the mask, so the graph to the embedding rows
is kept for textual inversion.

Learned tokens (``<toy>``) are added to the tokenizer whole (never split into sentencepiece
pieces) and each gets a row of UMT5's input embedding matrix, initialised to the mean of its
init word's pieces. UMT5 reads its input embeddings from one shared matrix (``shared``, tied to
``encoder.embed_tokens``); the published checkpoint has more rows than the tokenizer has
entries, so a new token may land on a spare row that exists already, and the matrix only grows
when a token id falls past its end.

Learned tokens, their rows and the encoding cache (which, for the 5-billion-parameter UMT5-XXL,
saves a text-encoder pass per sampling step) come from :class:`videomage.text.TokenTable`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch

from videomage.kit import TokenTable

#: Positions the Wan pipeline encodes every prompt to.
MAX_TEXT_LENGTH = 512


def clean(prompt: str) -> str:
    """Collapse whitespace, as the Wan pipeline's prompt cleaning does (without ``ftfy``)."""
    return re.sub(r"\s+", " ", prompt).strip()


class T5Text(TokenTable):
    """The tokenizer and UMT5 encoder of one Wan backbone."""

    def __init__(self, tokenizer, encoder: torch.nn.Module) -> None:
        super().__init__(tokenizer, encoder)
        self.length = min(int(tokenizer.model_max_length), MAX_TEXT_LENGTH)

    def pieces(self, word: str) -> list[int]:
        return super().pieces(clean(word))

    def tokenize(self, prompts: Sequence[str], **kwargs):
        return self.tokenizer([clean(p) for p in prompts], padding="max_length", max_length=self.length,
                              truncation=True, return_tensors="pt", **kwargs)

    def run(self, prompts: Sequence[str]) -> torch.Tensor:
        """Hidden states ``[B, L, D]``, zero after each prompt's end; gradients reach trained rows.

        The encoder runs on the longest prompt's positions only and the rest is zero-filled:
        the same hidden states as encoding all ``L`` positions (padding is masked out of every
        attention, and T5's position bias depends on distances alone), for a fraction of the
        encoder's memory and time, which matters when a token is trained through UMT5-XXL.
        """
        batch = self.tokenize(prompts)
        used = max(int(batch.attention_mask.sum(1).max()), 1)  # read on the host: works on the meta device too
        mask = batch.attention_mask[:, :used].to(self.weight().device)
        hidden = self.encoder(batch.input_ids[:, :used].to(mask.device), attention_mask=mask).last_hidden_state
        hidden = hidden * mask[..., None].to(hidden.dtype)
        return torch.nn.functional.pad(hidden, (0, 0, 0, batch.attention_mask.shape[1] - used))

    def positions(self, prompt: str, word: str, occurrence: int = 0) -> list[int]:
        """Positions of the pieces that spell the ``occurrence``-th whole-word occurrence of ``word`` in ``prompt``.

        Matching is on characters, through the tokenizer's offsets, so a sentencepiece word
        split differently in context is still found. Positions cut off by truncation are dropped.
        """
        text, word = clean(prompt), clean(word)
        if not word:
            return []
        pattern = re.escape(word)
        if word[0].isalnum():
            pattern = r"(?<!\w)" + pattern
        if word[-1].isalnum():
            pattern += r"(?!\w)"
        found = list(re.finditer(pattern, text))[occurrence : occurrence + 1]
        if not found:
            return []
        found = found[0]
        start, end = found.span()
        offsets = self.tokenize([text], return_offsets_mapping=True).offset_mapping[0].tolist()
        return [i for i, (s, e) in enumerate(offsets) if e > s and s < end and e > start]
