"""What carrying Qwen3-VL's DeepStack levels through a pruner costs: median ms per call of the pruner alone vs
`carry` (auto: the "codes" method, two pruner runs for all levels, else "tangents", one run per level plus a check),
at Qwen3-VL shapes; the method column says which one served, and the last columns time the "tangents" method
forced, for comparison.

    python bench/deepstack_carry.py [--patches 16] [--grid 20x36] [--dim 2048] [--levels 3] [--keep 0.1]
                                    [--reps 3] [--device cpu] [--out bench/results/deepstack_carry.json]

Defaults: Qwen3-VL-2B at 32 frames of 16:9 video (16 temporal patches of 20x36 merged tokens, 2048-d features, three
DeepStack levels). Inputs: random features with a static background (so temporal merges happen), attention with a
few sinks. One warm-up call each (first-touch allocations), then plain and carried calls interleaved so that
machine noise hits both alike. Prints a table and writes JSON."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.pruners import timed  # noqa: E402
from stopcli.backbones.qwen3_vl import carry  # noqa: E402
from stopcli.pruners import NAMES, VisualTokens, get_pruner  # noqa: E402


def make_tokens(t: int, h: int, w: int, d: int, device: str) -> VisualTokens:
    g = torch.Generator().manual_seed(0)
    s = h * w
    scene = torch.randn(1, s, d, generator=g)
    static = torch.rand(1, s, 1, generator=g) < 0.6
    feats = torch.where(static, scene + 0.2 * torch.randn(t, s, d, generator=g), torch.randn(t, s, d, generator=g))
    attn = (0.5 + torch.rand(t, s, generator=g)) / 729
    attn[:, [0, w - 1, s - w]] = 0.02
    keys = torch.randn(t, s, 64, generator=g)
    return VisualTokens(feats.to(device), attn.to(device), (h, w), keys=keys.to(device))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patches", type=int, default=16)
    ap.add_argument("--grid", default="20x36")
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--levels", type=int, default=3)
    ap.add_argument("--keep", type=float, default=0.1)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--methods", default=",".join(n for n in NAMES if n != "none"))
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "deepstack_carry.json"))
    args = ap.parse_args()
    h, w = (int(v) for v in args.grid.split("x"))
    tokens = make_tokens(args.patches, h, w, args.dim, args.device)
    levels = torch.randn(args.levels, *tokens.features.shape, generator=torch.Generator().manual_seed(1)).to(
        args.device)
    rows = []
    for name in args.methods.split(","):
        pruner = get_pruner(name, stop=name != "uniform")
        plain, carried, tangents = [], [], []
        pruner(tokens, args.keep), carry(pruner, tokens, args.keep, levels)  # warm-up: first-touch allocations
        for _ in range(args.reps):
            plain.append(timed(lambda: pruner(tokens, args.keep), args.device))
            carried.append(timed(lambda: carry(pruner, tokens, args.keep, levels), args.device))
            tangents.append(timed(lambda: carry(pruner, tokens, args.keep, levels, method="tangents"), args.device))
        p, c, g = statistics.median(plain), statistics.median(carried), statistics.median(tangents)
        method = "codes" if carry(pruner, tokens, args.keep, levels, method="codes") is not None else "tangents"
        rows.append(dict(pruner=name, stop=name != "uniform", method=method, plain_ms=round(p, 1),
                         carried_ms=round(c, 1), ratio=round(c / p, 2), tangents_ms=round(g, 1),
                         tangents_ratio=round(g / p, 2)))
    table = Table(title=f"DeepStack carry, {args.patches} x {h}x{w} tokens, {args.dim}-d, {args.levels} levels, "
                        f"keep {args.keep}, {args.device}")
    for col in ("pruner", "auto method", "plain ms", "carried ms", "carried / plain", "tangents ms",
                "tangents / plain"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["pruner"] + (" + SToP" if r["stop"] else ""), r["method"], f"{r['plain_ms']:.1f}",
                      f"{r['carried_ms']:.1f}", f"{r['ratio']:.2f}", f"{r['tangents_ms']:.1f}",
                      f"{r['tangents_ratio']:.2f}")
    Console().print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(settings=vars(args), rows=rows), indent=2))


if __name__ == "__main__":
    main()
