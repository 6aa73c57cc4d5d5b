"""The two reference points: keep everything, and keep an evenly spaced subset (the naive baseline)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .ops import round_half_up
from .types import PrunedTokens, SinkHooks, VisualTokens, check_keep, make_result


@dataclass(frozen=True)
class NoPruning:
    """Every token, in (frame, position) order. `keep` is ignored."""

    name: str = "none"
    default_mu: tuple[float, float] = (0.0, 0.0)

    def budget(self, t: int, s: int, keep: float) -> int:
        return t * s

    def __call__(self, tokens: VisualTokens, keep: float = 1.0, hooks: SinkHooks | None = None) -> PrunedTokens:
        x = tokens.features
        t, s, d = x.shape
        flat = torch.arange(t * s, device=x.device)
        return make_result(x.reshape(t * s, d), flat // s, flat % s, torch.ones_like(flat),
                           flat.reshape(t, s), like=x)


@dataclass(frozen=True)
class Uniform:
    """n = max(1, round(keep * T * S)) tokens evenly spaced over the whole video in (frame, position) order:
    flat index floor((i + 1/2) * T*S / n) for i < n. No attention is read, so SToP has nothing to change."""

    name: str = "uniform"
    default_mu: tuple[float, float] = (0.0, 0.0)

    def budget(self, t: int, s: int, keep: float) -> int:
        return max(1, round_half_up(check_keep(keep) * t * s))

    def __call__(self, tokens: VisualTokens, keep: float, hooks: SinkHooks | None = None) -> PrunedTokens:
        x = tokens.features
        t, s, d = x.shape
        n = self.budget(t, s, keep)
        # Integer arithmetic keeps the spacing exact: consecutive picks differ by >= 1 because n <= T*S.
        flat = ((2 * torch.arange(n, device=x.device) + 1) * (t * s)) // (2 * n)  # [n]
        source = torch.full((t * s,), -1, dtype=torch.long, device=x.device)
        source[flat] = torch.arange(n, device=x.device)
        return make_result(x.reshape(t * s, d)[flat], flat // s, flat % s, torch.ones_like(flat),
                           source.reshape(t, s), like=x)
