"""`stop show`: one PNG of which tokens survive, and where the sinks are.

Rows, each over the same sampled frames: the sink score as a heat map; the tokens the base pruner keeps; the tokens
base + SToP keeps. In a pruner row a kept cell is outlined (green: kept as it was, orange: stands for several merged
tokens), a cell merged into another token is half-dimmed with a dot, and a dropped cell is dimmed. Cells follow the
token grid the language model receives (one cell per token, one column per token frame)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .pruners import PrunedTokens, VisualTokens, get_pruner
from .pruners.stop import score_fn

KEPT = np.array([40, 220, 40], dtype=np.uint8)
MERGED_CENTRE = np.array([255, 150, 0], dtype=np.uint8)
DOT = np.array([255, 255, 255], dtype=np.uint8)
DROPPED_DIM, MERGED_DIM = 0.25, 0.6
TITLE_PX, GAP_PX = 36, 4


@dataclass(frozen=True)
class Layout:
    """Where things are in the written PNG, so callers (and tests) can find a cell: the top-left pixel of
    (row, column, cell) is (TITLE_PX + row * (tile_h + GAP_PX) + r * cell, col * (tile_w + GAP_PX) + c * cell)."""

    rows: int
    columns: int
    cell: int
    grid: tuple[int, int]
    frames: list[int]
    width: int
    height: int

    def cell_box(self, row: int, column: int, position: int) -> tuple[int, int, int, int]:
        r, c = divmod(position, self.grid[1])
        top = TITLE_PX + row * (self.grid[0] * self.cell + GAP_PX) + r * self.cell
        left = column * (self.grid[1] * self.cell + GAP_PX) + c * self.cell
        return top, left, top + self.cell, left + self.cell


def _tile(frame: np.ndarray, grid: tuple[int, int], cell: int) -> np.ndarray:
    """Resize a [H, W, 3] frame to the token grid's aspect (as the processor does): [h*cell, w*cell, 3]."""
    import torch.nn.functional as F

    x = torch.from_numpy(frame).permute(2, 0, 1)[None].float()
    y = F.interpolate(x, size=(grid[0] * cell, grid[1] * cell), mode="bilinear", antialias=True, align_corners=False)
    return y[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def _heat(tile: np.ndarray, score: np.ndarray, grid: tuple[int, int], cell: int) -> np.ndarray:
    from matplotlib import colormaps

    colours = (colormaps["inferno"](score)[:, :3] * 255).astype(np.float32)  # [S, 3]
    per_pixel = np.kron(colours.reshape(grid[0], grid[1], 3), np.ones((cell, cell, 1), dtype=np.float32))
    return (0.35 * tile + 0.65 * per_pixel).round().astype(np.uint8)


def _pruned_tile(tile: np.ndarray, t: int, pruned: PrunedTokens, grid: tuple[int, int], cell: int) -> np.ndarray:
    out = tile.astype(np.float32)
    s = grid[0] * grid[1]
    src = pruned.source[t].cpu().numpy()  # [S]
    kept_here = {int(p): int(i) for i, (f, p) in enumerate(pruned.positions.tolist()) if f == t}
    counts = pruned.counts.cpu().numpy()
    border = max(1, cell // 8)
    for pos in range(s):  # one frame's cells for a picture: a few hundred at most
        r, c = divmod(pos, grid[1])
        ys, xs = slice(r * cell, (r + 1) * cell), slice(c * cell, (c + 1) * cell)
        if pos in kept_here:
            colour = MERGED_CENTRE if counts[kept_here[pos]] > 1 else KEPT
            out[ys, xs][:border], out[ys, xs][-border:] = colour, colour
            out[ys, xs][:, :border], out[ys, xs][:, -border:] = colour, colour
        elif src[pos] >= 0:
            out[ys, xs] *= MERGED_DIM
            mid = cell // 2
            out[r * cell + mid - 1:r * cell + mid + 1, c * cell + mid - 1:c * cell + mid + 1] = DOT
        else:
            out[ys, xs] *= DROPPED_DIM
    return out.round().clip(0, 255).astype(np.uint8)


def token_frames(num_token_frames: int, count: int) -> list[int]:
    return sorted(set(np.linspace(0, num_token_frames - 1, min(count, num_token_frames)).round().astype(int).tolist()))


def render_tokens(frames: np.ndarray, tokens: VisualTokens, base: PrunedTokens, stop: PrunedTokens, out: str | Path,
                  title: str, show_frames: int = 8, gamma: float = 1.1, cell: int | None = None,
                  sink_score: str = "minmax") -> Layout:
    """Write the PNG. frames: [F, H, W, 3] uint8 video frames; token frame t shows video frame t * F // T."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = tokens.grid
    cell = cell or max(6, 144 // max(grid))
    cols = token_frames(tokens.num_frames, show_frames)
    score = score_fn(sink_score)(tokens.attention, gamma).cpu().numpy()
    rows = []
    for t in cols:
        tile = _tile(frames[min(len(frames) - 1, t * len(frames) // tokens.num_frames)], grid, cell)
        rows.append((_heat(tile, score, grid, cell), _pruned_tile(tile, t, base, grid, cell),
                     _pruned_tile(tile, t, stop, grid, cell)))
    th, tw = grid[0] * cell, grid[1] * cell
    height = TITLE_PX + 3 * th + 2 * GAP_PX
    width = len(cols) * tw + (len(cols) - 1) * GAP_PX
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    for j, panels in enumerate(rows):
        for i, panel in enumerate(panels):
            top, left = TITLE_PX + i * (th + GAP_PX), j * (tw + GAP_PX)
            canvas[top:top + th, left:left + tw] = panel
    dpi = 100
    fig = plt.figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.imshow(canvas, interpolation="nearest", aspect="auto", extent=(0, width, height, 0))
    ax.set_axis_off()
    fig.text(0.005, 1 - 4 / height, title, ha="left", va="top", fontsize=8, family="monospace")
    fig.text(0.005, 1 - 20 / height, "rows: sink score · base pruner · base + SToP   (green kept, orange merged "
             "centre, dot merged, dim dropped)", ha="left", va="top", fontsize=7, color="0.35")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return Layout(3, len(cols), cell, grid, cols, width, height)


def show(frames: np.ndarray, tokens: VisualTokens, pruner: str, ratio: float, out: str | Path, model: str,
         show_frames: int = 8, mu_s: float | None = None, mu_t: float | None = None,
         sink_score: str = "minmax") -> Layout:
    """Prune with the base pruner and with base + SToP (no model pass: the encoded tokens are reused) and draw."""
    keep = 1.0 - ratio
    base = get_pruner(pruner)(tokens, keep)
    stop = get_pruner(pruner, stop=True, mu_s=mu_s, mu_t=mu_t, sink_score=sink_score)(tokens, keep)
    title = (f"{model} · {pruner} · ratio {ratio:g} · visual tokens {tokens.num_tokens} → base {len(base)}, "
             f"+SToP {len(stop)}" + ("" if sink_score == "minmax" else f" ({sink_score} sink score)"))
    return render_tokens(frames, tokens, base, stop, out, title, show_frames, sink_score=sink_score)
