"""`stop sinks`: does a model have attention sinks? Statistics of the attention its vision pass pays each grid
position, which positions count as sinks (`stopcli.pruners.stop.sink_positions`), and how many of a pruner's kept
tokens sit on them with and without SToP.

Everything here is a pure function of one video's `VisualTokens` (per video) or of a list of per-video results (a
folder); the caller runs the vision pass. Attention is on our adapters' common scale (mean 1/729 per token)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from .pruners import VisualTokens, get_pruner
from .pruners.stop import SINK_PERSISTENCE, SINK_RATIO, sink_persistence, sink_positions

MAD_TO_SIGMA = 0.6745  # the modified z-score (Iglewicz & Hoaglin): 0.6745 (x - median) / MAD


@dataclass
class VideoSinks:
    """One video. Maps are [S] over the token grid (raster order)."""

    video: str
    grid: tuple[int, int]
    frames: int
    persistent: Tensor  # [S] attention received, mean over frames
    variation: Tensor  # [S] its temporal variation: std over frames / mean
    over_median: Tensor  # [S] persistent attention / the median position's
    robust_z: Tensor  # [S] modified z-score of the persistent attention across positions (nan: MAD is 0)
    persistence: Tensor  # [S] share of frames in which the position draws >= ratio x its frame's median
    sinks: Tensor  # [S] bool, persistence >= the threshold
    top_k_share: float  # share of all attention the top_k positions hold
    kept: dict = field(default_factory=dict)  # pruner -> mode (base / minmax / robust) -> counts

    @property
    def top(self) -> int:
        return int(self.persistent.argmax())


def attention_stats(video: str, tokens: VisualTokens, ratio: float = SINK_RATIO,
                    persistence: float = SINK_PERSISTENCE, top_k: int = 3) -> VideoSinks:
    a = tokens.attention.float()  # [T, S]
    m = a.mean(0)  # [S]
    med = m.median()
    mad = (m - med).abs().median()
    z = MAD_TO_SIGMA * (m - med) / mad if float(mad) > 0 else torch.full_like(m, float("nan"))
    share = sink_persistence(a, ratio)  # [S]
    return VideoSinks(
        video=video, grid=tuple(tokens.grid), frames=tokens.num_frames, persistent=m,
        variation=a.std(0, unbiased=False) / m.clamp_min(1e-12), over_median=m / med.clamp_min(1e-12), robust_z=z,
        persistence=share, sinks=sink_positions(a, ratio, persistence),
        top_k_share=float(torch.topk(m, min(top_k, m.numel())).values.sum() / m.sum().clamp_min(1e-12)))


def kept_on_sinks(stats: VideoSinks, tokens: VisualTokens, pruners: list[str], keep: float,
                  scores: tuple[str, ...] = ("minmax", "robust")) -> dict:
    """For each pruner, without SToP and with it under each sink score: tokens kept, and how many of them sit on a
    sink position / on the most attended position (the one min-max calls s = 1, sink or not)."""
    out = {}
    top = stats.top
    for name in pruners:
        rows = {}
        for mode in ("base", *scores):
            pruned = get_pruner(name) if mode == "base" else get_pruner(name, stop=True, sink_score=mode)
            pos = pruned(tokens, keep).positions[:, 1]  # [N] spatial index of every kept token
            rows[mode] = dict(kept=int(pos.numel()), on_sinks=int(stats.sinks[pos].sum()),
                              on_top=int((pos == top).sum()))
        out[name] = rows
    stats.kept = out
    return out


def _grid(values: Tensor, grid: tuple[int, int], digits: int = 4) -> list[list[float | None]]:
    return [[None if v != v else round(float(v), digits) for v in row] for row in values.reshape(grid).tolist()]


def video_json(stats: VideoSinks) -> dict:
    h, w = stats.grid
    finite_z = stats.robust_z[~stats.robust_z.isnan()]
    return dict(
        video=stats.video, error=None, frames=stats.frames, grid=[h, w],
        top_position=dict(position=stats.top, row=stats.top // w, col=stats.top % w),
        top_over_median=round(float(stats.over_median.max()), 3),
        max_robust_z=round(float(finite_z.max()), 3) if finite_z.numel() else None,
        top_k_share=round(stats.top_k_share, 4),
        sinks=[dict(position=p, row=p // w, col=p % w, over_median=round(float(stats.over_median[p]), 3),
                    persistence=round(float(stats.persistence[p]), 3))
               for p in stats.sinks.nonzero().flatten().tolist()],
        persistent=_grid(stats.persistent, stats.grid, 6), variation=_grid(stats.variation, stats.grid, 3),
        over_median=_grid(stats.over_median, stats.grid, 3), robust_z=_grid(stats.robust_z, stats.grid, 3),
        persistence=_grid(stats.persistence, stats.grid, 3), kept=stats.kept)


def _spread(values: list[float]) -> dict | None:
    if not values:
        return None
    t = torch.tensor(values)
    return dict(min=round(float(t.min()), 3), median=round(float(t.median()), 3), max=round(float(t.max()), 3))


def folder_summary(videos: list[VideoSinks]) -> dict:
    """Over the videos of the most common grid (a heat map needs one grid): mean maps, the share of videos in which
    each position is a sink, the spread of the per-video statistics, and the kept counts summed."""
    if not videos:
        return dict(videos=0)
    grids = [v.grid for v in videos]
    grid = max(set(grids), key=grids.count)
    same = [v for v in videos if v.grid == grid]
    kept: dict = {}
    for v in videos:
        for name, modes in v.kept.items():
            for mode, counts in modes.items():
                acc = kept.setdefault(name, {}).setdefault(mode, dict(kept=0, on_sinks=0, on_top=0))
                for k, n in counts.items():
                    acc[k] += n
    persistent = torch.stack([v.persistent for v in same]).mean(0)  # [S]
    over_median = torch.stack([v.over_median for v in same]).mean(0)
    sink_share = torch.stack([v.sinks.float() for v in same]).mean(0)
    top = int(persistent.argmax())
    return dict(
        videos=len(videos), grid=list(grid), videos_on_that_grid=len(same),
        videos_with_sinks=sum(bool(v.sinks.any()) for v in videos),
        top_over_median=_spread([float(v.over_median.max()) for v in videos]),
        top_k_share=_spread([v.top_k_share for v in videos]),
        top_position=dict(position=top, row=top // grid[1], col=top % grid[1],
                          share_of_videos_where_it_is_the_top=round(sum(v.top == top for v in same) / len(same), 3)),
        persistent=_grid(persistent, grid, 6), over_median=_grid(over_median, grid, 3),
        sink_share=_grid(sink_share, grid, 3), kept=kept)


def render_heatmap(summary: dict, out: str | Path, title: str) -> Path:
    """Two panels over the token grid: persistent attention / the median position's (averaged over the videos), and
    the share of videos in which each position is a sink."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    over = np.array(summary["over_median"], dtype=float)
    share = np.array(summary["sink_share"], dtype=float)
    h, w = over.shape
    fig, axes = plt.subplots(1, 2, figsize=(2 * max(3.0, 0.45 * w + 1.6), max(3.0, 0.45 * h + 1.2)))
    for ax, values, label, vmax, cmap in (
            (axes[0], over, "persistent attention / median", max(SINK_RATIO, float(over.max())), "inferno"),
            (axes[1], share, "share of videos: a sink", 1.0, "viridis")):
        im = ax.imshow(values, cmap=cmap, vmin=0.0, vmax=vmax, interpolation="nearest")
        ax.set_title(label, fontsize=9)
        ax.set_xticks(range(w)) if w <= 16 else None
        ax.set_yticks(range(h)) if h <= 16 else None
        ax.tick_params(labelsize=6)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        if h * w <= 100:  # small grids: print the numbers
            for (r, c), v in np.ndenumerate(values):
                ax.text(c, r, f"{v:.1f}" if values is over else f"{v:.2f}", ha="center", va="center",
                        fontsize=6, color="white" if v < 0.6 * vmax else "black")
    fig.suptitle(title, fontsize=8, family="monospace")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


__all__ = ["VideoSinks", "attention_stats", "kept_on_sinks", "video_json", "folder_summary", "render_heatmap"]
