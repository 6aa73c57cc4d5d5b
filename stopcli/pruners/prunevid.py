"""PruneVid (Huang et al. 2025), vision side as the SToP authors run it: frames clustered into temporal windows,
static positions averaged over their window, static and per-frame dynamic tokens reduced by DPC-kNN clustering."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .ops import as_float32, density_peak_scores, descending_rank, floor_eps, gram, one_hot_sum, sqdist_from_gram
from .types import PrunedTokens, SinkHooks, VisualTokens, check_keep, make_result


def refine_labels(labels: list[int]) -> list[int]:
    """PruneVid's clean-up of per-frame cluster labels into contiguous windows.

    Every label keeps only its longest run(s) of consecutive frames (a label whose runs are all one frame long keeps
    none); each freed run takes the label of its longer neighbouring run, the left one on a tie (the left run's
    length counts runs relabelled before it), label 0 if it has no neighbour. T labels on the host: the walk is
    sequential by construction and a few dozen steps long."""
    n = len(labels)
    out = list(labels)
    runs: dict[int, list[tuple[int, int]]] = {}
    i = 0
    while i < n:
        j = i
        while j + 1 < n and labels[j + 1] == labels[i]:
            j += 1
        runs.setdefault(labels[i], []).append((i, j))
        i = j + 1
    for spans in runs.values():
        longest = max(e - b + 1 for b, e in spans)
        for b, e in spans:
            if longest == 1 or e - b + 1 != longest:
                out[b:e + 1] = [-1] * (e - b + 1)
    i = 0
    while i < n:
        if out[i] != -1:
            i += 1
            continue
        b = i
        while i < n and out[i] == -1:
            i += 1
        e = i - 1
        left = right = None
        left_len = right_len = 0
        if b > 0:
            left, k = out[b - 1], b - 1
            while k >= 0 and out[k] == left:
                k -= 1
            left_len = b - k - 1
        if e < n - 1:
            right, k = out[e + 1], e + 1
            while k < n and out[k] == right:
                k += 1
            right_len = k - e - 1
        if left_len > right_len:
            new = left
        elif right_len > left_len:
            new = right
        else:
            new = left if left is not None else right
        out[b:e + 1] = [0 if new is None else new] * (e - b + 1)
    return out


def _dpc_centres(x: Tensor, valid: Tensor, k_nn: Tensor | int, clusters: Tensor, hooks: SinkHooks | None = None,
                 penalty: float = 0.0) -> tuple[Tensor, Tensor, Tensor]:
    """DPC-kNN on each set of a batch. x [B, n, D], valid [B, n], clusters [B] (0: not clustered).

    Returns the rank of every entry by centre score [B, n] (0 = best), the centre mask [B, n] and every valid entry's
    centre as an index into n [B, n] (nearest centre, Euclidean; on a tie the better-scored centre, as the authors'
    argmin over their score-ordered centre list)."""
    b, n, dim = x.shape
    d2 = sqdist_from_gram(gram(x))  # [B, n, n]
    score = density_peak_scores(d2, valid, k_nn, dim)  # [B, n]
    if hooks is not None and hooks.mu_s != 0:  # our hook, as HoliTom's static-centre penalty: off at mu_s = 0
        score = hooks.centre(score, torch.arange(n, device=x.device)[None, :].expand(b, n), weight=penalty)
    rank = descending_rank(score)  # [B, n]
    centre = valid & (rank < clusters[:, None])
    c_max = int(clusters.max()) if b else 0
    by_rank = torch.argsort(rank, dim=1)[:, :c_max]  # [B, C] entries, best score first
    c_ok = torch.arange(c_max, device=x.device)[None, :] < clusters[:, None]
    to_c = torch.gather(d2, 2, by_rank[:, None, :].expand(b, n, c_max)).masked_fill(~c_ok[:, None, :], float("inf"))
    nearest = torch.gather(by_rank, 1, to_c.argmin(-1)) if c_max else torch.zeros(b, n, dtype=torch.long,
                                                                                   device=x.device)
    own = torch.arange(n, device=x.device)[None, :].expand(b, n)
    return rank, centre, torch.where(centre, own, nearest)


@dataclass(frozen=True)
class PruneVid:
    """Temporal windows, then static/dynamic tokens, then clustering.

    1. Windows: DPC-kNN (k = min(7, T)) on the frames' mean tokens into max(1, floor(T / 4)) clusters; each cluster
       keeps its longest run(s) of frames, the other frames join a neighbouring run (`refine_labels`); windows are
       the runs of equal labels.
    2. In a window of W >= 2 frames, position j is static if the mean cosine over all ordered pairs of distinct
       frames (SToP, ours: + mu_t * s_j) exceeds static_threshold; its W tokens become their mean. A one-frame
       window is all dynamic (the authors' 0/0 similarity, without the NaN).
    3. r_w = min(keep * S * W / (n_s + (S - n_s) * W) + 0.005, 1) per window, in float32 as the authors compute it.
    4. A set with more than `cluster_above` tokens (the window's static means; each frame's dynamic tokens) becomes
       max(1, int(n * r_w)) DPC-kNN (k = 7) clusters, each the plain mean of its members at its centre's position
       (SToP, ours: centre score - 0.3 * s when mu_s > 0); a smaller set is kept whole.
    Output, window by window: [static tokens, then each frame's dynamic tokens]; a clustered set is listed best centre
    score first (the authors' order), a kept set by position. Count (exact): sum over windows and sets of the set's
    size if it is at most cluster_above, else max(1, int(size * r_w)).
    The authors have no SToP hook here (mu = (0, 0)): the default SToP wrapper returns PruneVid itself.
    """

    cluster_share: float = 0.25
    k_nn: int = 7
    static_threshold: float = 0.8
    slack: float = 0.005
    cluster_above: int = 14
    centre_penalty: float = 0.3
    name: str = "prunevid"
    default_mu: tuple[float, float] = (0.0, 0.0)

    def windows(self, tokens: VisualTokens) -> list[tuple[int, int]]:
        """[(first frame, last frame)] in time order."""
        t = tokens.num_frames
        mean = as_float32(tokens.features).mean(1)[None]  # [1, T, D]
        n_clusters = torch.tensor([max(1, floor_eps(self.cluster_share * t))], device=mean.device)
        valid = torch.ones(1, t, dtype=torch.bool, device=mean.device)
        rank, _, centre_of = _dpc_centres(mean, valid, min(self.k_nn, t), n_clusters)
        labels = refine_labels(rank[0, centre_of[0]].tolist())  # label = the centre's rank, as the authors'
        spans, b = [], 0
        for i in range(1, t + 1):
            if i == t or labels[i] != labels[b]:
                spans.append((b, i - 1))
                b = i
        return spans

    def plan(self, tokens: VisualTokens, keep: float, hooks: SinkHooks | None = None) -> dict:
        hooks = hooks or SinkHooks.none()
        keep = check_keep(keep)
        x = tokens.features
        s = x.shape[1]
        dev = x.device
        spans = self.windows(tokens)
        win_of = torch.cat([torch.full((e - b + 1,), i, dtype=torch.long) for i, (b, e) in enumerate(spans)]).to(dev)
        width = torch.tensor([e - b + 1 for b, e in spans], device=dev)  # [Wn]
        first = torch.tensor([b for b, _ in spans], device=dev)  # [Wn]
        n_win = len(spans)

        xn = as_float32(x) / torch.linalg.vector_norm(as_float32(x), dim=-1, keepdim=True).clamp_min(1e-12)
        total = torch.zeros(n_win, s, x.shape[-1], device=dev).index_add_(0, win_of, xn)  # [Wn, S, D]
        pairs = (width * (width - 1)).clamp_min(1)[:, None]
        similarity = ((total * total).sum(-1) - width[:, None]) / pairs  # [Wn, S] mean cos over ordered pairs
        static = (hooks.temporal(similarity) > self.static_threshold) & (width > 1)[:, None]  # [Wn, S]

        n_s = static.sum(1)  # [Wn]
        # float32 like the authors' tensor arithmetic, so that int(n * r_w) floors the same way.
        r_w = (keep * s) * width / (n_s + (s - n_s) * width) + self.slack
        r_w = torch.where(r_w > 1, torch.ones_like(r_w), r_w).float()
        n_d = s - n_s[win_of]  # [T]

        def size(n: Tensor, ratio: Tensor) -> Tensor:
            clustered = torch.clamp((n * ratio).long(), min=1)
            return torch.where(n > self.cluster_above, clustered, n)

        return dict(windows=spans, window_of=win_of, width=width, first=first, static=static, r_w=r_w,
                    k_static=size(n_s, r_w), k_dynamic=size(n_d, r_w[win_of]))

    def budget(self, tokens: VisualTokens, keep: float, hooks: SinkHooks | None = None) -> int:
        p = self.plan(tokens, keep, hooks)
        return int(p["k_static"].sum() + p["k_dynamic"].sum())

    def __call__(self, tokens: VisualTokens, keep: float, hooks: SinkHooks | None = None) -> PrunedTokens:
        hooks = hooks or SinkHooks.none()
        x = tokens.features  # [T, S, D]
        t, s, dim = x.shape
        dev = x.device
        p = self.plan(tokens, keep, hooks)
        win_of, width, static = p["window_of"], p["width"], p["static"]
        n_win = width.numel()
        xf = as_float32(x)
        arange_s = torch.arange(s, device=dev)

        # Static: window means of the static positions, clustered per window (all windows in one batch).
        means = torch.zeros(n_win, s, dim, device=dev).index_add_(0, win_of, xf) / width[:, None, None].float()
        k_st = torch.where(static.sum(1) > self.cluster_above, p["k_static"], torch.zeros_like(p["k_static"]))
        rank_s, centre_s, to_s = _dpc_centres(means, static, self.k_nn, k_st, hooks, self.centre_penalty)
        clustered_s = (k_st > 0)[:, None]
        keep_s = torch.where(clustered_s, centre_s, static)  # [Wn, S] static outputs, at their position
        member_s = static & clustered_s
        sums_s, cnt_s = one_hot_sum(to_s, member_s, means, s)  # [Wn, S(centre), D]
        feat_s = torch.where(clustered_s[..., None], sums_s / cnt_s.clamp_min(1.0)[..., None], means)
        count_s = torch.where(clustered_s, cnt_s, torch.ones_like(cnt_s)) * width[:, None]

        # Dynamic: each frame's non-static positions, clustered per frame.
        dynamic = ~static[win_of]  # [T, S]
        k_dy = torch.where(dynamic.sum(1) > self.cluster_above, p["k_dynamic"], torch.zeros_like(p["k_dynamic"]))
        rank_d, centre_d, to_d = _dpc_centres(xf, dynamic, self.k_nn, k_dy, hooks, self.centre_penalty)
        clustered_d = (k_dy > 0)[:, None]
        keep_d = torch.where(clustered_d, centre_d, dynamic)  # [T, S]
        sums_d, cnt_d = one_hot_sum(to_d, dynamic & clustered_d, xf, s)
        feat_d = torch.where(clustered_d[..., None], sums_d / cnt_d.clamp_min(1.0)[..., None], xf)
        count_d = torch.where(clustered_d, cnt_d, torch.ones_like(cnt_d))

        # Order: window start, static before dynamic, frame, then centre-score rank (clustered) or position.
        w_i, s_pos = keep_s.nonzero(as_tuple=True)
        d_t, d_pos = keep_d.nonzero(as_tuple=True)
        s_frame = p["first"][w_i]
        ord_s = torch.where(clustered_s[w_i, 0], rank_s[w_i, s_pos], s_pos)
        ord_d = torch.where(clustered_d[d_t, 0], rank_d[d_t, d_pos], d_pos)
        frame_all = torch.cat([s_frame, d_t])
        pos_all = torch.cat([s_pos, d_pos])
        group = torch.cat([torch.zeros_like(s_pos), torch.ones_like(d_pos)])
        key = ((p["first"][win_of[frame_all]] * 2 + group) * t + frame_all) * s + torch.cat([ord_s, ord_d])
        perm = torch.argsort(key)
        inv = torch.empty_like(perm)
        inv[perm] = torch.arange(perm.numel(), device=dev)

        feats = torch.cat([feat_s[w_i, s_pos], feat_d[d_t, d_pos]])[perm]
        counts = torch.cat([count_s[w_i, s_pos], count_d[d_t, d_pos]]).round().long()[perm]
        n_st = w_i.numel()
        out_s = torch.full((n_win, s), -1, dtype=torch.long, device=dev)
        out_s[w_i, s_pos] = inv[:n_st]
        out_d = torch.full((t, s), -1, dtype=torch.long, device=dev)
        out_d[d_t, d_pos] = inv[n_st:]
        src_s = torch.gather(out_s, 1, torch.where(clustered_s, to_s, arange_s[None, :].expand(n_win, s)))
        src_d = torch.gather(out_d, 1, torch.where(clustered_d, to_d, arange_s[None, :].expand(t, s)))
        source = torch.where(static[win_of], src_s[win_of], src_d)
        return make_result(feats, frame_all[perm], pos_all[perm], counts, source, like=x)
