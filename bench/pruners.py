"""Pruner speed at LLaVA-OneVision-7B shapes: median ms per call, base vs base + SToP.

    python bench/pruners.py [--frames 32] [--sizes 196,729] [--dim 3584] [--keep 0.1] [--reps 7] [--device cpu]

Prints a table and writes JSON (default bench/results/pruners.json). Inputs are random features with a static
background (so HoliTom finds windows) and SigLIP-scale attention; base and SToP calls are interleaved so that
machine noise hits both alike."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from stopcli.pruners import VisualTokens, get_pruner, sink_score  # noqa: E402

METHODS = ["uniform", "visionzip", "fastvid", "holitom", "prunevid", "flashvid"]


def make_tokens(t: int, s: int, d: int, device: str, dtype: torch.dtype) -> VisualTokens:
    g = torch.Generator().manual_seed(0)
    side = int(round(s ** 0.5))
    scene = torch.randn(1, s, d, generator=g)
    static = torch.rand(1, s, 1, generator=g) < 0.6
    feats = torch.where(static, scene + 0.2 * torch.randn(t, s, d, generator=g), torch.randn(t, s, d, generator=g))
    attn = (0.5 + torch.rand(t, s, generator=g)) / 729
    attn[:, [0, side - 1, s - side]] = 0.02  # a few persistent sinks
    keys = torch.randn(t, s, 72, generator=g)
    return VisualTokens(feats.to(device, dtype), attn.to(device, dtype), (side, s // side), keys=keys.to(device, dtype))


def timed(fn, device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--sizes", default="196,729")
    ap.add_argument("--dim", type=int, default=3584)
    ap.add_argument("--keep", type=float, default=0.1)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "pruners.json"))
    args = ap.parse_args()
    dtype = getattr(torch, args.dtype)

    rows = []
    for s in [int(v) for v in args.sizes.split(",")]:
        tokens = make_tokens(args.frames, s, args.dim, args.device, dtype)
        for name in args.methods.split(","):  # warm every method up before any timing
            for _ in range(2):
                get_pruner(name)(tokens, args.keep), get_pruner(name, stop=True)(tokens, args.keep)
        for name in args.methods.split(","):
            base, stop = get_pruner(name), get_pruner(name, stop=True)
            tb, ts = [], []
            for _ in range(args.reps):
                tb.append(timed(lambda: base(tokens, args.keep), args.device))
                ts.append(timed(lambda: stop(tokens, args.keep), args.device))
            mb, ms = statistics.median(tb), statistics.median(ts)
            sink_ms = statistics.median(timed(lambda: sink_score(tokens.attention), args.device) for _ in range(20))
            rows.append(dict(method=name, frames=args.frames, tokens_per_frame=s, dim=args.dim, keep=args.keep,
                             device=args.device, dtype=args.dtype, threads=torch.get_num_threads(),
                             base_ms=round(mb, 2), stop_ms=round(ms, 2), stop_over_base=round(ms / mb, 3),
                             base_min_ms=round(min(tb), 2), stop_min_ms=round(min(ts), 2),
                             sink_score_ms=round(sink_ms, 3),
                             kept_base=len(base(tokens, args.keep)), kept_stop=len(stop(tokens, args.keep))))

    table = Table(title=f"pruners, T={args.frames}, D={args.dim}, keep={args.keep}, {args.device} {args.dtype}, "
                        f"median of {args.reps}")
    for col in ("method", "S", "base ms", "+SToP ms", "SToP/base", "min ratio", "sink score ms", "kept base",
                "kept +SToP"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(r["method"], str(r["tokens_per_frame"]), f"{r['base_ms']:.1f}", f"{r['stop_ms']:.1f}",
                      f"{r['stop_over_base']:.3f}", f"{r['stop_min_ms'] / r['base_min_ms']:.3f}",
                      f"{r['sink_score_ms']:.3f}", str(r["kept_base"]), str(r["kept_stop"]))
    Console(width=160).print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
