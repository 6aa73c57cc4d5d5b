"""Prefill (time to first token) with and without pruning, measured in one run on one machine.

    python bench/prefill.py [--lm 0.5b|7b|tiny] [--frames 8] [--ratio 0.9] [--reps 3] [--device cpu|cuda]

Builds a random-weight LLaVA-OneVision whose language model has the shapes of Qwen2-0.5B (or 7B) and whose vision
tower yields LLaVA-OneVision-7B's token layout (384 px, patch 14: 729 patches -> 196 pooled tokens per frame), then
times `generate` to the first token for no pruning and for each pruner with and without SToP. Random weights change
nothing about the cost. Prints a table of ratios to the unpruned prefill and writes bench/results/prefill.json."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from stopcli.backbones import load_backbone  # noqa: E402
from stopcli.pipeline import PruneSettings, answer, encode  # noqa: E402
from stopcli.embedded.world import moving_shape_frames  # noqa: E402
from stopcli.embedded.tiny_models import build_llava_onevision_shaped  # noqa: E402
from stopcli.video import Clip  # noqa: E402

LM = ("tiny", "0.5b", "7b")  # the language model's shape (stopcli.embedded.tiny_models.LLAVA_OV_LMS)


def build(path: Path, lm: str) -> Path:
    return build_llava_onevision_shaped(path, lm)  # a small vision tower: prefill is what is timed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lm", default="0.5b", choices=LM)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--ratio", type=float, default=0.9)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--pruners", default="visionzip,fastvid,holitom")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "prefill.json"))
    args = ap.parse_args()
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    with tempfile.TemporaryDirectory() as tmp:
        backbone = load_backbone(str(build(Path(tmp) / "m", args.lm)), torch.device(args.device), dtype)
        frames = moving_shape_frames(frames=args.frames, size=384)
        clip = Clip(frames=frames, indices=torch.arange(args.frames).numpy(), fps=8.0, total_frames=args.frames,
                    path="synthetic")
        video = encode(backbone, clip, "which direction does the red circle move?")
        settings = [PruneSettings("none", 0.0, False)] + [PruneSettings(p, args.ratio, s)
                                                         for p in args.pruners.split(",") for s in (False, True)]
        for s in settings:  # warm-up
            answer(backbone, video, s, max_new_tokens=1)
        times: dict[int, list[float]] = {i: [] for i in range(len(settings))}
        prune: dict[int, list[float]] = {i: [] for i in range(len(settings))}
        kept: dict[int, int] = {}
        for _ in range(args.reps):  # interleaved so that machine noise hits every row alike
            for i, s in enumerate(settings):
                res = answer(backbone, video, s, max_new_tokens=1)
                times[i].append(res.timings_ms["prefill"])
                prune[i].append(res.timings_ms["prune"])
                kept[i] = res.prompt_tokens
    base = statistics.median(times[0])
    rows = []
    for i, s in enumerate(settings):
        med, pr = statistics.median(times[i]), statistics.median(prune[i])
        rows.append(dict(method=s.pruner + ("+stop" if s.stop else ""), ratio=s.ratio, prompt_tokens=kept[i],
                         prefill_ms=round(med, 1), prune_ms=round(pr, 1), speedup=round(base / med, 2),
                         speedup_with_pruning=round(base / (med + pr), 2)))
    table = Table(title=f"prefill, random LLaVA-OneVision with a {args.lm} language model, {args.frames} frames, "
                        f"{args.device}, median of {args.reps}")
    for col in ("method", "ratio", "prompt tokens", "prefill ms", "prune ms", "prefill speed-up",
                "speed-up incl. pruning"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(r["method"], f"{r['ratio']:g}", str(r["prompt_tokens"]), f"{r['prefill_ms']:.1f}",
                      f"{r['prune_ms']:.1f}", f"{r['speedup']:.2f}x", f"{r['speedup_with_pruning']:.2f}x")
    Console(width=140).print(table)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(dict(lm=args.lm, frames=args.frames, device=args.device, rows=rows),
                                         indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
