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
