"""Reading the method's attention maps out of Wan's full 3D attention.

Every Wan block attends twice: ``attn1`` is self-attention over *all* video tokens (every frame,
every location, with 3D rotary positions), ``attn2`` is cross-attention from the video tokens
to the text. Video tokens are the latent patched by ``(1, 2, 2)``: for latents ``[B, C, F, h, w]``
there are ``N = F * (h/2) * (w/2)`` of them, frame-major.

**Spatial cross-attention maps** (``AttentionStore.cross``): per captured ``attn2``,
``softmax(q k^T / sqrt(d))`` over the text keys, averaged over heads, the columns of the
requested text positions kept and laid out as ``[B, T, F, h/2, w/2]``. Each frame's map is a
map of that frame, because every video token sits in exactly one frame.

**Temporal self-attention maps** (``AttentionStore.temporal``): Wan has no frame-by-frame
attention, so we read one out of ``attn1``: the **same-location slice** of its probabilities,
renormalised over the key frames,
``M[p, f, f'] = P[(f, p), (f', p)] / sum over f'' of P[(f, p), (f'', p)]``, averaged over heads:
``[B, (h/2)*(w/2), F, F]``, each row summing to one. This is exactly what a UNet's temporal
self-attention map is (location ``p`` attending to itself in every frame), so it keeps what
makes that map a motion descriptor: whether what sits at ``p`` in frame ``f`` is what sits
there in frame ``f'``. (Summing a row over the locations of each key frame instead, the share
of attention each frame receives, sums that correspondence away: a static and a moving clip of
the same look get nearly the same maps.) The full softmax's denominator cancels in the
renormalisation, so per head the slice is ``softmax over f'`` of the same-location scores
``q(f, p) . k(f', p) / sqrt(d)``: ``F`` keys per query, never the ``N x N`` matrix, and its
memory is ``B * heads * (h/2)*(w/2) * F^2`` numbers (8 M for the 1.3B model's 81 x 480 x 832).

**Cost.** The output of each layer still comes from diffusers' own processor (SDPA), so a
capture never changes the model's result. The maps are computed beside it from the very ``q``
and ``k`` that processor attends with (projected with any LoRA, normalised and rotated; handed
over at its attention call, so nothing is projected twice; another processor's layer has them
projected again), the product ``q k^T`` in the model's precision, as SDPA computes it, the
softmax and sums in float32; the cross maps in
chunks of queries sized so that one chunk's probabilities hold at most ``chunk_elements``
numbers. With gradients enabled each chunk runs under activation
checkpointing, so the backward pass recomputes it instead of storing it: beyond one chunk, a
capture keeps only each captured layer's ``q`` and ``k`` (and its maps), and gradients reach the
input latents through them. Outside
a capture, or when nothing is requested, the default processors stay in place and nothing is paid.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import attrs
import torch
from torch.utils.checkpoint import checkpoint

from videomage import AttentionStore, ConfigError
from videomage.kit import recomputing, replays

#: Default bound on the numbers in one chunk of attention probabilities (512 MiB in float32).
#: On an H100, smaller chunks cost time (2**25: 1.3x slower, 1.5x with gradients); larger ones barely gain.
CHUNK_ELEMENTS = 2**27


@attrs.define
class CaptureState:
    """What the processors need to know of the current forward pass (set by ``predict``)."""

    tokens: list[int] = attrs.field(factory=list)
    chunk_elements: int = CHUNK_ELEMENTS
    grid: tuple[int, int, int, int] | None = None  # batch, frames, height, width of the token grid

    def layout(self, queries: int) -> tuple[int, int, int, int]:
        if self.grid is None or self.grid[1] * self.grid[2] * self.grid[3] != queries:
            raise RuntimeError(f"attention capture: {queries} video tokens do not match the token grid {self.grid}")
        return self.grid


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Wan's rotary embedding: each channel pair ``(a, b)`` turns by its angle.

    ``cos``/``sin`` are ``[1, N, 1, D]`` with each angle's value repeated for both channels of the pair.
    """
    a, b = x.unflatten(-1, (-1, 2)).unbind(-1)
    c, s = cos[..., 0::2], sin[..., 0::2]
    return torch.stack((a * c - b * s, a * s + b * c), dim=-1).flatten(-2).to(x.dtype)


def queries_and_keys(attn, hidden_states: torch.Tensor, context: torch.Tensor | None, rotary_emb=None):
    """The layer's normalised (and, for self-attention, rotated) queries and keys, ``[B, heads, N, d]``."""
    context = hidden_states if context is None else context
    q = attn.norm_q(attn.to_q(hidden_states)).unflatten(2, (attn.heads, -1))
    k = attn.norm_k(attn.to_k(context)).unflatten(2, (attn.heads, -1))
    if rotary_emb is not None:
        q, k = rotate(q, *rotary_emb), rotate(k, *rotary_emb)
    return q.transpose(1, 2), k.transpose(1, 2)


def chunked(fn: Callable[[torch.Tensor], torch.Tensor], q: torch.Tensor, per_query: int, budget: int) -> torch.Tensor:
    """``fn`` over chunks of the queries (dim 2 of ``q``), concatenated along dim 1 of the results.

    A chunk holds at most ``budget // per_query`` queries; with gradients on, each chunk is
    checkpointed so only its inputs are kept for the backward pass.
    """
    size = max(1, budget // max(1, per_query))
    grad = torch.is_grad_enabled()
    parts = []
    for start in range(0, q.shape[2], size):
        part = q[:, :, start : start + size]
        parts.append(checkpoint(fn, part, use_reentrant=False) if grad else fn(part))
    return torch.cat(parts, dim=1)


def probabilities(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d))``: the product in the model's precision (as SDPA does), the softmax in float32."""
    return ((q @ k.transpose(-1, -2)).float() * q.shape[-1] ** -0.5).softmax(-1)


def cross_maps(q: torch.Tensor, k: torch.Tensor, tokens: Sequence[int], state: CaptureState) -> torch.Tensor:
    """``[B, T, F, h, w]``: head-averaged probabilities of the text positions ``tokens``."""
    b, heads, n, _ = q.shape
    _, frames, h, w = state.layout(n)
    kept = chunked(lambda part: probabilities(part, k)[..., list(tokens)].mean(1), q, b * heads * k.shape[2], state.chunk_elements)
    return kept.reshape(b, frames, h, w, len(tokens)).permute(0, 4, 1, 2, 3)


def same_location(q: torch.Tensor, k: torch.Tensor, state: CaptureState) -> torch.Tensor:
    """``[B, h*w, F, F]``: per location, the attention between its tokens in each pair of frames,
    renormalised over the key frames, averaged over heads."""
    b, heads, n, d = q.shape
    _, frames, h, w = state.layout(n)
    qf, kf = (x.reshape(b, heads, frames, h * w, d) for x in (q, k))  # frame-major tokens
    scores = torch.einsum("bhfpd,bhgpd->bhpfg", qf, kf).float() * d**-0.5  # [B, heads, h*w, F, F]
    return scores.softmax(-1).mean(1)


@contextmanager
def _grabbing_attention_inputs() -> Iterator[list]:
    """Inside the block, diffusers' Wan processor hands its attention call's query and key (normalised,
    rotated, with any LoRA applied, ``[B, N, heads, d]``) to the list yielded, beside computing it.

    A capture reads the maps from exactly the ``q`` and ``k`` the layer attends with, instead of
    projecting, normalising and rotating them a second time (two of a block's ten linear
    layers per captured attention, in the forward pass and again in a checkpointed recomputation).
    """
    from diffusers.models.transformers import transformer_wan

    grabbed: list = []
    original = transformer_wan.dispatch_attention_fn

    def dispatch(query, key, *args, **kwargs):
        grabbed.append((query, key))
        return original(query, key, *args, **kwargs)

    transformer_wan.dispatch_attention_fn = dispatch
    try:
        yield grabbed
    finally:
        transformer_wan.dispatch_attention_fn = original


class CaptureProcessor:
    """Runs the layer's own processor, and records the layer's maps beside it."""

    def __init__(self, inner, kind: str, state: CaptureState, store: AttentionStore) -> None:
        self.inner, self.kind, self.state, self.store = inner, kind, state, store

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None, **kwargs):
        if recomputing() and not replays(self.state):
            # recomputing a forward pass that ran outside this capture: as it ran
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb, **kwargs)
        with _grabbing_attention_inputs() as grabbed:
            out = self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb, **kwargs)
        # Computed in either case (a checkpointed recomputation must save what the forward pass
        # saved), kept only once: in the backward pass a checkpointed block runs again.
        if len(grabbed) == 1:  # the processor's own q and k (one attention call: text-to-video)
            q, k = (x.transpose(1, 2) for x in grabbed[0])
        else:  # another processor: project them again, as the layer does
            q, k = queries_and_keys(attn, hidden_states, encoder_hidden_states if self.kind == "cross" else None,
                                    None if self.kind == "cross" else rotary_emb)
        if self.kind == "cross":
            maps, kept_in = cross_maps(q, k, self.state.tokens, self.state), self.store.cross
        else:
            maps, kept_in = same_location(q, k, self.state), self.store.temporal
        if not recomputing():
            kept_in.append(maps)
        return out


@contextmanager
def capture(
    blocks: Sequence[torch.nn.Module],
    *,
    cross_tokens: Sequence[int] | None,
    temporal: bool,
    chunk_elements: int = CHUNK_ELEMENTS,
) -> Iterator[tuple[AttentionStore, CaptureState]]:
    """Put capturing processors on ``attn2`` (cross) and/or ``attn1`` (temporal) of ``blocks``.

    The original processors come back on exit, also after an error.
    """
    store = AttentionStore()
    state = CaptureState(tokens=list(cross_tokens or []), chunk_elements=int(chunk_elements))
    wanted: dict[torch.nn.Module, CaptureProcessor] = {}
    for block in blocks:
        if cross_tokens:
            if block.attn2.add_k_proj is not None:
                raise ConfigError(
                    "attention capture supports Wan text-to-video models; this one also attends to an image "
                    "(an image-to-video model), whose cross-attention maps are not the text's alone"
                )
            wanted[block.attn2] = CaptureProcessor(block.attn2.processor, "cross", state, store)
        if temporal:
            wanted[block.attn1] = CaptureProcessor(block.attn1.processor, "temporal", state, store)
    originals = {module: module.processor for module in wanted}
    try:
        for module, processor in wanted.items():
            module.processor = processor
        yield store, state
    finally:
        for module, processor in originals.items():
            module.processor = processor
