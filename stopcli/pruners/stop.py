"""SToP (Kim et al. 2026): sink-token-aware pruning, one wrapper over any base pruner."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor

from . import SINK_SCORES as SCORES
from .types import Pruner, PrunedTokens, SinkHooks, VisualTokens


def sink_score(attention: Tensor, gamma: float = 1.1, eps: float = 1e-12) -> Tensor:
    """[T, S] attention received -> [S] float32 sink score in [0, 1].

    s_j = minmax((mean_t a[t, j]) ** gamma): a position is sink-like when it draws attention in every frame."""
    m = attention.float().mean(0).clamp_min(0.0) ** gamma  # [S]
    return (m - m.min()) / (m.max() - m.min() + eps)


# A sink, for the robust score: a position drawing at least SINK_RATIO times its frame's median attention in at least
# SINK_PERSISTENCE of the frames. 6x sits between the most attended position of our embedded model, which has no sinks
# (1.3-4.8x the median over 100 fresh videos; a still object in 1 of 200 reaches 5.9x), and the weakest planted sink
# of the tests and benchmarks (8x); SigLIP's sinks, for which the authors tuned mu, draw far more. A quarter of the
# frames may miss (an object passing over the sink).
SINK_RATIO = 6.0
SINK_PERSISTENCE = 0.75


def sink_persistence(attention: Tensor, ratio: float = SINK_RATIO) -> Tensor:
    """[T, S] attention received -> [S] float: the share of frames in which a position draws at least `ratio` times
    its frame's median attention.

    The test is against the frame's median, not a z-score: attention that is nearly flat has a tiny spread, so a
    position at 2x the median already scores z > 10 there. A ratio is also free of the attention's scale."""
    a = attention.float()
    outlier = a >= ratio * a.median(dim=1, keepdim=True).values  # [T, S]; a zero median: any attention counts
    outlier &= a > 0
    return outlier.float().mean(0)


def sink_positions(attention: Tensor, ratio: float = SINK_RATIO, persistence: float = SINK_PERSISTENCE) -> Tensor:
    """[T, S] attention received -> [S] bool: the positions that are sinks (see SINK_RATIO)."""
    return sink_persistence(attention, ratio) >= persistence - 1e-9


def robust_sink_score(attention: Tensor, gamma: float = 1.1, ratio: float = SINK_RATIO,
                      persistence: float = SINK_PERSISTENCE) -> Tensor:
    """[T, S] attention received -> [S] float32 in [0, 1], non-zero only at `sink_positions`.

    On the sinks the authors' (m_j ** gamma - min) normalised by the strongest sink instead of the most attended
    position, so where the most attended position is a sink (the authors' premise) a sink scores what min-max gives
    it; every other position scores 0, and a video without sinks scores 0 everywhere (SToP then changes nothing)."""
    sinks = sink_positions(attention, ratio, persistence)  # [S]
    u = attention.float().mean(0).clamp_min(0.0) ** gamma  # [S]
    top = torch.where(sinks, u, u.min()).max()  # the strongest sink (no host sync: no sinks leaves every s at 0)
    return torch.where(sinks, (u - u.min()) / (top - u.min()).clamp_min(1e-12), torch.zeros_like(u)).clamp(0.0, 1.0)


def gated_sink_score(attention: Tensor, gamma: float = 1.1, ratio: float = SINK_RATIO,
                     persistence: float = SINK_PERSISTENCE) -> Tensor:
    """[T, S] -> [S]: the authors' min-max score on a video where some position is a sink (`sink_positions`), zero
    on one where none is. Where sinks exist it selects exactly what min-max SToP selects, including min-max's
    penalty on every other position (mu_s * s_j, which reorders the ordinary tokens); `robust` leaves those alone."""
    return sink_score(attention, gamma) * sink_positions(attention, ratio, persistence).any().float()


def score_fn(score: str):
    """The sink-score function by name (`SCORES`); ValueError naming the choices otherwise."""
    if score not in SCORES:
        raise ValueError(f"unknown sink score {score!r}; choose from {', '.join(SCORES)}")
    return {"minmax": sink_score, "robust": robust_sink_score, "gated": gated_sink_score}[score]


@dataclass(frozen=True)
class SToP:
    """Wrap a base pruner with STSP (rank by a - mu_s * s) and STTP (static if cos + mu_t * s > tau).

    mu_s, mu_t: None takes the base pruner's default (`base.default_mu`, the authors' values).
    The authors' contextual de-sinking (VisionZip target skip, 0.3 * s centre penalties) is on when mu_s > 0,
    so SToP(base, mu_s=0, mu_t=0) returns exactly what `base` returns. authors_baseline=True turns it on even at
    mu = 0, which reproduces the "baseline" rows of the authors' code (not the clean published methods).
    score: "minmax" (the authors'), "robust" (`robust_sink_score`: only positions that are sinks score) or "gated"
    (`gated_sink_score`: min-max on videos with a sink). With either of the last two a video without sinks scores 0
    everywhere, and SToP returns what `base` returns."""

    base: Pruner
    mu_s: float | None = None
    mu_t: float | None = None
    gamma: float = 1.1
    authors_baseline: bool = False
    score: str = "minmax"

    def __post_init__(self) -> None:
        score_fn(self.score)

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
        fn = score_fn(self.score)
        return SinkHooks(fn(tokens.attention, self.gamma), mu_s, mu_t,
                         side_tricks=mu_s > 0 or self.authors_baseline, scorer=partial(fn, gamma=self.gamma))

    def __call__(self, tokens: VisualTokens, keep: float, hooks: SinkHooks | None = None) -> PrunedTokens:
        return self.base(tokens, keep, self.hooks(tokens))


__all__ = ["SCORES", "SToP", "gated_sink_score", "robust_sink_score", "sink_positions", "sink_score"]
