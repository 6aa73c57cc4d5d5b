"""A synthetic video's tokens with a planted attention sink, for tests and demonstrations.

A near-static background, one object moving along a middle row (salient, attended), and one sink position with the
highest attention in every frame and an uninformative large-norm feature that flips between two directions with
cosine 0.76 from frame to frame: below HoliTom's 0.8 static threshold, above it once STTP adds mu_t = 0.07."""

from __future__ import annotations

import torch

from .types import VisualTokens


def planted_sink_tokens(frames: int = 8, h: int = 14, w: int = 14, dim: int = 16, sink: int | None = None,
                        seed: int = 0, sink_cos: float = 0.76) -> tuple[VisualTokens, int, list[int]]:
    """Returns the tokens, the sink's position and the object's position in each frame. `sink_cos`: the cosine
    between the sink's two alternating directions."""
    g = torch.Generator().manual_seed(seed)
    s = h * w
    sink = w - 1 if sink is None else sink  # top-right corner
    scene = torch.randn(s, dim, generator=g)
    feats = scene[None] + 0.05 * torch.randn(frames, s, dim, generator=g)
    obj = 3.0 * torch.randn(dim, generator=g)
    row = h // 2
    obj_pos = [row * w + (3 + t) % w for t in range(frames)]
    for t, p in enumerate(obj_pos):
        feats[t, p] = obj + 0.3 * torch.randn(dim, generator=g)
    u = torch.randn(dim, generator=g)
    u /= u.norm()
    v = torch.randn(dim, generator=g)
    v -= (v @ u) * u
    v /= v.norm()
    u2 = sink_cos * u + (1 - sink_cos ** 2) ** 0.5 * v
    for t in range(frames):
        feats[t, sink] = 8.0 * (u if t % 2 == 0 else u2)
    attn = (0.5 + torch.rand(frames, s, generator=g)) / 729  # SigLIP's scale: ~1/729 per patch
    attn[:, sink] = 0.02
    for t, p in enumerate(obj_pos):
        attn[t, p] = 0.012
    return VisualTokens(feats, attn, (h, w)), sink, obj_pos


def planted_sinks_tokens(frames: int = 8, h: int = 14, w: int = 14, dim: int = 16, strength: float = 8.0,
                         sinks: tuple[int, ...] | None = None, static_attention: bool = False,
                         seed: int = 0) -> tuple[VisualTokens, list[int], list[int]]:
    """Several sinks of a chosen strength: `planted_sink_tokens`' scene, with each of `sinks` (default: the top-right
    and top-left corners and the left edge near the bottom, as in the authors' motivation figure) drawing `strength`
    times its frame's median attention in every frame, and carrying the first sink's uninformative feature.
    static_attention: the background's attention is fixed per position (5% frame-to-frame noise) instead of drawn
    afresh every frame. Returns the tokens, the sink positions and the object's position in each frame."""
    tokens, first, obj = planted_sink_tokens(frames, h, w, dim, seed=seed)
    sinks = [w - 1, 0, (h - 2) * w] if sinks is None else list(sinks)
    g = torch.Generator().manual_seed(seed + 1)
    attn = tokens.attention.clone()  # [T, S]
    if static_attention:
        attn = ((0.5 + torch.rand(1, h * w, generator=g)) / 729) * (1 + 0.05 * torch.randn(frames, h * w, generator=g))
        attn[torch.arange(frames), torch.tensor(obj)] = 0.012
    attn[:, first] = attn[:, (first + w) % (h * w)]  # the original sink becomes ordinary unless listed
    attn[:, sinks] = 1.0  # above the median, so that the median below is the final frame's
    median = attn.median(dim=1, keepdim=True).values  # [T, 1]
    feats = tokens.features.clone()
    sink_feature = tokens.features[:, first].clone()  # [T, D]
    for p in sinks:  # a handful of positions
        attn[:, p] = strength * median[:, 0]
        feats[:, p] = sink_feature
    return VisualTokens(feats, attn, (h, w)), sinks, obj
