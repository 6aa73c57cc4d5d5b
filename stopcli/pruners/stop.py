"""SToP (Kim et al. 2026): sink-token-aware pruning, one wrapper over any base pruner."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from torch import Tensor

from .types import Pruner, PrunedTokens, SinkHooks, VisualTokens


def sink_score(attention: Tensor, gamma: float = 1.1, eps: float = 1e-12) -> Tensor:
    """[T, S] attention received -> [S] float32 sink score in [0, 1].

    s_j = minmax((mean_t a[t, j]) ** gamma): a position is sink-like when it draws attention in every frame."""
    m = attention.float().mean(0).clamp_min(0.0) ** gamma  # [S]
    return (m - m.min()) / (m.max() - m.min() + eps)


@dataclass(frozen=True)
class SToP:
    """Wrap a base pruner with STSP (rank by a - mu_s * s) and STTP (static if cos + mu_t * s > tau).

    mu_s, mu_t: None takes the base pruner's default (`base.default_mu`, the authors' values).
    The authors' contextual de-sinking (VisionZip target skip, 0.3 * s centre penalties) is on when mu_s > 0,
    so SToP(base, mu_s=0, mu_t=0) returns exactly what `base` returns. authors_baseline=True turns it on even at
    mu = 0, which reproduces the "baseline" rows of the authors' code (not the clean published methods)."""

    base: Pruner
    mu_s: float | None = None
    mu_t: float | None = None
    gamma: float = 1.1
    authors_baseline: bool = False

    @property
    def name(self) -> str:
        return f"{self.base.name}+stop"

    @property
    def mu(self) -> tuple[float, float]:
        mu_s = self.base.default_mu[0] if self.mu_s is None else float(self.mu_s)
        mu_t = self.base.default_mu[1] if self.mu_t is None else float(self.mu_t)
        return mu_s, mu_t

    @property
    def default_mu(self) -> tuple[float, float]:
        return self.base.default_mu

    def hooks(self, tokens: VisualTokens) -> SinkHooks:
        mu_s, mu_t = self.mu
        return SinkHooks(sink_score(tokens.attention, self.gamma), mu_s, mu_t,
                         side_tricks=mu_s > 0 or self.authors_baseline, scorer=partial(sink_score, gamma=self.gamma))

    def __call__(self, tokens: VisualTokens, keep: float, hooks: SinkHooks | None = None) -> PrunedTokens:
        return self.base(tokens, keep, self.hooks(tokens))


__all__ = ["SToP", "sink_score"]
