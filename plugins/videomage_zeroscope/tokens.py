"""ZeroScope's text side: a CLIP tokenizer and text encoder with learned tokens.

Prompts are padded to the tokenizer's ``model_max_length`` (77 for the published models) and
encoded to the last hidden states, as the ModelScope pipeline does. Learned tokens, their
embedding rows and the encoding cache come from :class:`videomage.text.TokenTable`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from videomage.kit import TokenTable


class CLIPText(TokenTable):
    """The CLIP tokenizer and text encoder of one ZeroScope backbone."""

    def input_ids(self, prompts: Sequence[str]) -> torch.Tensor:
        return self.tokenizer(list(prompts), padding="max_length", max_length=self.tokenizer.model_max_length,
                              truncation=True, return_tensors="pt").input_ids

    def run(self, prompts: Sequence[str]) -> torch.Tensor:
        return self.encoder(self.input_ids(prompts).to(self.weight().device))[0]

    def positions(self, prompt: str, word: str, occurrence: int = 0) -> list[int]:
        """The ``occurrence``-th run of ``word``'s ids in the encoded ``prompt`` that starts a word
        (CLIP splits words the same in context; a run inside a longer word, "dog" in "hotdog", is skipped)."""
        ids = self.input_ids([prompt])[0].tolist()
        piece = self.pieces(word)
        names = self.tokenizer.convert_ids_to_tokens(ids)
        whole = set(self.tokenizer.all_special_ids) | set(self.tokenizer.get_added_vocab().values())
        for start in range(1, len(ids) - len(piece) + 1):
            starts_word = names[start - 1].endswith("</w>") or ids[start - 1] in whole or ids[start] in whole
            if piece and starts_word and ids[start : start + len(piece)] == piece:
                if occurrence == 0:
                    return list(range(start, start + len(piece)))
                occurrence -= 1
        return []
