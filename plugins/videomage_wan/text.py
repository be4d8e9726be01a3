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

Encodings are cached while the embedding matrix is not being trained; the key holds the
matrix's in-place version counter, so an optimizer step or ``set_embeddings`` invalidates them.
For the 5-billion-parameter UMT5-XXL this saves a text-encoder pass per training step.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence

import torch

from videomage.errors import ArtifactError, ConfigError

#: Positions the Wan pipeline encodes every prompt to.
MAX_TEXT_LENGTH = 512
CACHE_SIZE = 64


def clean(prompt: str) -> str:
    """Collapse whitespace, as the Wan pipeline's prompt cleaning does (without ``ftfy``)."""
    return re.sub(r"\s+", " ", prompt).strip()


class T5Text:
    """The tokenizer and UMT5 encoder of one Wan backbone."""

    def __init__(self, tokenizer, encoder: torch.nn.Module) -> None:
        self.tokenizer = tokenizer
        self.encoder = encoder
        self.length = min(int(tokenizer.model_max_length), MAX_TEXT_LENGTH)
        self._cache: OrderedDict[tuple, torch.Tensor] = OrderedDict()

    # -- the vocabulary --------------------------------------------------------------------
    def weight(self) -> torch.nn.Parameter:
        return self.encoder.get_input_embeddings().weight

    def _pieces(self, word: str) -> list[int]:
        return list(self.tokenizer(clean(word), add_special_tokens=False).input_ids)

    def add(self, tokens: Sequence[str], init_words: Sequence[str]) -> list[int]:
        if len(tokens) != len(init_words):
            raise ConfigError(f"add_tokens: {len(tokens)} tokens but {len(init_words)} init words; give one word per token")
        vocab = self.tokenizer.get_vocab()
        inits: dict[str, list[int]] = {}
        for token, word in zip(tokens, init_words):
            if token in vocab or token in inits:
                continue
            if not token.strip() or re.search(r"\s", token):
                raise ConfigError(f"learned token {token!r} must be one word without spaces, such as '<toy>'")
            pieces = [i for i in self._pieces(word) if i != self.tokenizer.unk_token_id]
            if not pieces:
                raise ConfigError(
                    f"init word {word!r} of token {token!r} is unknown to the T5 tokenizer; choose a common word "
                    f"(the subject's class, such as 'dog')"
                )
            inits[token] = pieces
        if inits:
            self.tokenizer.add_tokens(list(inits), special_tokens=True)  # special: kept whole
            rows = max(self.tokenizer.convert_tokens_to_ids(list(inits))) + 1
            if rows > self.weight().shape[0]:
                self.encoder.resize_token_embeddings(rows, mean_resizing=False)
            self.encoder.get_input_embeddings().requires_grad_(False)
            weight = self.weight()
            with torch.no_grad():
                for token, pieces in inits.items():
                    weight[self.tokenizer.convert_tokens_to_ids(token)] = weight[pieces].mean(0)
        return self.ids(tokens)

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
                    f"embedding of token {token!r} has shape {tuple(vector.shape)}, this UMT5 encoder needs ({width},); "
                    f"the artifact was made for another text encoder"
                )
        missing = [t for t in embeddings if t not in self.tokenizer.get_vocab()]
        if missing:
            # The init word does not matter: the rows are overwritten just below.
            self.add(missing, [self.tokenizer.eos_token] * len(missing))
        weight = self.weight()
        with torch.no_grad():
            for token, i in zip(embeddings, self.ids(list(embeddings))):
                weight[i] = embeddings[token].to(weight)

    # -- prompts ---------------------------------------------------------------------------
    def tokenize(self, prompts: Sequence[str], **kwargs):
        return self.tokenizer([clean(p) for p in prompts], padding="max_length", max_length=self.length,
                              truncation=True, return_tensors="pt", **kwargs)

    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        """Hidden states ``[B, L, D]``, zero after each prompt's end; gradients reach trained rows."""
        weight = self.weight()
        key = (tuple(prompts), id(weight), weight._version)
        if not weight.requires_grad and key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        batch = self.tokenize(prompts)
        mask = batch.attention_mask.to(weight.device)
        hidden = self.encoder(batch.input_ids.to(weight.device), attention_mask=mask).last_hidden_state
        hidden = hidden * mask[..., None].to(hidden.dtype)
        if not weight.requires_grad:
            self._cache[key] = hidden.detach()
            if len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return hidden

    def positions(self, prompt: str, word: str) -> list[int]:
        """Positions of the pieces that spell the first whole-word occurrence of ``word`` in ``prompt``.

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
        found = re.search(pattern, text)
        if found is None:
            return []
        start, end = found.span()
        offsets = self.tokenize([text], return_offsets_mapping=True).offset_mapping[0].tolist()
        return [i for i, (s, e) in enumerate(offsets) if e > s and s < end and e > start]
