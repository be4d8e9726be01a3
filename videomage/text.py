"""Learned tokens in a text encoder, shared by every backbone whose encoder has an input
embedding matrix (CLIP, T5 and the like from ``transformers``).

A learned token (``<toy>``) is added to the tokenizer whole (never split, never lower-cased)
and gets a row of the encoder's input embedding matrix, initialised to the mean of its init
word's pieces. The matrix only grows when a new token's id falls past its end (some checkpoints
carry spare rows). The rest of the encoder stays frozen; textual inversion and subject learning
train the new rows through :meth:`TokenTable.weight`.

Prompt encodings are cached while the embedding matrix is not being trained. The cache key holds
the matrix's in-place version counter, so an optimizer step or :meth:`TokenTable.set_embeddings`
makes older entries unreachable, and samplers may encode every step for free.

A backbone subclasses :class:`TokenTable` for its encoder's conventions (:meth:`~TokenTable.run`,
:meth:`~TokenTable.positions`, optionally :meth:`~TokenTable.pieces`) and mixes
:class:`TextMethods` into its :class:`~videomage.Backbone` for the contract's text methods.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from videomage.errors import ArtifactError, ConfigError

__all__ = ["TextMethods", "TokenTable"]


class TokenTable(ABC):
    """A tokenizer and a text encoder with learned tokens and cached prompt encodings."""

    cache_size = 64

    def __init__(self, tokenizer: Any, encoder: torch.nn.Module) -> None:
        self.tokenizer = tokenizer
        self.encoder = encoder
        self._cache: OrderedDict[tuple, torch.Tensor] = OrderedDict()

    # -- what a backbone defines -----------------------------------------------------------
    @abstractmethod
    def run(self, prompts: Sequence[str]) -> torch.Tensor:
        """Run the encoder: hidden states ``[B, L, D]`` with gradients to the embedding rows."""

    @abstractmethod
    def positions(self, prompt: str, word: str, occurrence: int = 0) -> list[int]:
        """Positions in the encoded ``prompt`` of the pieces of ``word``'s ``occurrence``-th (from 0) whole-word occurrence."""

    def pieces(self, word: str) -> list[int]:
        """The ids ``word`` tokenizes to, without special tokens (an init word's rows)."""
        return [i for i in self.tokenizer(word, add_special_tokens=False).input_ids if i != self.tokenizer.unk_token_id]

    # -- the vocabulary --------------------------------------------------------------------
    def weight(self) -> torch.nn.Parameter:
        return self.encoder.get_input_embeddings().weight

    def add(self, tokens: Sequence[str], init_words: Sequence[str]) -> list[int]:
        if len(tokens) != len(init_words):
            raise ConfigError(f"add_tokens: {len(tokens)} tokens but {len(init_words)} init words; give one word per token")
        vocab = self.tokenizer.get_vocab()
        inits: dict[str, list[int]] = {}
        for token, word in zip(tokens, init_words):
            if token in vocab or token in inits:
                continue  # an existing token keeps its embedding
            if not token.strip() or re.search(r"\s", token):
                raise ConfigError(f"learned token {token!r} must be one word without spaces, such as '<toy>'")
            inits[token] = self.pieces(word)
            if not inits[token]:
                raise ConfigError(f"init word {word!r} of token {token!r} is unknown to the tokenizer; choose a "
                                  f"common word (the subject's class, such as 'dog')")
        self._grow(inits)
        return self.ids(tokens)

    def _grow(self, inits: Mapping[str, Sequence[int]]) -> None:
        """Add ``inits``' tokens, each row set to the mean of the rows of its init ids."""
        if not inits:
            return
        self.tokenizer.add_tokens(list(inits), special_tokens=True)  # special: kept whole
        rows = max(self.tokenizer.convert_tokens_to_ids(list(inits))) + 1
        if rows > self.weight().shape[0]:
            self.encoder.resize_token_embeddings(rows, mean_resizing=False)
        self.encoder.get_input_embeddings().requires_grad_(False)
        weight = self.weight()
        with torch.no_grad():
            for token, ids in inits.items():
                weight[self.tokenizer.convert_tokens_to_ids(token)] = weight[list(ids)].mean(0)

    def ids(self, tokens: Sequence[str]) -> list[int]:
        vocab = self.tokenizer.get_vocab()
        unknown = [t for t in tokens if t not in vocab]
        if unknown:
            raise ConfigError(f"token {unknown[0]!r} was never added to this backbone; add it (or install its artifact) first")
        return [vocab[t] for t in tokens]

    def embeddings(self, tokens: Sequence[str]) -> dict[str, torch.Tensor]:
        weight = self.weight()
        return {t: weight[i].detach().clone() for t, i in zip(tokens, self.ids(tokens))}

    def set_embeddings(self, embeddings: Mapping[str, torch.Tensor]) -> None:
        width = self.weight().shape[1]
        for token, vector in embeddings.items():
            if tuple(vector.shape) != (width,):
                raise ArtifactError(
                    f"embedding of token {token!r} has shape {tuple(vector.shape)}, this text encoder needs ({width},); "
                    f"the artifact was made for another text encoder"
                )
        vocab = self.tokenizer.get_vocab()
        self._grow({t: [0] for t in embeddings if t not in vocab})  # placeholder rows, overwritten below
        weight = self.weight()
        with torch.no_grad():
            for token, i in zip(embeddings, self.ids(list(embeddings))):
                weight[i] = embeddings[token].to(weight)

    # -- prompts ---------------------------------------------------------------------------
    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        """:meth:`run`, cached while the embedding matrix is not being trained."""
        weight = self.weight()
        key = (tuple(prompts), id(weight), weight._version)
        if not weight.requires_grad and key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        hidden = self.run(prompts)
        if not weight.requires_grad:
            self._cache[key] = hidden.detach()
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return hidden


class TextMethods:
    """The text methods of the backbone contract, for a backbone whose ``self.text`` is a :class:`TokenTable`.

    Mix it in before :class:`~videomage.Backbone`: ``class MyBackbone(TextMethods, Backbone)``.
    """

    text: TokenTable
    dtype: torch.dtype

    def add_tokens(self, tokens: Sequence[str], init_words: Sequence[str]) -> list[int]:
        return self.text.add(tokens, init_words)

    def token_embeddings(self, tokens: Sequence[str]) -> dict[str, torch.Tensor]:
        return self.text.embeddings(tokens)

    def set_token_embeddings(self, embeddings: Mapping[str, torch.Tensor]) -> None:
        self.text.set_embeddings(embeddings)

    def token_embedding_weight(self) -> torch.nn.Parameter:
        return self.text.weight()

    def token_ids(self, tokens: Sequence[str]) -> list[int]:
        return self.text.ids(tokens)

    def encode_prompt(self, prompts: Sequence[str]) -> torch.Tensor:
        return self.text.encode(prompts).to(self.dtype)

    def word_positions(self, prompt: str, word: str, occurrence: int = 0) -> list[int]:
        return self.text.positions(prompt, word, occurrence)
