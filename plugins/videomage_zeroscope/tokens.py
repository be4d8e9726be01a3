"""The CLIP tokenizer and text encoder, with learned tokens and cached prompt encodings.

Learned tokens (``<toy>``) are added to the tokenizer as whole tokens and get a new row of the
text encoder's input embedding matrix, initialised from their init word (the mean of its
pieces' rows). The rest of the text encoder stays frozen.

Prompt encodings are cached while the embedding matrix is not being trained: the cache key
includes the matrix's in-place version counter, so any change to a token's row (an optimizer
step, ``set_embeddings``) makes older entries unreachable. Sampling and training loops can thus
call :meth:`TokenTable.encode` every step without re-running the text encoder.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence

import torch
from transformers import CLIPTextModel, CLIPTokenizer

from videomage.errors import ArtifactError, ConfigError

CACHE_SIZE = 64


class TokenTable:
    """Tokenizer + text encoder of one backbone."""

    def __init__(self, tokenizer: CLIPTokenizer, encoder: CLIPTextModel) -> None:
        self.tokenizer = tokenizer
        self.encoder = encoder
        self._cache: OrderedDict[tuple, torch.Tensor] = OrderedDict()

    def weight(self) -> torch.nn.Parameter:
        return self.encoder.get_input_embeddings().weight

    def _word_ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False).input_ids)

    def add(self, tokens: Sequence[str], init_words: Sequence[str]) -> list[int]:
        if len(tokens) != len(init_words):
            raise ConfigError(f"add_tokens: {len(tokens)} tokens but {len(init_words)} init words; give one word per token")
        vocab = self.tokenizer.get_vocab()
        new = [t for t in tokens if t not in vocab]
        inits: dict[str, list[int]] = {}
        for token, word in zip(tokens, init_words):
            if token in new:
                inits[token] = self._word_ids(word)
                if not inits[token]:
                    raise ConfigError(f"init word {word!r} of token {token!r} tokenizes to nothing; choose a real word")
        if new:
            self.tokenizer.add_tokens(new, special_tokens=True)  # special: never split or lower-cased
            self.encoder.resize_token_embeddings(len(self.tokenizer), mean_resizing=False)
            self.encoder.get_input_embeddings().requires_grad_(False)
            weight = self.weight()
            with torch.no_grad():
                for token, ids in inits.items():
                    weight[self.tokenizer.convert_tokens_to_ids(token)] = weight[ids].mean(0)
        return self.ids(tokens)

    def ids(self, tokens: Sequence[str]) -> list[int]:
        vocab = self.tokenizer.get_vocab()
        unknown = [t for t in tokens if t not in vocab]
        if unknown:
            raise ConfigError(f"token {unknown[0]!r} was never added to this backbone; add it (or load its artifact) first")
        return [vocab[t] for t in tokens]

    def embeddings(self, tokens: Sequence[str]) -> dict[str, torch.Tensor]:
        weight = self.weight()
        return {t: weight[i].detach().clone() for t, i in zip(tokens, self.ids(tokens))}

    def set_embeddings(self, embeddings: Mapping[str, torch.Tensor]) -> None:
        width = self.weight().shape[1]
        for token, vector in embeddings.items():
            if vector.shape != (width,):
                raise ArtifactError(
                    f"embedding of token {token!r} has shape {tuple(vector.shape)}, this text encoder needs ({width},); "
                    f"the artifact was made for another text encoder"
                )
        missing = [t for t in embeddings if t not in self.tokenizer.get_vocab()]
        if missing:
            # The init word is irrelevant: the row is overwritten below.
            self.add(missing, [self.tokenizer.unk_token or self.tokenizer.eos_token] * len(missing))
        weight = self.weight()
        with torch.no_grad():
            for token, i in zip(embeddings, self.ids(list(embeddings))):
                weight[i] = embeddings[token].to(weight)

    def input_ids(self, prompts: Sequence[str]) -> torch.Tensor:
        return self.tokenizer(list(prompts), padding="max_length", max_length=self.tokenizer.model_max_length,
                              truncation=True, return_tensors="pt").input_ids

    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        """Last hidden states ``[B, L, D]``; gradients flow to the embedding rows being trained."""
        weight = self.weight()
        key = (tuple(prompts), id(weight), weight._version)
        if not weight.requires_grad and key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        ids = self.input_ids(prompts).to(weight.device)
        out = self.encoder(ids)[0]
        if not weight.requires_grad:
            self._cache[key] = out.detach()
            if len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return out

    def positions(self, prompt: str, word: str) -> list[int]:
        """Positions of the first occurrence of ``word``'s pieces in the encoded ``prompt``."""
        ids = self.input_ids([prompt])[0].tolist()
        piece = self._word_ids(word)
        for start in range(len(ids) - len(piece) + 1):
            if piece and ids[start : start + len(piece)] == piece:
                return list(range(start, start + len(piece)))
        return []
