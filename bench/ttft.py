"""Time to first token end to end — decode, vision pass (with the attention read-out), pruning, prefill — for no
pruning and each pruner with and without SToP, beside the Amdahl bound, in one run.

    python bench/ttft.py [--lm 0.5b|7b] [--frames 2] [--ratio 0.9] [--reps 2] [--device cpu|cuda]

Builds a random-weight LLaVA-OneVision whose vision tower has SigLIP-so400m's shape as LLaVA-OneVision uses it
(26 layers, width 1152, 16 heads, MLP 4304, 384 px, patch 14: 729 patches -> 196 pooled tokens a frame) and a
Qwen2-0.5B- (or 7B-) shaped language model, writes a synthetic mp4, and for each repetition decodes it, runs the
vision pass once and then every setting's pruning and prefill (`generate` to the first token). TTFT = decode +
vision + prune + prefill. Prints each stage's share of the unpruned TTFT and, per setting, the measured speed-up
beside the Amdahl bound: the speed-up if only the prefill shrank, in proportion to the prompt tokens it keeps, and
pruning cost nothing (1 / ((1 - p) + p * kept / full), p = prefill's share). Random weights change no cost.
Few frames on CPU (it is slow); 32 on CUDA. Writes bench/results/ttft.json."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from stopcli.backbones import load_backbone  # noqa: E402
from stopcli.backbones.base import sync  # noqa: E402
from stopcli.embedded.tiny_models import build_llava_onevision_shaped  # noqa: E402
from stopcli.embedded.world import moving_shape_frames, write_video  # noqa: E402
from stopcli.pipeline import PruneSettings, answer, encode  # noqa: E402
from stopcli.video import read_video  # noqa: E402

LM = ("0.5b", "7b")  # the language model's shape (stopcli.embedded.tiny_models.LLAVA_OV_LMS)


def build(path: Path, lm: str) -> Path:
    return build_llava_onevision_shaped(path, lm, vision="so400m")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lm", default="0.5b", choices=LM)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--frames", type=int, default=None, help="default: 32 on CUDA, 2 on CPU")
    ap.add_argument("--ratio", type=float, default=0.9)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--pruners", default="visionzip,fastvid,holitom")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "ttft.json"))
    args = ap.parse_args()
    frames = args.frames or (32 if args.device == "cuda" else 2)
    dev = torch.device(args.device)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    settings = [PruneSettings("none", 0.0, False)] + [PruneSettings(p, args.ratio, s)
                                                     for p in args.pruners.split(",") for s in (False, True)]
    question = "which direction does the red circle move?"
    stages = {k: [] for k in ("decode", "vision")}
    per = {i: {"prune": [], "prefill": []} for i in range(len(settings))}
    prompt: dict[int, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        backbone = load_backbone(str(build(Path(tmp) / "m", args.lm)), dev, dtype)
        video = write_video(Path(tmp) / "v.mp4", moving_shape_frames(frames=max(frames, 8), size=384))
        for rep in range(args.reps + 1):  # the first pass warms up and is not counted
            t0 = time.perf_counter()
            clip = read_video(video, num_frames=frames)
            decode_ms = (time.perf_counter() - t0) * 1000
            enc = encode(backbone, clip, question, decode_ms)
            if rep:
                stages["decode"].append(decode_ms)
                stages["vision"].append(enc.vision_ms)
            for i, s in enumerate(settings):
                sync(dev)
                res = answer(backbone, enc, s, max_new_tokens=1)
                if rep:
                    per[i]["prune"].append(res.timings_ms["prune"])
                    per[i]["prefill"].append(res.timings_ms["prefill"])
                prompt[i] = res.prompt_tokens
    med = {k: statistics.median(v) for k, v in stages.items()}
    rows = []
    for i, s in enumerate(settings):
        prune, prefill = (statistics.median(per[i][k]) for k in ("prune", "prefill"))
        rows.append(dict(method=s.pruner + (" + SToP" if s.stop else ""), ratio=s.ratio, prompt_tokens=prompt[i],
                         prune_ms=prune, prefill_ms=prefill, ttft_ms=med["decode"] + med["vision"] + prune + prefill))
    base = rows[0]
    p = base["prefill_ms"] / base["ttft_ms"]
    for r in rows:
        r["speedup"] = base["ttft_ms"] / r["ttft_ms"]
        r["amdahl_bound"] = 1 / ((1 - p) + p * r["prompt_tokens"] / base["prompt_tokens"])
    console = Console(width=150)
    shares = Table(title=f"unpruned TTFT {base['ttft_ms']:,.0f} ms: random LLaVA-OneVision, SigLIP-so400m vision, "
                         f"{args.lm} LM, {frames} frames, {args.device}, median of {args.reps}", title_justify="left")
    for col in ("stage", "ms", "share"):
        shares.add_column(col, justify="left" if col == "stage" else "right")
    for name, ms_ in (("decode video", med["decode"]), ("vision + attention read-out", med["vision"]),
                      ("prefill", base["prefill_ms"])):
        shares.add_row(name, f"{ms_:,.1f}", f"{100 * ms_ / base['ttft_ms']:.1f}%")
    console.print(shares)
    table = Table(title=f"time to first token at ratio {args.ratio:g}", title_justify="left")
    for col in ("method", "prompt tokens", "prune ms", "prefill ms", "TTFT ms", "speed-up", "Amdahl bound"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for r in rows:
        table.add_row(r["method"], str(r["prompt_tokens"]), f"{r['prune_ms']:.1f}", f"{r['prefill_ms']:,.1f}",
                      f"{r['ttft_ms']:,.1f}", f"{r['speedup']:.2f}x", f"{r['amdahl_bound']:.2f}x")
    console.print(table)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(dict(lm=args.lm, frames=frames, device=args.device, reps=args.reps,
                                              stages_ms=med, prefill_share=p, rows=rows), indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
