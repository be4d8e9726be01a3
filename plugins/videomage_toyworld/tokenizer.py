"""A CLIP tokenizer built locally from the toy world's vocabulary.

Real CLIP vocabularies cannot be downloaded here, and a 49k-token table would dwarf the tiny
text encoder anyway. We write a ``vocab.json`` and ``merges.txt`` in CLIP's BPE format whose
merges spell every world word into a single token, and keep every printable ASCII character
(with and without CLIP's ``</w>`` end-of-word marker) so that any other text still tokenizes,
character by character. Tokens learned later (``<toy>``) are added with ``tokenizer.add_tokens``.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from pathlib import Path

from transformers import CLIPTokenizer

from videomage import ConfigError
from videomage_toyworld.vocabulary import words

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
#: Prompts are short ("<toy> is chasing <dog> in the snow" is 9 tokens): 32 positions suffice
#: and keep the text encoder and cross-attention cheap.
MAX_LENGTH = 32


def _apply_bpe(pieces: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Byte-pair encoding as CLIP does it: repeatedly merge the adjacent pair of lowest rank."""
    while len(pieces) > 1:
        pairs = [(ranks.get((a, b), 1 << 30), i) for i, (a, b) in enumerate(itertools.pairwise(pieces))]
        rank, i = min(pairs)
        if rank == 1 << 30:
            break
        pieces = pieces[:i] + [pieces[i] + pieces[i + 1]] + pieces[i + 2 :]
    return pieces


def bpe_tables(vocabulary: Sequence[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The ``vocab.json`` mapping and the merges (in rank order) for ``vocabulary``.

    Merges are learned greedily: while some word does not encode to one token, append a merge of
    its first adjacent pair of pieces. Appended merges have the lowest priority, so they never
    split a word that is already whole, and every word gains one merge per round.
    """
    tokens: list[str] = [BOS, EOS]
    for code in range(33, 127):  # printable ASCII maps to itself in CLIP's byte-level alphabet
        tokens += [chr(code), chr(code) + "</w>"]
    ranks: dict[tuple[str, str], int] = {}
    changed = True
    while changed:
        changed = False
        for word in vocabulary:
            pieces = _apply_bpe(list(word[:-1]) + [word[-1] + "</w>"], ranks)
            if len(pieces) > 1:
                ranks[(pieces[0], pieces[1])] = len(ranks)
                tokens.append(pieces[0] + pieces[1])
                changed = True
    return {t: i for i, t in enumerate(dict.fromkeys(tokens))}, list(ranks)


def build_tokenizer(folder: str | Path, vocabulary: Sequence[str] | None = None) -> CLIPTokenizer:
    """Write the tokenizer files into ``folder`` and return the loaded ``CLIPTokenizer``.

    Raises ``ConfigError`` if some world word does not come out as one token (a merge clash),
    so a vocabulary change can never silently degrade prompts.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocabulary = list(vocabulary if vocabulary is not None else words())
    vocab, merges = bpe_tables(vocabulary)
    (folder / "vocab.json").write_text(json.dumps(vocab, indent=0))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=MAX_LENGTH)
    split = [w for w in vocabulary if len(tokenizer.tokenize(w)) != 1]
    if split:
        raise ConfigError(f"toy tokenizer: expected every vocabulary word to be one token, but {split} split into "
                          f"several; remove duplicates or words containing spaces from the vocabulary")
    tokenizer.save_pretrained(folder)
    return tokenizer
