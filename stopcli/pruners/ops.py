"""Tensor building blocks shared by the pruners: deterministic top-k, run lengths, density-peak scores.

Everything is batch-first and loop-free. Ties are always broken towards the lower index, so the same input gives
the same output on every run and device (the authors add 1e-6 random noise instead)."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def as_float32(x: Tensor) -> Tensor:
    """Distances and similarities are computed in float32; float32 input is used as is (no copy)."""
    return x if x.dtype == torch.float32 else x.float()


def floor_eps(x: float) -> int:
    """floor(x) that forgives float noise: 0.7 * 10 = 6.999999999 counts as 7."""
    return int(math.floor(x + 1e-9))


def ceil_eps(x: float) -> int:
    """ceil(x) that forgives float noise: 0.1 * 70 = 7.000000001 counts as 7."""
    return int(math.ceil(x - 1e-9))


def round_half_up(x: Tensor | float):
    """round() with halves going up (Python's round() goes to even), float-noise tolerant."""
    if isinstance(x, Tensor):
        return torch.floor(x + 0.5 + 1e-9).long()
    return int(math.floor(x + 0.5 + 1e-9))


def descending_rank(scores: Tensor) -> Tensor:
    """[B, n] -> [B, n] long: 0 for the highest score of each row; equal scores rank by lower index first."""
    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices  # [B, n]
    rank = torch.empty_like(order)
    rank.scatter_(-1, order, torch.arange(order.shape[-1], device=order.device).expand_as(order))
    return rank


def topk_mask(scores: Tensor, k: Tensor | int, valid: Tensor | None = None) -> Tensor:
    """[B, n] scores, k per row ([B] or int), optional [B, n] valid mask -> [B, n] bool of the top-k valid entries.

    Invalid entries are never chosen (k must not exceed the number of valid entries of its row)."""
    if valid is not None:
        scores = scores.masked_fill(~valid, float("-inf"))
    rank = descending_rank(scores)
    if isinstance(k, int):
        mask = rank < k
    else:
        mask = rank < k.to(rank.device)[:, None]
    if valid is not None:
        mask &= valid
    return mask


def true_indices(mask: Tensor, count: int) -> Tensor:
    """[B, n] bool with the same number `count` of True per row -> [B, count] their indices, ascending."""
    return torch.argsort((~mask).to(torch.uint8), dim=-1, stable=True)[:, :count]


def consecutive_cosine(x: Tensor) -> Tensor:
    """[T, S, D] -> [T-1, S] float32: cos(x[t, j], x[t+1, j]). No [T, S, D] temporary is made."""
    x = as_float32(x)
    dot = torch.einsum("tsd,tsd->ts", x[:-1], x[1:])  # [T-1, S]
    norm = torch.linalg.vector_norm(x, dim=-1).clamp_min(1e-12)  # [T, S]
    return dot / (norm[:-1] * norm[1:])


def run_lengths(flags: Tensor) -> Tensor:
    """[L, S] bool -> [L, S] long: how many consecutive True end at each row (0 where False)."""
    steps = torch.arange(flags.shape[0], device=flags.device)[:, None].expand_as(flags)
    last_false = torch.where(flags, torch.full_like(steps, -1), steps).cummax(dim=0).values  # [L, S]
    return steps - last_false


def gram(x: Tensor) -> Tensor:
    """[B, n, D] -> [B, n, n] float32 inner products."""
    x = as_float32(x)
    return torch.bmm(x, x.transpose(1, 2))


def sqdist_from_gram(g: Tensor) -> Tensor:
    """[B, n, n] inner products -> squared Euclidean distances (exact zeros on the diagonal)."""
    sq = g.diagonal(dim1=1, dim2=2)  # [B, n]
    d2 = (sq[:, :, None] + sq[:, None, :] - 2.0 * g).clamp_min_(0.0)
    d2.diagonal(dim1=1, dim2=2).zero_()
    return d2


def density_peak_scores(d2: Tensor, valid: Tensor, k_nn: Tensor | int, dim: int) -> Tensor:
    """DPC-kNN centre scores delta * rho for each set of a batch.

    d2:    [B, n, n] squared distances; valid: [B, n] which entries belong to the set; k_nn: neighbours per set
           ([B] or int, the token itself included); dim: feature size (distances are scaled by 1/sqrt(dim)).
    rho_i   = exp(-mean squared scaled distance to the k nearest, itself included)
    delta_i = distance to the nearest denser token ("denser": higher rho, or equal rho and lower index);
              the densest token gets the largest distance in its set.
    Returns [B, n] float32, -inf outside the set."""
    b, n, _ = d2.shape
    if b == 0 or n == 0:
        return d2.new_full((b, n), float("-inf"))
    pair_valid = valid[:, :, None] & valid[:, None, :]  # [B, n, n]
    scaled = (d2 / dim).masked_fill(~pair_valid, float("inf"))
    k_max = int(k_nn) if isinstance(k_nn, int) else int(k_nn.max())
    k_max = max(1, min(k_max, n))
    nearest = torch.topk(scaled, k_max, dim=-1, largest=False).values  # [B, n, k_max] ascending
    k_row = (torch.full((b,), k_max, device=d2.device) if isinstance(k_nn, int)
             else k_nn.to(d2.device).clamp(1, k_max))  # [B]
    take = torch.arange(k_max, device=d2.device)[None, None, :] < k_row[:, None, None]  # [B, 1, k_max]
    nearest = torch.where(take, nearest, torch.zeros_like(nearest)).nan_to_num(posinf=0.0)
    rho = torch.exp(-nearest.sum(-1) / k_row[:, None].float())  # [B, n]

    dist = (d2 / dim).sqrt()
    idx = torch.arange(n, device=d2.device)
    denser = (rho[:, None, :] > rho[:, :, None]) | (
        (rho[:, None, :] == rho[:, :, None]) & (idx[None, None, :] < idx[None, :, None]))  # [B, i, j]
    denser &= pair_valid
    d_max = dist.masked_fill(~pair_valid, 0.0).flatten(1).amax(-1)  # [B]
    delta = torch.where(denser, dist, d_max[:, None, None]).amin(-1)  # [B, n]
    return (delta * rho).masked_fill(~valid, float("-inf"))


def one_hot_sum(assign: Tensor, include: Tensor, values: Tensor, slots: int) -> tuple[Tensor, Tensor]:
    """Sum rows of `values` into `slots` buckets per batch.

    assign: [B, n] long bucket of each row; include: [B, n] bool rows that count; values: [B, n, D].
    Returns sums [B, slots, D] (float32) and counts [B, slots] (float32). One bmm, no loop over buckets."""
    onehot = (assign[:, None, :] == torch.arange(slots, device=assign.device)[None, :, None]) & include[:, None, :]
    weights = onehot.to(torch.float32)  # [B, slots, n]
    sums = torch.bmm(weights, as_float32(values))
    return sums, weights.sum(-1)
