"""The two values every pruner speaks: what goes in (`VisualTokens`) and what comes out (`PrunedTokens`),
plus `SinkHooks`, the only channel through which SToP changes a base pruner's decisions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor


@dataclass(frozen=True)
class VisualTokens:
    """One video's visual tokens as the language model would receive them, before pruning.

    features:        [T, S, D]  after the backbone's projector and spatial reduction.
    attention:       [T, S]     attention *received* per token in the vision encoder's used layer
                                (mean over heads and queries), reduced to the same grid as `features`.
    grid:            (h, w)     the per-frame token grid, h * w == S, raster order.
    keys:            [T, S, Dk] that layer's keys (mean over heads), same reduction; VisionZip's merge metric.
                                None: the features are used instead.
    frame_features:  [T, Dg]    one global descriptor per frame (FastVID's segmentation). None: mean of `features`.
    """

    features: Tensor
    attention: Tensor
    grid: tuple[int, int]
    keys: Tensor | None = None
    frame_features: Tensor | None = None

    def __post_init__(self) -> None:
        if self.features.dim() != 3:
            raise ValueError(f"features must be [T, S, D], got shape {tuple(self.features.shape)}")
        t, s, _ = self.features.shape
        if tuple(self.attention.shape) != (t, s):
            raise ValueError(f"attention must be [T, S] = {(t, s)}, got {tuple(self.attention.shape)}")
        h, w = self.grid
        if h * w != s:
            raise ValueError(f"grid {self.grid} does not hold S = {s} tokens")
        if self.keys is not None and tuple(self.keys.shape[:2]) != (t, s):
            raise ValueError(f"keys must be [T, S, Dk] with T, S = {(t, s)}, got {tuple(self.keys.shape)}")
        if self.frame_features is not None and self.frame_features.shape[0] != t:
            raise ValueError(f"frame_features must be [T, Dg] with T = {t}, got {tuple(self.frame_features.shape)}")

    @property
    def num_frames(self) -> int:
        return self.features.shape[0]

    @property
    def tokens_per_frame(self) -> int:
        return self.features.shape[1]

    @property
    def num_tokens(self) -> int:
        return self.features.shape[0] * self.features.shape[1]


@dataclass(frozen=True)
class PrunedTokens:
    """What survives, in the order the language model receives it.

    features:  [N, D]   input dtype and device.
    positions: [N, 2]   long, (frame, spatial index) each output token is placed at. A token merged over time takes
                        the first frame of its window; a merged/contextual token takes its centre's position.
    counts:    [N]      long, how many input tokens each output token stands for (1 = kept as it was).
    source:    [T, S]   long, for every input token the output index it went into, -1 if it was dropped.
                        (A FastVID token that fed several anchors' centres points at the nearest anchor's.)
    """

    features: Tensor
    positions: Tensor
    counts: Tensor
    source: Tensor

    def __len__(self) -> int:
        return self.features.shape[0]

    @property
    def kept(self) -> int:
        return self.features.shape[0]


class SinkHooks:
    """How SToP reaches inside a base pruner. A base pruner calls these at the points the method defines;
    `SinkHooks.none()` changes nothing, so a pruner called without hooks is the clean published method.

    score:        [S] sink score per spatial position (shared by all frames), or None.
    mu_s:         STSP weight: attention used for ranking becomes a - mu_s * s.
    mu_t:         STTP weight: consecutive-frame similarity becomes cos + mu_t * s.
    side_tricks:  the authors' contextual de-sinking (VisionZip target skip, 0.3 * s centre penalties).
    scorer:       [T', S] attention -> [S] sink score, the function `score` came from; lets a pruner score a part
                  of the video on its own (FlashVid's authors score each segment). None: only `score` is known.
    """

    def __init__(self, score: Tensor | None = None, mu_s: float = 0.0, mu_t: float = 0.0,
                 side_tricks: bool = False, scorer=None) -> None:
        self.score = score
        self.mu_s = float(mu_s)
        self.mu_t = float(mu_t)
        self.side_tricks = bool(side_tricks) and score is not None
        self.scorer = scorer

    @classmethod
    def none(cls) -> SinkHooks:
        return cls()

    def spatial(self, attention: Tensor) -> Tensor:
        """[..., S] attention used for top-k ranking -> a - mu_s * s (STSP)."""
        if self.score is None or self.mu_s == 0.0:
            return attention
        return attention - self.mu_s * self.score.to(attention.dtype)

    def local_score(self, attention: Tensor) -> Tensor | None:
        """[T', S] attention of some frames -> [S] their own sink score (the video's `score` without a scorer)."""
        return self.scorer(attention) if self.scorer is not None else self.score

    def temporal(self, similarity: Tensor) -> Tensor:
        """[..., S] cosine between a position in consecutive frames -> cos + mu_t * s (STTP)."""
        if self.score is None or self.mu_t == 0.0:
            return similarity
        return similarity + self.mu_t * self.score.to(similarity.dtype)

    def centre(self, score: Tensor, position: Tensor, weight: float | Tensor = 0.3) -> Tensor:
        """Density-peak centre score [...] of tokens at spatial `position` [...] -> score - weight * s
        (`weight` a number or a tensor broadcasting against `score`)."""
        if not self.side_tricks:
            return score
        return score - weight * self.score.to(score.device, score.dtype)[position]


class Pruner(Protocol):
    """A pruner: pure function of the tokens and the keep fraction. `hooks` is how SToP steers it."""

    name: str
    default_mu: tuple[float, float]

    def __call__(self, tokens: VisualTokens, keep: float, hooks: SinkHooks | None = None) -> PrunedTokens: ...


def check_keep(keep: float) -> float:
    keep = float(keep)
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep must be in (0, 1], got {keep}")
    return keep


def make_result(features: Tensor, frame: Tensor, pos: Tensor, counts: Tensor, source: Tensor,
                like: Tensor) -> PrunedTokens:
    """Assemble a result, casting features back to the input's dtype."""
    positions = torch.stack([frame.long(), pos.long()], dim=-1)
    return PrunedTokens(features=features.to(like.dtype), positions=positions, counts=counts.long(),
                        source=source.long())
