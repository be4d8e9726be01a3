"""Which text positions of the motion prompt belong to which subject (SCS, VideoMage §3.4).

The motion branch's prompt ``c~_tgt`` is the target prompt with each subject token replaced by
its class word: "<a> is chasing <b>" with both class words "dog" becomes "dog is chasing dog".
Each subject is matched with the *span that replaced it*, not with the first occurrence of its
class word: here ``<a>`` gets the first "dog" and ``<b>`` the second, and in "a dog watches <a>"
``<a>`` gets the second "dog", the one it became, never the dog that was already there.

Positions are found occurrence by occurrence: the ``k``-th whole-word occurrence of a word
(``hotdog`` holds no "dog") in a prompt, through the backbone's ``word_positions``.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping

from videomage import Backbone, ConfigError


def squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def word_pattern(word: str) -> str:
    """``word`` as a whole word: not inside a longer word where it starts or ends with a letter or digit."""
    pattern = re.escape(word)
    if word[:1].isalnum():
        pattern = r"(?<!\w)" + pattern
    if word[-1:].isalnum():
        pattern += r"(?!\w)"
    return pattern


def occurrences(text: str, word: str) -> list[tuple[int, int]]:
    """Character spans of the whole-word occurrences of ``word`` in ``text``."""
    return [m.span() for m in re.finditer(word_pattern(word), text)] if word else []


def substitute(prompt: str, tokens: Mapping[str, str]) -> tuple[str, list[tuple[str, int, int]]]:
    """``c~_tgt`` and, per substituted span in order: (token, its occurrence in ``prompt``, the class
    word's occurrence in ``c~_tgt``)."""
    text = squash(prompt)
    if not tokens:
        return text, []
    alternation = "|".join(re.escape(t) for t in sorted(tokens, key=len, reverse=True))  # longest first
    out, spans, last = [], [], 0
    for m in re.finditer(alternation, text):
        out.append(text[last : m.start()])
        start = sum(len(p) for p in out)
        word = tokens[m.group()]
        out.append(word)
        spans.append((m.group(), (start, start + len(word))))
        last = m.end()
    motion = "".join(out) + text[last:]
    seen: dict[str, int] = {}
    matched = []
    for token, span in spans:
        word = tokens[token]
        found = occurrences(motion, word)
        if span not in found:
            raise ConfigError(
                f"SCS: subject token {token!r} becomes {motion[max(0, span[0] - 8):span[1] + 8]!r} in the motion prompt, "
                f"where its class word {word!r} is not a word of its own; put a space or punctuation after the token"
            )
        matched.append((token, seen.get(token, 0), found.index(span)))
        seen[token] = seen.get(token, 0) + 1
    return motion, matched


def motion_prompt_for(prompt: str, tokens: Mapping[str, str]) -> str:
    """``c~_tgt``: the target prompt with each subject token replaced by its class word."""
    return substitute(prompt, tokens)[0]


def positions_of(backbone: Backbone, prompt: str, word: str, occurrence: int) -> list[int]:
    """Text positions of the ``occurrence``-th (from 0) occurrence of ``word`` in ``prompt``."""
    if "occurrence" in inspect.signature(backbone.word_positions).parameters:
        return backbone.word_positions(prompt, word, occurrence=occurrence)
    if occurrence:
        raise ConfigError(
            f"SCS: backbone {backbone.name!r} can only locate the first occurrence of a word (its word_positions takes "
            f"no 'occurrence'), and {word!r} is needed at occurrence {occurrence + 1} of {prompt!r}; rephrase the prompt"
        )
    return backbone.word_positions(prompt, word)


def matched_positions(
    backbone: Backbone, prompt: str, motion_prompt: str | None, tokens: Mapping[str, str]
) -> tuple[list[list[int]], list[list[int]]]:
    """Per subject, in order of first appearance: its token's positions in ``prompt`` and its class
    word's in the motion prompt (every occurrence; a word may span several text positions).

    With the derived motion prompt (``None`` or equal to :func:`motion_prompt_for`) each token is
    matched with the span that replaced it. With a motion prompt of your own, the ``k``-th
    occurrence of a class word in the prompt's subjects is matched with its ``k``-th occurrence
    there. A token missing from the prompt, or a class word missing from the motion prompt, is an
    error naming it.
    """
    derived, matched = substitute(prompt, tokens)
    for token in tokens:
        if not any(m[0] == token for m in matched):
            raise ConfigError(f"SCS: subject token {token!r} does not appear in the prompt {prompt!r}; add it or drop that subject")
    if motion_prompt is not None and squash(motion_prompt) != derived:
        per_word: dict[str, int] = {}
        mine = []
        for token, k, _ in matched:
            word = tokens[token]
            mine.append((token, k, per_word.get(word, 0)))
            per_word[word] = per_word.get(word, 0) + 1
        matched = mine
    motion = derived if motion_prompt is None else motion_prompt
    order = list(dict.fromkeys(m[0] for m in matched))
    sub: dict[str, list[int]] = {t: [] for t in order}
    mot: dict[str, list[int]] = {t: [] for t in order}
    for token, k_prompt, k_motion in matched:
        word = tokens[token]
        s_pos = positions_of(backbone, prompt, token, k_prompt)
        m_pos = positions_of(backbone, motion, word, k_motion)
        if not s_pos or not m_pos:
            raise ConfigError(
                f"SCS: cannot match subject token {token!r} with class word {word!r} in the motion prompt "
                f"{motion!r}; use the class word in the motion prompt (once per subject of that class) or leave the "
                f"motion prompt out to derive it"
            )
        sub[token] += s_pos
        mot[token] += m_pos
    return [sub[t] for t in order], [mot[t] for t in order]
