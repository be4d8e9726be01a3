"""Learned tokens in a text encoder, shared by every backbone whose encoder has an input
embedding matrix (CLIP, T5 and the like from ``transformers``).

A learned token (``<toy>``) is added to the tokenizer whole (never split, never lower-cased)
and gets **its own float32 row**, a :class:`torch.nn.Parameter` of the encoder's width,
initialised to the mean of its init word's pieces. The encoder's input embedding matrix is
never trained, never resized and never copied: its lookup is wrapped so that positions holding
a learned token's id read that token's row instead (cast to the encoder's dtype). So textual
inversion and subject learning train, and checkpoint, a few thousand numbers, whether the
vocabulary has 49 thousand rows (CLIP) or 256 thousand (UMT5), and an update of 1e-5 is kept
even when the encoder runs in bfloat16 (where it would round away on a row stored in bf16).

Prompt encodings are cached while no learned row is being trained. The cache key holds the
rows' in-place version counters, so an optimizer step or :meth:`TokenTable.set_embeddings`
makes older entries unreachable, and samplers may encode every step for free.

**Releasing the encoder.** Once a stage's prompts are fixed and no row trains (motion learning
after the inversion, fusion, generation), the encoder is only needed for those prompts:
:meth:`TokenTable.release` encodes each of them once, keeps the encodings, and moves the encoder
to host memory (UMT5-XXL is 10.6 GiB of a Wan job's accelerator memory). A prompt encoded later
is assembled from the kept encodings, or, if it was not among them, encoded by the encoder where
it lies (on the host: correct, but slow for a large encoder). Training a learned row
(:meth:`TokenTable.parameters`) brings the encoder back first, since the row's gradient passes
through it. :mod:`videomage.memory`'s counters are told of both moves, so a plan shows them.

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

__all__ = ["TextMethods", "TokenTable", "release_text_encoder"]


class TokenTable(ABC):
    """A tokenizer and a text encoder with learned tokens and cached prompt encodings."""

    cache_size = 64

    def __init__(self, tokenizer: Any, encoder: torch.nn.Module) -> None:
        self.tokenizer = tokenizer
        self.encoder = encoder
        self.rows: dict[str, torch.nn.Parameter] = {}  # learned token -> its float32 row
        self._row_ids: dict[str, int] = {}
        self._cache: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self._wrapped = False
        self._home: torch.device | None = None  # where the encoder belongs while it is released
        self._kept: dict[tuple, torch.Tensor] = {}  # (prompt, rows) -> its encoding, while released

    # -- what a backbone defines -----------------------------------------------------------
    @abstractmethod
    def run(self, prompts: Sequence[str]) -> torch.Tensor:
        """Run the encoder: hidden states ``[B, L, D]`` with gradients to the learned rows."""

    @abstractmethod
    def positions(self, prompt: str, word: str, occurrence: int = 0) -> list[int]:
        """Positions in the encoded ``prompt`` of the pieces of ``word``'s ``occurrence``-th (from 0) whole-word occurrence."""

    def pieces(self, word: str) -> list[int]:
        """The ids ``word`` tokenizes to, without special tokens (an init word's rows)."""
        return [i for i in self.tokenizer(word, add_special_tokens=False).input_ids if i != self.tokenizer.unk_token_id]

    # -- the vocabulary --------------------------------------------------------------------
    def weight(self) -> torch.nn.Parameter:
        """The encoder's frozen input embedding matrix (the vocabulary's rows; learned tokens are not in it)."""
        return self.encoder.get_input_embeddings().weight

    def add(self, tokens: Sequence[str], init_words: Sequence[str]) -> list[int]:
        if len(tokens) != len(init_words):
            raise ConfigError(f"add_tokens: {len(tokens)} tokens but {len(init_words)} init words; give one word per token")
        vocab = self.tokenizer.get_vocab()
        inits: dict[str, torch.Tensor] = {}
        weight = self.weight()
        for token, word in zip(tokens, init_words):
            if token in vocab or token in inits:
                continue  # an existing token keeps its embedding
            if not token.strip() or re.search(r"\s", token):
                raise ConfigError(f"learned token {token!r} must be one word without spaces, such as '<toy>'")
            ids = self.pieces(word)
            if not ids:
                raise ConfigError(f"init word {word!r} of token {token!r} is unknown to the tokenizer; choose a "
                                  f"common word (the subject's class, such as 'dog')")
            inits[token] = weight[ids].detach().float().mean(0)
        self._learn(inits)
        return self.ids(tokens)

    def _learn(self, rows: Mapping[str, torch.Tensor]) -> None:
        """Add ``rows``' tokens to the tokenizer, each with its own float32 row."""
        if not rows:
            return
        self.tokenizer.add_tokens(list(rows), special_tokens=True)  # special: kept whole
        device = self.device
        for token, row in rows.items():
            self.rows[token] = torch.nn.Parameter(row.detach().to(device, torch.float32).clone(), requires_grad=False)
            self._row_ids[token] = self.tokenizer.convert_tokens_to_ids(token)
        self._wrap()

    def _wrap(self) -> None:
        """Make every embedding module that reads the input matrix read learned rows at their ids.

        Some encoders read the matrix through more than one module (UMT5: ``shared`` and
        ``encoder.embed_tokens`` share one weight), so every module holding it is wrapped. The
        wrapper shadows ``forward`` with an instance attribute, which leaves hooks and the
        module's class untouched.
        """
        if self._wrapped:
            return
        weight = self.weight()
        for module in self.encoder.modules():
            if isinstance(module, torch.nn.Embedding) and module.weight is weight:
                module.forward = self._lookup(module)
        self._wrapped = True

    def _lookup(self, module: torch.nn.Embedding):
        lookup = type(module).forward.__get__(module)

        def forward(ids: torch.Tensor) -> torch.Tensor:
            if not self.rows:
                return lookup(ids)
            known = torch.tensor(list(self._row_ids.values()), device=ids.device)
            match = ids[..., None] == known  # [..., n]: which learned token, if any
            hit = match.any(-1)
            # A learned id may lie past the matrix's end: look up row 0 there, then replace it.
            base = lookup(torch.where(hit, torch.zeros_like(ids), ids))
            table = torch.stack([self.rows[t] for t in self._row_ids]).to(base.device, base.dtype)
            return torch.where(hit[..., None], table[match.int().argmax(-1)], base)

        return forward

    def ids(self, tokens: Sequence[str]) -> list[int]:
        vocab = self.tokenizer.get_vocab()
        unknown = [t for t in tokens if t not in vocab]
        if unknown:
            raise ConfigError(f"token {unknown[0]!r} was never added to this backbone; add it (or install its artifact) first")
        return [vocab[t] for t in tokens]

    def parameters(self, tokens: Sequence[str]) -> dict[str, torch.nn.Parameter]:
        """The trainable float32 row of each learned token (not the vocabulary's).

        A released encoder comes back to the device: the rows' gradients pass through it.
        """
        self.ids(tokens)
        self.restore()
        missing = [t for t in tokens if t not in self.rows]
        if missing:
            raise ConfigError(f"token {missing[0]!r} is a word of the base vocabulary, not a learned token; "
                              f"learned tokens are added with add_tokens (choose a new token such as '<my-toy>')")
        return {t: self.rows[t] for t in tokens}

    def embeddings(self, tokens: Sequence[str]) -> dict[str, torch.Tensor]:
        ids, weight = self.ids(tokens), self.weight()
        return {t: (self.rows[t] if t in self.rows else weight[i]).detach().float().clone() for t, i in zip(tokens, ids)}

    def set_embeddings(self, embeddings: Mapping[str, torch.Tensor]) -> None:
        width = self.weight().shape[1]
        for token, vector in embeddings.items():
            if tuple(vector.shape) != (width,):
                raise ArtifactError(
                    f"embedding of token {token!r} has shape {tuple(vector.shape)}, this text encoder needs ({width},); "
                    f"the artifact was made for another text encoder"
                )
        self._learn({t: v for t, v in embeddings.items() if t not in self.rows})
        with torch.no_grad():
            for token, vector in embeddings.items():
                self.rows[token].copy_(vector.float())

    # -- where the encoder is ----------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        """Where the encoder belongs (and the learned rows and the encodings live)."""
        return self._home if self._home is not None else self.weight().device

    @property
    def released(self) -> bool:
        return self._home is not None

    def _rows_key(self) -> tuple:
        return tuple((t, id(r), r._version) for t, r in self.rows.items())

    def release(self, prompts: Sequence[str], host: str = "cpu") -> None:
        """Encode each of ``prompts`` once and keep it, then move the encoder to ``host``.

        No learned row may be training (their encodings would need the encoder's graph). On the
        meta device (a plan) and on the host itself nothing moves, but memory counters are told.
        """
        from videomage import memory

        if any(row.requires_grad for row in self.rows.values()):
            raise RuntimeError("release the text encoder only when no learned token row is training")
        self.restore()  # encode on the device, whatever an earlier release left
        rows = self._rows_key()
        with torch.no_grad():
            kept = {(p, rows): self.run([p]).detach() for p in dict.fromkeys(prompts)}
        home = self.weight().device
        if home.type not in ("meta", torch.device(host).type):
            self.encoder.to(host)
        self._home, self._kept = home, kept
        memory.moved_off_device(self._bytes())

    def restore(self) -> None:
        """Bring a released encoder back to its device (nothing if it is not released)."""
        from videomage import memory

        if self._home is None:
            return
        if self.weight().device != self._home:
            self.encoder.to(self._home)
        self._home, self._kept = None, {}
        memory.moved_to_device(self._bytes())

    def _bytes(self) -> int:
        from videomage.memory import storage_bytes

        return storage_bytes((*self.encoder.parameters(), *self.encoder.buffers()))

    # -- prompts ---------------------------------------------------------------------------
    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        """``run``, cached while no learned row is being trained."""
        training = any(row.requires_grad for row in self.rows.values())
        key = (tuple(prompts), self._rows_key())
        if not training and key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        if self._home is not None:  # released: from the kept encodings, else where the encoder lies
            kept = [self._kept.get((p, key[1])) for p in prompts]
            hidden = torch.cat(kept) if all(k is not None for k in kept) else self.run(prompts).to(self._home)
        else:
            hidden = self.run(prompts)
        if not training:
            self._cache[key] = hidden.detach()
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return hidden


class TextMethods:
    """The text methods of the backbone contract, for a backbone whose ``self.text`` is a [`TokenTable`][videomage.text.TokenTable].

    Mix it in before ``videomage.Backbone``: ``class MyBackbone(TextMethods, Backbone)``.
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

    def token_parameters(self, tokens: Sequence[str]) -> dict[str, torch.nn.Parameter]:
        return self.text.parameters(tokens)

    def token_ids(self, tokens: Sequence[str]) -> list[int]:
        return self.text.ids(tokens)

    def encode_prompt(self, prompts: Sequence[str]) -> torch.Tensor:
        return self.text.encode(prompts).to(self.dtype)

    def release_text_encoder(self, prompts: Sequence[str]) -> None:
        """Encode ``prompts`` once and move the text encoder to host memory (``TokenTable.release``)."""
        self.text.release(prompts)

    def word_positions(self, prompt: str, word: str, occurrence: int = 0) -> list[int]:
        return self.text.positions(prompt, word, occurrence)


def release_text_encoder(backbone: Any, prompts: Sequence[str], enabled: bool) -> None:
    """What a stage calls once its prompts are fixed: release the text encoder if ``enabled``
    (the stages' ``release_text_encoder`` option) and the backbone can (one with ``TextMethods``).

    The empty prompt (the default negative prompt of every sample a stage draws) is always kept.
    """
    release = getattr(backbone, "release_text_encoder", None)
    if enabled and release is not None:
        release(["", *prompts])
