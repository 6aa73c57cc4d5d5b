"""HoliTom (Shao et al. 2025), vision side ("w/o M"): temporal windows, static tokens merged over time and
clustered, dynamic tokens chosen by attention."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .ops import (as_float32, consecutive_cosine, density_peak_scores, gram, one_hot_sum, round_half_up, run_lengths,
                  sqdist_from_gram, topk_mask)
from .types import PrunedTokens, SinkHooks, VisualTokens, check_keep, make_result


def similar_run_counts(similar: Tensor) -> Tensor:
    """[T-1, S] bool ("position j similar between frames t and t+1") -> [T-1, T-1] long C with
    C[e-1, L-1] = #{j : similar for all t in [e-L, e-1]}: positions that stay similar through window [e-L, e]."""
    runs = run_lengths(similar)  # [T-1, S]
    lengths = torch.arange(1, similar.shape[0] + 1, device=similar.device)
    return (runs[:, :, None] >= lengths[None, None, :]).sum(1)  # [T-1, T-1]


def best_windows(counts: Tensor, t: int) -> tuple[list[tuple[int, int]], int]:
    """Partition frames 0..T-1 into windows [b, e] maximising the tokens saved, sum of (e-b) * C[e-1, e-b-1].

    Returns the windows in time order and the tokens saved. The DP walks the T frames in order because each step
    needs the previous ones; T is a few dozen, so the loop runs on the CPU over Python floats (microseconds, and
    one host copy of the [T-1, T-1] table instead of a sync per comparison). Ties keep the earlier candidate:
    a single frame first, then the shorter window."""
    table = counts.cpu().tolist()
    value = [0] * (t + 1)  # value[i + 1]: best for frames 0..i
    start = [0] * t
    for i in range(t):
        best, best_b = value[i], i  # frame i alone
        for w in range(2, i + 2):
            b = i - w + 1
            cand = value[b] + (w - 1) * table[i - 1][w - 2]
            if cand > best:
                best, best_b = cand, b
        value[i + 1], start[i] = best, best_b
    windows = []
    e = t - 1
    while e >= 0:
        windows.append((start[e], e))
        e = start[e] - 1
    return windows[::-1], value[t]


@dataclass(frozen=True)
class HoliTom:
    """Temporal then spatial merging.

    1. c[t, j] = cos(X[t, j], X[t+1, j]). A DP splits the frames into windows maximising the tokens that stay
       similar (c > tau) through a whole window; R = tokens that merge removes.
    2. keep' = min(keep * T*S / (T*S - R), 1).
    3. In a window [b, e] with e > b, position j is static if c[t, j] (SToP: + mu_t * s_j) > static_threshold for
       every t in [b, e-1]; its frames are averaged into one token. Everything else is dynamic.
    4. Dynamic: per frame, ceil(n_dyn * keep') tokens with the highest attention (SToP: a - mu_s * s).
    5. Static: per window, max(1, round_half_up(n_static * keep')) DPC-kNN centres (k = min(k_nn, that count); SToP side
       trick: score - 0.3 * s); the other static tokens join their nearest centre (Euclidean) and each centre becomes
       beta * centre + (1 - beta) * mean(members).
    Output holds exactly sum over windows of the static count + sum over frames of the dynamic count (with STTP more
    tokens turn static than R assumed, so fewer come out than keep * T * S: the authors' behaviour).
    Order: window by window, [static tokens by position, then each frame's dynamic tokens by position].
    """

    tau: float = 0.8
    static_threshold: float = 0.8
    beta: float = 0.6
    k_nn: int = 7
    name: str = "holitom"
    default_mu: tuple[float, float] = (0.04, 0.07)

    def plan(self, tokens: VisualTokens, keep: float, hooks: SinkHooks) -> dict:
        """Windows, rescaled keep and the static mask: everything the budget depends on."""
        x = tokens.features
        t, s, _ = x.shape
        cos = consecutive_cosine(x)  # [T-1, S]
        if t > 1:
            windows, removed = best_windows(similar_run_counts(cos > self.tau), t)
        else:
            windows, removed = [(0, 0)], 0
        keep2 = min(check_keep(keep) * t * s / (t * s - removed), 1.0)
        multi = [(b, e) for b, e in windows if e > b]
        frame_window = torch.full((t,), -1, dtype=torch.long)
        window_start = torch.zeros(t, dtype=torch.long)
        for wi, (b, e) in enumerate(windows):  # a handful of windows; builds two [T] index tables
            window_start[b:e + 1] = b
        for mi, (b, e) in enumerate(multi):
            frame_window[b:e + 1] = mi
        if multi:
            runs = run_lengths(hooks.temporal(cos) > self.static_threshold)  # [T-1, S]
            b_w = torch.tensor([b for b, _ in multi], device=x.device)
            e_w = torch.tensor([e for _, e in multi], device=x.device)
            static = runs[e_w - 1] >= (e_w - b_w)[:, None]  # [W, S]
        else:
            static = torch.zeros(0, s, dtype=torch.bool, device=x.device)
        return dict(windows=windows, multi=multi, removed=removed, keep=keep2, static=static,
                    frame_window=frame_window.to(x.device), window_start=window_start.to(x.device))

    def budget(self, tokens: VisualTokens, keep: float, hooks: SinkHooks | None = None) -> int:
        p = self.plan(tokens, keep, hooks or SinkHooks.none())
        return self._counts(p, tokens.num_frames, tokens.tokens_per_frame)[2]

    def _counts(self, p: dict, t: int, s: int) -> tuple[Tensor, Tensor, int]:
        static_pad = torch.cat([p["static"], p["static"].new_zeros(1, s)])
        frame_static = static_pad[p["frame_window"]]  # [T, S]; -1 picks the all-dynamic row
        n_dyn = (s - frame_static.sum(1)).double()
        k_dyn = torch.ceil(n_dyn * p["keep"] - 1e-9).long()  # [T]
        n_static = p["static"].sum(1)
        # At least one token per static window: the authors' round() can reach 0 and drop a window's static content.
        k_static = torch.minimum(round_half_up(n_static.double() * p["keep"]).clamp_min(1), n_static)  # [W]
        return k_dyn, k_static, int(k_dyn.sum() + k_static.sum())

    def __call__(self, tokens: VisualTokens, keep: float, hooks: SinkHooks | None = None) -> PrunedTokens:
        hooks = hooks or SinkHooks.none()
        x = tokens.features  # [T, S, D]
        t, s, dim = x.shape
        dev = x.device
        p = self.plan(tokens, keep, hooks)
        static, frame_window = p["static"], p["frame_window"]  # [W, S], [T]
        k_dyn, k_static, _ = self._counts(p, t, s)
        frame_static = torch.cat([static, static.new_zeros(1, s)])[frame_window]  # [T, S]

        # Dynamic tokens: top-k attention among each frame's dynamic positions.
        attn = hooks.spatial(tokens.attention.float())  # [T, S]
        dyn_keep = topk_mask(attn, k_dyn, valid=~frame_static)  # [T, S]

        # Static tokens: window means, then density-peak clustering per window (all windows in one batch).
        n_win = static.shape[0]
        win_len = torch.bincount(frame_window[frame_window >= 0], minlength=n_win).clamp_min(1)  # [W]
        average = (frame_window[None, :] == torch.arange(n_win, device=dev)[:, None]).float()  # [W, T]
        average /= win_len[:, None]
        means = (average @ as_float32(x).reshape(t, s * dim)).reshape(n_win, s, dim)  # [W, S, D] window means
        d2 = sqdist_from_gram(gram(means))  # [W, S, S]
        k_nn = torch.minimum(k_static, torch.full_like(k_static, self.k_nn)).clamp_min(1)
        score = density_peak_scores(d2, static, k_nn, dim)  # [W, S]
        score = hooks.centre(score, torch.arange(s, device=dev)[None, :].expand(n_win, s))
        centre = topk_mask(score, k_static, valid=static)  # [W, S]
        to_centre = d2.masked_fill(~centre[:, None, :], float("inf")).argmin(-1)  # [W, S] nearest centre
        to_centre = torch.where(centre, torch.arange(s, device=dev)[None, :], to_centre)
        members = static & ~centre & (k_static[:, None] > 0)
        sums, cnt = one_hot_sum(to_centre, members, means, s)  # [W, S, D], [W, S] indexed by centre position
        merged = torch.where(cnt[..., None] > 0,
                             self.beta * means + (1 - self.beta) * sums / cnt.clamp_min(1.0)[..., None], means)

        # Gather both kinds, then order by (window start, static first, frame, position).
        w_idx, s_pos = centre.nonzero(as_tuple=True)
        d_frame, d_pos = dyn_keep.nonzero(as_tuple=True)
        b_of_win = torch.tensor([b for b, _ in p["multi"]] or [0], device=dev)
        s_frame = b_of_win[w_idx]
        frame_all = torch.cat([s_frame, d_frame])
        pos_all = torch.cat([s_pos, d_pos])
        group = torch.cat([torch.zeros_like(s_pos), torch.ones_like(d_pos)])
        key = ((p["window_start"][frame_all] * 2 + group) * t + frame_all) * s + pos_all
        perm = torch.argsort(key)
        inv = torch.empty_like(perm)
        inv[perm] = torch.arange(perm.numel(), device=dev)

        feats = torch.cat([merged[w_idx, s_pos], x[d_frame, d_pos].float()])[perm]
        counts = torch.cat([(cnt[w_idx, s_pos] + 1) * win_len[w_idx], torch.ones(d_pos.numel(), device=dev)])[perm]

        source = torch.full((t, s), -1, dtype=torch.long, device=dev)
        source[d_frame, d_pos] = inv[w_idx.numel() + torch.arange(d_pos.numel(), device=dev)]
        if n_win:
            item = torch.full((n_win, s), -1, dtype=torch.long, device=dev)
            item[w_idx, s_pos] = inv[torch.arange(w_idx.numel(), device=dev)]
            win_source = torch.gather(item, 1, to_centre)  # [W, S] output of each static position's centre
            win_source = torch.where(static & (k_static[:, None] > 0), win_source, torch.full_like(win_source, -1))
            source = torch.where(frame_static, win_source[frame_window.clamp_min(0)], source)
        return make_result(feats, frame_all[perm], pos_all[perm], counts, source, like=x)
