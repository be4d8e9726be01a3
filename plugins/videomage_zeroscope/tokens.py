"""ZeroScope's text side: a CLIP tokenizer and text encoder with learned tokens.

Prompts are padded to the tokenizer's ``model_max_length`` (77 for the published models) and
encoded to the last hidden states, as the ModelScope pipeline does. Learned tokens, their
embedding rows and the encoding cache come from :class:`videomage.text.TokenTable`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from videomage.text import TokenTable


class CLIPText(TokenTable):
    """The CLIP tokenizer and text encoder of one ZeroScope backbone."""

    def input_ids(self, prompts: Sequence[str]) -> torch.Tensor:
        return self.tokenizer(list(prompts), padding="max_length", max_length=self.tokenizer.model_max_length,
                              truncation=True, return_tensors="pt").input_ids

    def run(self, prompts: Sequence[str]) -> torch.Tensor:
        return self.encoder(self.input_ids(prompts).to(self.weight().device))[0]

    def positions(self, prompt: str, word: str) -> list[int]:
        """The first run of ``word``'s ids in the encoded ``prompt`` (CLIP splits words the same in context)."""
        ids = self.input_ids([prompt])[0].tolist()
        piece = self.pieces(word)
        for start in range(len(ids) - len(piece) + 1):
            if piece and ids[start : start + len(piece)] == piece:
                return list(range(start, start + len(piece)))
        return []
