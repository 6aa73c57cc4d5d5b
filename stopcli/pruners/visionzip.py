"""VisionZip (Yang et al. 2025) applied frame by frame: dominant tokens by attention, contextual tokens by merging."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .ops import as_float32, floor_eps, one_hot_sum, round_half_up, true_indices
from .types import PrunedTokens, SinkHooks, VisualTokens, check_keep, make_result

# The authors' tokens-per-frame for SigLIP's 196-token frames; other keeps/sizes use round(keep * S).
SIGLIP_196_BUDGET = {0.10: 20, 0.15: 30, 0.20: 40, 0.25: 50}


@dataclass(frozen=True)
class VisionZip:
    """Per frame: n tokens = d dominant + c contextual.

    Budget n: {0.10: 20, 0.15: 30, 0.20: 40, 0.25: 50} when S == 196 (the authors' map), else max(1, round(keep*S));
    d = floor(n * dominant_share), c = n - d. Output holds exactly T * n tokens.
    Dominant: top-d by attention (SToP: a - mu_s * s). Contextual: of the S - d remaining tokens (position order),
    c evenly spaced targets (stride floor((S - d) / c)); every other remaining token joins its most key-similar target
    (cosine); a contextual token is target + mean(its members).
    Order: frame by frame, [dominant tokens by position, contextual tokens by target position].

    SToP side trick (hooks.side_tricks): targets that land on one of the `sink_positions` highest-sink positions move
    to the next index. As in the authors' code the comparison is between the target's index in the remaining list and
    the sink's grid position, and one adjusted target list serves every frame; unlike it, a target shifted onto the
    next one moves on to the next free index so that no contextual token is emitted twice.
    """

    dominant_share: float = 54 / 64
    sink_positions: int = 20
    name: str = "visionzip"
    default_mu: tuple[float, float] = (0.03, 0.0)

    def budget_per_frame(self, s: int, keep: float) -> int:
        keep = check_keep(keep)
        if s == 196:
            for k, n in SIGLIP_196_BUDGET.items():
                if abs(keep - k) < 1e-9:
                    return n
        return min(s, max(1, round_half_up(keep * s)))

    def budget(self, t: int, s: int, keep: float) -> int:
        return t * self.budget_per_frame(s, keep)

    def targets(self, remaining: int, c: int, hooks: SinkHooks) -> Tensor:
        """[c] strictly increasing indices into the remaining-token list. A few dozen numbers, so numpy on the host
        (one copy of the [S] sink score) is cheaper than a chain of tiny device kernels."""
        stride = max(1, remaining // c)
        base = np.arange(c) * stride  # [c]
        if not hooks.side_tricks:
            return torch.from_numpy(base)
        score = hooks.score.detach().float().cpu().numpy()
        sinks = np.argsort(-score, kind="stable")[: self.sink_positions]
        sinks = sinks[score[sinks] > 0]  # a zero score is no sink (the robust score's non-sinks; min-max's minimum)
        is_sink = np.zeros(remaining + 1, dtype=bool)
        is_sink[sinks[sinks < remaining]] = True  # index-vs-position comparison, as the authors do
        idx = np.arange(remaining + 1)
        next_free = np.minimum.accumulate(np.where(is_sink, remaining, idx)[::-1])[::-1]  # first non-sink >= i
        steps = np.arange(c)
        shifted = np.maximum.accumulate(next_free[base] - steps) + steps  # strictly increasing: no duplicates
        return torch.from_numpy(np.minimum(shifted, remaining - c + steps))  # and inside the list

    def __call__(self, tokens: VisualTokens, keep: float, hooks: SinkHooks | None = None) -> PrunedTokens:
        hooks = hooks or SinkHooks.none()
        x = tokens.features  # [T, S, D]
        t, s, d_feat = x.shape
        dev = x.device
        n = self.budget_per_frame(s, keep)
        d = floor_eps(n * self.dominant_share)
        c = n - d
        frames = torch.arange(t, device=dev)[:, None]  # [T, 1]

        attn = hooks.spatial(tokens.attention.float())  # [T, S]
        order = torch.sort(attn, dim=-1, descending=True, stable=True).indices  # [T, S]
        dominant = order[:, :d].sort(dim=-1).values  # [T, d] positions, ascending
        is_dom = torch.zeros(t, s, dtype=torch.bool, device=dev)
        is_dom[frames, dominant] = True
        r = s - d
        remaining = true_indices(~is_dom, r)  # [T, R] positions, ascending

        tgt = self.targets(r, c, hooks).to(dev)  # [c] indices into `remaining`
        tgt_pos = remaining[:, tgt]  # [T, c]
        metric = as_float32(tokens.keys if tokens.keys is not None else x)  # [T, S, Dk]
        norm = torch.linalg.vector_norm(metric, dim=-1).clamp_min(1e-12)  # [T, S]
        # Similarity of every token to its frame's targets, computed on the full frame (no [T, R, Dk] copy).
        dots = torch.bmm(metric, metric[frames, tgt_pos].transpose(1, 2))  # [T, S, c]
        sim = dots / (norm[:, :, None] * norm[frames, tgt_pos][:, None, :])
        assign = torch.gather(sim, 1, remaining[..., None].expand(-1, -1, c)).argmax(-1)  # [T, R]
        is_tgt = torch.zeros(r, dtype=torch.bool, device=dev)
        is_tgt[tgt] = True
        assign[:, tgt] = torch.arange(c, device=dev)
        members = (~is_tgt)[None, :].expand(t, r)  # [T, R]

        # Scatter from the full frame so that no [T, R, D] copy of the features is made.
        slot_full = torch.full((t, s), -1, dtype=torch.long, device=dev)
        slot_full[frames, remaining] = torch.where(members, assign, torch.full_like(assign, -1))
        sums, cnt = one_hot_sum(slot_full, slot_full >= 0, x, c)  # [T, c, D], [T, c]
        contextual = x[frames, tgt_pos].float() + sums / cnt.clamp_min(1.0)[..., None]

        feats = torch.cat([x[frames, dominant].float(), contextual], dim=1).reshape(t * n, d_feat)
        pos = torch.cat([dominant, tgt_pos], dim=1)  # [T, n]
        counts = torch.cat([torch.ones(t, d, device=dev), cnt + 1.0], dim=1)
        out_base = frames * n  # [T, 1]
        source = torch.full((t, s), -1, dtype=torch.long, device=dev)
        source[frames, dominant] = out_base + torch.arange(d, device=dev)
        source[frames, remaining] = out_base + d + assign
        return make_result(feats, frames.expand(t, n).reshape(-1), pos.reshape(-1), counts.reshape(-1),
                           source, like=x)
