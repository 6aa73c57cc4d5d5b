"""Planted sinks: does SToP with the robust (or gated) sink score treat real sinks as the authors' min-max SToP does?

    python bench/sinks.py [--seeds 5] [--strengths 8,15,30,60] [--keeps 0.1,0.25] [--frames 8]

Tokens from `stopcli.pruners.planted.planted_sinks_tokens` (LLaVA-OneVision's 14x14 grid; three sinks drawing
`strength` x the frame's median attention in every frame with an uninformative feature; a moving salient object;
background attention drawn afresh every frame ("iid") or fixed per position ("static")). For every base pruner, keep
and sink score, against min-max SToP on the same tokens:
  sink fate equal: every (frame, sink position) token ends the same way (kept alone / centre of a merge / merged
                   into another token / dropped) as under min-max SToP;
  own sink tokens: sink tokens kept as a token of their own (base / min-max / this score);
  jaccard:         |A & B| / |A | B| of the kept (frame, position) sets of this score and of min-max SToP.
Prints one table and writes bench/results/sinks.json."""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from stopcli.pruners import get_pruner  # noqa: E402
from stopcli.pruners.planted import planted_sinks_tokens  # noqa: E402

PRUNERS = ("visionzip", "fastvid", "holitom")


def fate(out, sinks: list[int], frames: int) -> torch.Tensor:
    """[T, K] how each sink token ends: 0 dropped, 1 merged into another token, 2 kept alone, 3 centre of a merge."""
    src = out.source[:, sinks]  # [T, K]
    kept_here = torch.zeros(frames, out.source.shape[1], dtype=torch.long)
    kept_here[out.positions[:, 0], out.positions[:, 1]] = torch.where(out.counts > 1, 3, 2)
    return torch.where(src < 0, 0, torch.where(kept_here[:, sinks] > 0, kept_here[:, sinks], 1))


def kept_set(out) -> set[tuple[int, int]]:
    return set(map(tuple, out.positions.tolist()))


def jaccard(a: set, b: set) -> float:
    return len(a & b) / max(1, len(a | b))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--strengths", default="8,15,30,60")
    ap.add_argument("--keeps", default="0.1,0.25")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "sinks.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for background, strength, name, keep in itertools.product(
            ("iid", "static"), [float(s) for s in args.strengths.split(",")], PRUNERS,
            [float(k) for k in args.keeps.split(",")]):
        acc = {score: dict(fate_equal=0, own=0, jaccard=[], kept=0) for score in ("minmax", "robust", "gated")}
        own_base = 0
        for seed in range(args.seeds):
            tokens, sinks, _ = planted_sinks_tokens(args.frames, strength=strength, seed=seed,
                                                    static_attention=background == "static")
            base = get_pruner(name)(tokens, keep)
            own_base += int((fate(base, sinks, args.frames) == 2).sum())
            outs = {s: get_pruner(name, stop=True, sink_score=s)(tokens, keep) for s in acc}
            ref_fate, ref_kept = fate(outs["minmax"], sinks, args.frames), kept_set(outs["minmax"])
            for score, out in outs.items():
                f = fate(out, sinks, args.frames)
                acc[score]["fate_equal"] += int(torch.equal(f, ref_fate))
                acc[score]["own"] += int((f == 2).sum())
                acc[score]["jaccard"].append(jaccard(kept_set(out), ref_kept))
                acc[score]["kept"] += len(out)
        for score in ("robust", "gated"):
            j = acc[score]["jaccard"]
            rows.append(dict(background=background, strength=strength, pruner=name, keep=keep, score=score,
                             seeds=args.seeds, sink_fate_equal=acc[score]["fate_equal"] / args.seeds,
                             own_sink_tokens=dict(base=own_base / args.seeds, minmax=acc["minmax"]["own"] / args.seeds,
                                                  score=acc[score]["own"] / args.seeds),
                             kept=dict(minmax=acc["minmax"]["kept"] / args.seeds, score=acc[score]["kept"] / args.seeds),
                             jaccard_mean=round(sum(j) / len(j), 4), jaccard_min=round(min(j), 4)))
    table = Table(title=f"planted sinks ({args.seeds} seeds, {args.frames} frames, 14x14, 3 sinks): robust and gated "
                        f"SToP against min-max SToP")
    for col in ("background", "x median", "pruner", "keep", "score", "sink fate equal", "own sink tokens b/mm/this",
                "kept mm/this", "jaccard mean", "jaccard min"):
        table.add_column(col, justify="left" if col in ("background", "pruner", "score") else "right")
    for r in rows:
        o, k = r["own_sink_tokens"], r["kept"]
        table.add_row(r["background"], f"{r['strength']:g}", r["pruner"], f"{r['keep']:g}", r["score"],
                      f"{100 * r['sink_fate_equal']:.0f}%", f"{o['base']:.1f} / {o['minmax']:.1f} / {o['score']:.1f}",
                      f"{k['minmax']:.0f} / {k['score']:.0f}", f"{r['jaccard_mean']:.3f}", f"{r['jaccard_min']:.3f}")
    Console(width=200).print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(seeds=args.seeds, frames=args.frames, rows=rows), indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
