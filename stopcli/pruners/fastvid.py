"""FastVID (Shen et al. 2025): dynamic segmentation, salient tokens by attention, density-based temporal merging."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .ops import as_float32, density_peak_scores, floor_eps, gram, sqdist_from_gram, topk_mask, true_indices
from .types import PrunedTokens, SinkHooks, VisualTokens, check_keep, make_result


def segment_ids(frame_features: Tensor, min_segments: int, tau: float) -> Tensor:
    """DySeg. [T, Dg] -> [T] long segment id: cut after frame t where cos(g_t, g_t+1) is among the
    min_segments - 1 lowest, or below tau."""
    t = frame_features.shape[0]
    if t == 1:
        return torch.zeros(1, dtype=torch.long, device=frame_features.device)
    g = F.normalize(frame_features.float(), dim=-1)
    sim = (g[:-1] * g[1:]).sum(-1)  # [T-1]
    lowest = torch.sort(sim, stable=True).indices[: max(0, min_segments - 1)]
    cut = sim < tau
    cut[lowest] = True
    return torch.cat([cut.new_zeros(1), cut]).long().cumsum(0)


@dataclass(frozen=True)
class FastVID:
    """Per frame n = max(1, floor(keep * S)) tokens: n_s = n - floor(d * n) salient + context.

    1. DySeg: segments from frame-global features (`frame_features`, else the mean token of each frame).
    2. Salient: per frame top-n_s by attention (SToP: a - mu_s * s).
    3. Density on the other F = S - n_s tokens of each frame: DPC-kNN score (k = 4, itself included);
       SToP side trick: - 0.3 * s, and - 0.3 * s again in multi-frame segments (the authors' double penalty).
    4. A segment of L frames has A = ceil(L / p) anchor frames: its last frame and every p-th before it. Each anchor
       takes m = min(F, floor(n_c * L / A)) centres (top density score of its non-salient tokens); every non-salient
       token of the segment joins its most cosine-similar centre of that anchor (so a token feeds one centre per
       anchor); centre <- w * centre + (1 - w) * mean(members, itself included), w = max(1 / (count + 1), alpha).
    Output holds exactly T * n_s + sum over segments of A * m tokens (floors make it up to a few below T * n).
    Order: by frame * S + position (a context token sits at its centre).
    `frame_features` stands in for the SigLIP attention-pooling head the authors use, which HF checkpoints lack.
    """

    min_segments: int = 8
    seg_tau: float = 0.9
    context_share: float = 0.4
    anchor_stride: int = 4
    alpha: float = 0.6
    k_nn: int = 4
    name: str = "fastvid"
    default_mu: tuple[float, float] = (0.02, 0.0)

    def split(self, s: int, keep: float) -> tuple[int, int]:
        n = min(s, max(1, floor_eps(check_keep(keep) * s)))
        n_c = floor_eps(self.context_share * n)
        return n - n_c, n_c

    def anchors(self, seg: Tensor, n_c: int, f: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Per frame: segment end [T], segment length [T], centres m if the frame is an anchor else 0 [T],
        and the centre-penalty weight multiplier (1 for one-frame segments, 2 in DTM) [T]."""
        t = seg.shape[0]
        idx = torch.arange(t, device=seg.device)
        n_seg = int(seg[-1]) + 1
        end = torch.zeros(n_seg, dtype=torch.long, device=seg.device).scatter_reduce_(0, seg, idx, "amax")[seg]
        length = torch.bincount(seg, minlength=n_seg)[seg]  # [T]
        n_anchor = (length + self.anchor_stride - 1) // self.anchor_stride
        m = torch.clamp((n_c * length) // n_anchor, max=f)
        is_anchor = (end - idx) % self.anchor_stride == 0
        return end, length, torch.where(is_anchor, m, torch.zeros_like(m)), torch.where(length > 1, 2.0, 1.0)

    def budget(self, tokens: VisualTokens, keep: float) -> int:
        t, s = tokens.num_frames, tokens.tokens_per_frame
        n_s, n_c = self.split(s, keep)
        seg = segment_ids(self._frame_features(tokens), self.min_segments, self.seg_tau)
        return t * n_s + int(self.anchors(seg, n_c, s - n_s)[2].sum())

    @staticmethod
    def _frame_features(tokens: VisualTokens) -> Tensor:
        return tokens.frame_features if tokens.frame_features is not None else tokens.features.float().mean(1)

    def __call__(self, tokens: VisualTokens, keep: float, hooks: SinkHooks | None = None) -> PrunedTokens:
        hooks = hooks or SinkHooks.none()
        x = tokens.features  # [T, S, D]
        t, s, dim = x.shape
        dev = x.device
        frames = torch.arange(t, device=dev)
        n_s, n_c = self.split(s, keep)
        f = s - n_s
        seg = segment_ids(self._frame_features(tokens), self.min_segments, self.seg_tau)
        end, length, m, penalty = self.anchors(seg, n_c, f)  # [T] each

        attn = hooks.spatial(tokens.attention.float())  # [T, S]
        salient = topk_mask(attn, n_s)  # [T, S]
        rest = true_indices(~salient, f)  # [T, F] non-salient positions, ascending

        xf = as_float32(x)
        # Distances come from each frame's full Gram matrix: no [T, F, D] copy of the features is made.
        g = gram(xf)  # [T, S, S]
        d2 = sqdist_from_gram(g)[frames[:, None, None], rest[:, :, None], rest[:, None, :]]  # [T, F, F]
        norm = g.diagonal(dim1=1, dim2=2).sqrt().clamp_min(1e-12)  # [T, S]
        score = density_peak_scores(d2, torch.ones(t, f, dtype=torch.bool, device=dev), self.k_nn, dim)  # [T, F]
        if hooks.mu_s != 0:  # gated on mu_s in the authors' code too: their FastVID baseline is clean
            score = hooks.centre(score, rest, weight=0.3 * penalty[:, None])  # -0.3 s, twice in multi-frame segments
        m_max = int(m.max()) if f else 0
        centre = topk_mask(score, m) if m_max else torch.zeros(t, f, dtype=torch.bool, device=dev)
        slots = true_indices(centre, m_max)  # [T, m_max] indices into the frame's rest list, valid where < m
        slot_ok = torch.arange(m_max, device=dev)[None, :] < m[:, None]  # [T, m_max]
        centre_pos = torch.gather(rest, 1, slots)  # [T, m_max]
        centre_x = xf[frames[:, None], centre_pos]  # [T, m_max, D]
        centre_norm = norm[frames[:, None], centre_pos]  # [T, m_max]
        is_rest = ~salient
        own_slot = torch.full((t, s), -1, dtype=torch.long, device=dev)  # a centre always joins itself, even on ties
        own_slot[frames[:, None].expand_as(centre_pos)[slot_ok], centre_pos[slot_ok]] = \
            torch.arange(m_max, device=dev).expand(t, m_max)[slot_ok]

        sums = torch.zeros(t, m_max, dim, device=dev)
        cnt = torch.zeros(t, m_max, device=dev)
        near_assign = torch.zeros(t, s, dtype=torch.long, device=dev)
        near_anchor = end - ((end - frames) // self.anchor_stride) * self.anchor_stride  # [T]
        slot_range = torch.arange(m_max, device=dev)
        # One pass per anchor slot k (anchor frame = segment end - k * stride): ceil(longest segment / stride)
        # passes, at most T / stride; inside a pass every frame is matched against its own segment's anchor at once.
        for k in range(int((length.max() + self.anchor_stride - 1) // self.anchor_stride) if m_max else 0):
            anchor = end - k * self.anchor_stride  # [T]
            has = anchor >= end - length + 1  # [T] the segment has a k-th anchor
            a = anchor.clamp_min(0)
            sim = torch.bmm(xf, centre_x[a].transpose(1, 2)) / (norm[:, :, None] * centre_norm[a][:, None, :])
            assign = sim.masked_fill(~slot_ok[a][:, None, :], float("-inf")).argmax(-1)  # [T, S]
            assign = torch.where((anchor == frames)[:, None] & (own_slot >= 0), own_slot, assign)
            onehot = (assign[:, None, :] == slot_range[None, :, None]) & (is_rest & has[:, None])[:, None, :]
            onehot = onehot.float()  # [T, m_max, S]
            sums.index_add_(0, a, torch.bmm(onehot, xf))
            cnt.index_add_(0, a, onehot.sum(-1))
            near_assign = torch.where((near_anchor == anchor)[:, None], assign, near_assign)

        w = torch.clamp(1.0 / (cnt + 1.0), min=self.alpha)[..., None]
        merged = w * centre_x + (1 - w) * sums / cnt.clamp_min(1.0)[..., None]  # [T, m_max, D]

        # Salient tokens and centres, ordered by frame * S + position.
        sal_frame, sal_pos = salient.nonzero(as_tuple=True)
        c_frame, c_slot = slot_ok.nonzero(as_tuple=True)
        c_pos = centre_pos[c_frame, c_slot]
        frame_all = torch.cat([sal_frame, c_frame])
        pos_all = torch.cat([sal_pos, c_pos])
        perm = torch.argsort(frame_all * s + pos_all)
        inv = torch.empty_like(perm)
        inv[perm] = torch.arange(perm.numel(), device=dev)
        feats = torch.cat([x[sal_frame, sal_pos].float(), merged[c_frame, c_slot]])[perm]
        counts = torch.cat([torch.ones(sal_pos.numel(), device=dev), cnt[c_frame, c_slot]])[perm]

        source = torch.full((t, s), -1, dtype=torch.long, device=dev)
        source[sal_frame, sal_pos] = inv[: sal_pos.numel()]
        if m_max:
            item = torch.full((t, m_max), -1, dtype=torch.long, device=dev)
            item[c_frame, c_slot] = inv[sal_pos.numel():]
            near = item[near_anchor[:, None], near_assign]  # [T, S]
            source = torch.where(is_rest, near, source)
        return make_result(feats, frame_all[perm], pos_all[perm], counts, source, like=x)
