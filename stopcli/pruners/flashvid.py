"""FlashVid (ICLR 2026), vision side as the SToP authors run it: segments, attention-and-diversity token selection
(ADTS), tree-like temporal merging of the rest and per-frame density-peak clustering of what survives."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .fastvid import segment_ids
from .ops import as_float32, ceil_eps, density_peak_scores, descending_rank, gram, one_hot_sum, sqdist_from_gram
from .types import PrunedTokens, SinkHooks, VisualTokens, check_keep, make_result


@dataclass(frozen=True)
class FlashVid:
    """Per frame a budget B = ceil(keep * S * expansion) = n_a ADTS tokens + n_m merged tokens, n_a = ceil(0.7 * B).

    1. Segments: cut between frames t, t+1 where the cosine of their mean tokens is below seg_tau, and at the
       lowest remaining similarities until there are min_segments segments.
    2. ADTS, per frame: calibrated distance d[i, j] = (1 - cos(x_i, x_j)) * (a'_j * 1e6) * e_j, with a' = a
       (SToP: a - mu_s * s, s scored on the segment's frames as the authors do) and e_j = <x_j, mean token of the
       segment>. Greedy farthest-point picks: first the j with the largest second-smallest d[., j], then the j
       maximising min over picked i of d[i, j]. When the best candidate is one already picked (only tokens with a
       calibration <= 0 are left) the selection stops; the authors' code instead repeats that token for the
       remaining picks (faithful=True).
    3. Temporal merging inside a segment: a non-selected token of frame t+1 whose best cosine match among frame t's
       non-selected tokens exceeds temporal_threshold joins that match (chains run back to the first frame). If
       fewer than (n_a + n_m) * W tokens of a W-frame segment would remain, only similarities above the
       (W*S - (n_a + n_m) * W)-th largest merge. A tree's token is the sum of its members divided by 1 + its
       direct children (the authors' code; chain_mean=True divides by the member count).
    4. Clustering: the M survivors of a segment (non-selected, not merged) get ratio rho = n_m * W / M; a frame
       with n_f survivors keeps ceil(n_f * rho) DPC-kNN cluster means (k = min(that, 7), plain means, centre
       position), or all its survivors when rho >= 1.
    Output: the selected tokens and the clustered/surviving ones, ordered by frame * S + position. Count (exact):
    sum over frames of the picks + sum over frames of the step-4 tokens; about T * B = 1.25 * keep * T * S when
    every frame makes all n_a picks (the authors' in-LLM second stage, layer 20 keeping 30%, is never installed in
    their code, so the vision side keeps ~1.25x the nominal budget).
    One-frame segments cluster their non-selected tokens like any other; the authors' code clusters the whole
    frame there, selected tokens included, so a cluster can sit on a selected token's position (faithful=True).
    """

    min_segments: int = 8
    seg_tau: float = 0.9
    temporal_threshold: float = 0.8
    expansion: float = 1.25
    adts_share: float = 0.7
    k_nn: int = 7
    segment_sink_score: bool = True
    chain_mean: bool = False
    faithful: bool = False
    name: str = "flashvid"
    default_mu: tuple[float, float] = (0.02, 0.0)

    def split(self, s: int, keep: float) -> tuple[int, int, int]:
        """(B, n_a, n_m) per frame."""
        b = max(1, ceil_eps(check_keep(keep) * s * self.expansion))
        n_a = min(s, ceil_eps(b * self.adts_share))
        return b, n_a, b - n_a

    def _calibration(self, tokens: VisualTokens, seg: Tensor, hooks: SinkHooks) -> tuple[Tensor, Tensor]:
        """The two [T, S] float32 column weights of the ADTS distance: a' * 1e6 and e."""
        x = as_float32(tokens.features)
        attn = tokens.attention
        n_seg = int(seg[-1]) + 1
        if hooks.mu_s != 0 and hooks.score is not None:
            if self.segment_sink_score and hooks.scorer is not None:
                # The authors score sinks on each segment's frames; a handful of segments, one tiny call each.
                bounds = torch.bincount(seg, minlength=n_seg).cumsum(0).tolist()
                scores = torch.stack([hooks.local_score(attn[b:e]) for b, e in zip([0] + bounds[:-1], bounds)])
                attn = attn - hooks.mu_s * scores.to(attn.device, attn.dtype)[seg]
            else:
                attn = hooks.spatial(attn)
        length = torch.bincount(seg, minlength=n_seg).to(x.dtype)  # [G]
        pooled = x.mean(1)  # [T, D] mean token of each frame
        seg_pool = torch.zeros(n_seg, x.shape[-1], device=x.device).index_add_(0, seg, pooled) / length[:, None]
        relevance = torch.einsum("tsd,td->ts", x, seg_pool[seg])  # [T, S] e_j
        return attn.float() * 1e6, relevance

    def _select(self, xn: Tensor, w1: Tensor, w2: Tensor, n_a: int) -> tuple[Tensor, Tensor]:
        """Greedy ADTS picks for every frame at once. Returns chosen [T, S] bool and, per frame, the token the
        authors' code would repeat after its last distinct pick ([T] long, -1 when all n_a picks are distinct).
        The loop runs over the n_a picks (each pick depends on the previous ones), batched over all frames."""
        t, s, _ = xn.shape
        dev = xn.device
        frames = torch.arange(t, device=dev)
        dist = (1.0 - torch.bmm(xn, xn.transpose(1, 2))) * w1[:, None, :] * w2[:, None, :]  # [T, S, S]
        if s >= 2:
            first = torch.topk(dist, 2, dim=1, largest=False).values[:, 1, :].argmax(-1)  # [T]
        else:
            first = torch.zeros(t, dtype=torch.long, device=dev)
        chosen = torch.zeros(t, s, dtype=torch.bool, device=dev)
        chosen[frames, first] = True
        repeat = torch.full((t,), -1, dtype=torch.long, device=dev)
        nearest = dist[frames, first]  # [T, S] min over picked i of d[i, j]
        for _ in range(1, n_a):
            pick = nearest.argmax(-1)  # [T]
            again = chosen[frames, pick] & (repeat < 0)
            repeat = torch.where(again, pick, repeat)
            # Once a frame repeats a pick its running minimum no longer changes: it would repeat it forever.
            fresh = repeat < 0
            chosen[frames[fresh], pick[fresh]] = True
            if not bool(fresh.any()):
                break
            nearest = torch.minimum(nearest, dist[frames, pick])
        return chosen, repeat

    def plan(self, tokens: VisualTokens, keep: float, hooks: SinkHooks | None = None) -> dict:
        """Everything the output and its size depend on (see the class docstring for the steps)."""
        hooks = hooks or SinkHooks.none()
        x = as_float32(tokens.features)  # [T, S, D]
        t, s, _ = x.shape
        dev = x.device
        b, n_a, n_m = self.split(s, keep)
        seg = segment_ids(x.mean(1), self.min_segments, self.seg_tau)  # [T]
        n_seg = int(seg[-1]) + 1
        length = torch.bincount(seg, minlength=n_seg)  # [G]
        start = torch.cat([length.new_zeros(1), length.cumsum(0)[:-1]])  # [G]
        frames = torch.arange(t, device=dev)

        xn = x / torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min(1e-12)
        w1, w2 = self._calibration(tokens, seg, hooks)
        chosen, repeat = self._select(xn, w1, w2, n_a)

        # Temporal merging: best match of every token of frame t among frame t-1's non-selected tokens.
        best = torch.full((t, s), -1.0, device=dev)
        match = torch.zeros(t, s, dtype=torch.long, device=dev)
        if t > 1:
            sim = torch.bmm(xn[1:], xn[:-1].transpose(1, 2))  # [T-1, S, S] token n of t+1 vs m of t
            sim.masked_fill_(chosen[1:, :, None] | chosen[:-1, None, :], -1.0)
            best[1:], match[1:] = sim.max(-1)
        best[start] = -1.0  # a segment's first frame has nothing to merge into
        merged = best > self.temporal_threshold if n_m > 0 else torch.zeros_like(chosen)
        if n_m > 0:
            retained = torch.zeros(n_seg, dtype=torch.long, device=dev).index_add_(0, seg, (~merged).sum(1))
            floor = (n_a + n_m) * length
            for g in ((retained < floor) & (length > 1)).nonzero().flatten().tolist():  # a few segments
                lo, w = int(start[g]), int(length[g])
                k = w * s - int(floor[g])
                if k <= 0:
                    merged[lo:lo + w] = False
                    continue
                soft = max(float(torch.topk(best[lo:lo + w].flatten(), k).values[-1]), -1.0 + 1e-6)
                merged[lo:lo + w] = best[lo:lo + w] > soft

        flat = frames[:, None] * s + torch.arange(s, device=dev)[None, :]  # [T, S]
        parent = torch.where(merged, flat - s - torch.arange(s, device=dev)[None, :] + match, flat).flatten()
        root = parent.clone()
        for _ in range(max(1, math.ceil(math.log2(max(t, 2))))):  # pointer jumping: chains are < T long
            root = root[root]
        children = torch.bincount(parent[merged.flatten()], minlength=t * s)  # direct children
        members = torch.bincount(root, minlength=t * s)  # tree sizes at the roots

        survivor = ~chosen & ~merged
        if self.faithful:
            survivor |= (length[seg] == 1)[:, None]  # the authors cluster a one-frame segment's whole frame
        if n_m == 0:
            survivor = torch.zeros_like(survivor)
        n_f = survivor.sum(1)  # [T]
        m_seg = torch.zeros(n_seg, dtype=torch.long, device=dev).index_add_(0, seg, n_f)
        want = (n_m * length)[seg]  # [T] n_m * W of the frame's segment
        cluster = (want < m_seg[seg]) & (n_f > 0)  # [T] frames whose survivors are clustered (rho < 1)
        # ceil(n_f * rho) in integers: the authors' float product can land just above an integer and add one.
        n_out = torch.where(cluster, (n_f * want + m_seg[seg] - 1) // m_seg[seg].clamp_min(1), n_f)  # [T]
        n_pick = chosen.sum(1) + (repeat >= 0).long() * (n_a - chosen.sum(1)) * int(self.faithful)
        return dict(segments=seg, split=(b, n_a, n_m), chosen=chosen, repeat=repeat, merged=merged, root=root,
                    children=children, members=members, survivor=survivor, cluster=cluster, n_out=n_out,
                    n_pick=n_pick, kept=int(n_pick.sum() + n_out.sum()))

    def budget(self, tokens: VisualTokens, keep: float, hooks: SinkHooks | None = None) -> int:
        return self.plan(tokens, keep, hooks)["kept"]

    def __call__(self, tokens: VisualTokens, keep: float, hooks: SinkHooks | None = None) -> PrunedTokens:
        x = tokens.features  # [T, S, D]
        t, s, dim = x.shape
        dev = x.device
        p = self.plan(tokens, keep, hooks)
        xf = as_float32(x).reshape(t * s, dim)
        frames = torch.arange(t, device=dev)
        survivor, cluster, n_out, root = p["survivor"], p["cluster"], p["n_out"], p["root"]

        # Survivors, packed per frame: [T, F] slots, their tree features (sum over the tree / divisor).
        n_f = survivor.sum(1)
        f_max = int(n_f.max()) if t else 0
        slot_pos = torch.argsort((~survivor).to(torch.uint8), dim=1, stable=True)[:, :f_max]  # [T, F] ascending
        slot_ok = torch.arange(f_max, device=dev)[None, :] < n_f[:, None]  # [T, F]
        slot_flat = (frames[:, None] * s + slot_pos)[slot_ok]  # [n_surv]
        slot_of = torch.full((t * s,), -1, dtype=torch.long, device=dev)
        slot_of[slot_flat] = (frames[:, None] * f_max + torch.arange(f_max, device=dev)[None, :])[slot_ok]
        feats = torch.zeros(t * f_max, dim, device=dev)
        feats[slot_of[slot_flat]] = xf[slot_flat]
        fed = p["merged"].flatten() & (slot_of[root] >= 0)
        feats.index_add_(0, slot_of[root[fed]], xf[fed])
        divisor = (p["members"] if self.chain_mean else p["children"] + 1).float()
        weight = torch.zeros(t * f_max, device=dev)
        weight[slot_of[slot_flat]] = p["members"][slot_flat].float()
        feats[slot_of[slot_flat]] /= divisor[slot_flat][:, None]
        feats = feats.reshape(t, f_max, dim)
        weight = weight.reshape(t, f_max)

        # DPC-kNN per clustered frame (all frames in one batch); centres listed best score first, as the authors.
        k_out = torch.where(cluster, n_out, torch.zeros_like(n_out))  # [T]
        c_max = int(k_out.max()) if t else 0
        valid = slot_ok & cluster[:, None]
        d2 = sqdist_from_gram(gram(feats))  # [T, F, F]
        score = density_peak_scores(d2, valid, k_out.clamp(1, self.k_nn), dim)  # [T, F]
        rank = descending_rank(score)
        centre_slot = torch.argsort(rank, dim=1)[:, :c_max]  # [T, C] slots by descending score
        c_ok = torch.arange(c_max, device=dev)[None, :] < k_out[:, None]  # [T, C]
        to_c = torch.gather(d2, 2, centre_slot[:, None, :].expand(t, f_max, c_max))
        assign = to_c.masked_fill(~c_ok[:, None, :], float("inf")).argmin(-1) if c_max else \
            torch.zeros(t, f_max, dtype=torch.long, device=dev)  # [T, F]
        own = torch.full((t, f_max), -1, dtype=torch.long, device=dev)  # a centre always joins its own cluster
        own.scatter_(1, centre_slot, torch.where(c_ok, torch.arange(c_max, device=dev)[None, :].expand(t, c_max),
                                                 torch.full_like(centre_slot, -1)))
        assign = torch.where(own >= 0, own, assign)
        sums, cnt_plain = one_hot_sum(assign, valid, feats, c_max)  # [T, C, D], [T, C]
        tree_cnt = one_hot_sum(assign, valid, weight[..., None], c_max)[0][..., 0]  # [T, C] input tokens
        means = sums / cnt_plain.clamp_min(1.0)[..., None]

        # Outputs: picks, cluster means (clustered frames) and plain survivors (the other frames).
        pick_t, pick_j = p["chosen"].nonzero(as_tuple=True)
        pc_t, pc_k = c_ok.nonzero(as_tuple=True)
        pc_slot = centre_slot[pc_t, pc_k]
        ps_t, ps_slot = (slot_ok & ~cluster[:, None]).nonzero(as_tuple=True)
        parts_t = [pick_t, pc_t, ps_t]
        parts_j = [pick_j, slot_pos[pc_t, pc_slot], slot_pos[ps_t, ps_slot]]
        parts_x = [xf[pick_t * s + pick_j], means[pc_t, pc_k], feats[ps_t, ps_slot]]
        parts_n = [torch.ones_like(pick_t), tree_cnt[pc_t, pc_k].round().long(), weight[ps_t, ps_slot].long()]
        if self.faithful:  # the authors' repeated picks: copies of the repeated token
            rep_t = torch.repeat_interleave(frames, p["n_pick"] - p["chosen"].sum(1))
            rep_j = p["repeat"][rep_t]
            parts_t.append(rep_t), parts_j.append(rep_j), parts_x.append(xf[rep_t * s + rep_j])
            parts_n.append(torch.ones_like(rep_t))
        frame_all, pos_all = torch.cat(parts_t), torch.cat(parts_j)
        perm = torch.argsort(frame_all * s + pos_all, stable=True)
        inv = torch.empty_like(perm)
        inv[perm] = torch.arange(perm.numel(), device=dev)
        n_pick_rows, n_c = pick_t.numel(), pc_t.numel()

        # Source: picks -> themselves; survivors -> their cluster or themselves; merged tokens -> their root's.
        out_of = torch.full((t * s,), -1, dtype=torch.long, device=dev)
        slot_out = torch.full((t, max(f_max, 1)), -1, dtype=torch.long, device=dev)
        if n_c:
            centre_out = torch.full((t, max(c_max, 1)), -1, dtype=torch.long, device=dev)
            centre_out[pc_t, pc_k] = inv[n_pick_rows + torch.arange(n_c, device=dev)]
            clustered_slots = valid.nonzero(as_tuple=True)
            slot_out[clustered_slots] = centre_out[clustered_slots[0], assign[clustered_slots]]
        slot_out[ps_t, ps_slot] = inv[n_pick_rows + n_c + torch.arange(ps_t.numel(), device=dev)]
        out_of[slot_flat] = slot_out[:, :f_max][slot_ok]
        out_of[pick_t * s + pick_j] = inv[:n_pick_rows]
        out_of = torch.where(fed, out_of[root], out_of)
        return make_result(torch.cat(parts_x)[perm], frame_all[perm], pos_all[perm], torch.cat(parts_n)[perm],
                           out_of.reshape(t, s), like=x)
