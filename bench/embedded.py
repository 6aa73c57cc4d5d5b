"""The embedded model as a laboratory: accuracy by question type and pruning ratio, with and without SToP, on freshly
generated synthetic videos, and whether sink tokens emerge in it.

    python bench/embedded.py [--model stopcli/assets/stop-tiny-ov] [--n 600] [--seed 1000] [--frames 8]
                             [--ratios 0,0.75,0.9,0.95] [--pruners uniform,visionzip,fastvid,holitom] [--no-sinks]
                             [--sink-scores minmax,robust] [--json-name embedded.json]

Generates the videos (new seeds, never seen in training) into bench/results/embedded-videos, runs `stop bench`'s
runner over them (results JSONL there, resumable), prints the accuracy tables and the sink analysis, and writes
bench/results/embedded.json (not with --no-sinks: `--ratios 0 --no-sinks` is a one-minute unpruned check that
writes only the results JSONL)."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections import defaultdict
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from stopcli.backbones import load_backbone  # noqa: E402
from stopcli.evaluation.runner import done_keys, read_rows, run_bench, settings_grid, summarise  # noqa: E402
from stopcli.pruners import sink_positions, sink_score  # noqa: E402
from stopcli.evaluation.annotations import load_records  # noqa: E402
from stopcli.embedded.world import Obj, Scene, generate, render  # noqa: E402
from stopcli.video import read_video  # noqa: E402


def model_tag(model: str) -> str:
    """Folder name plus a hash of the weights: results resume only for the very same model, never for another model
    saved under a reused folder name."""
    path = Path(model)
    weights = sorted(path.glob("*.safetensors")) if path.is_dir() else []
    if not weights:
        return path.name
    digest = hashlib.sha1()
    for w in weights:
        digest.update(w.read_bytes())
    return f"{path.resolve().name}-{digest.hexdigest()[:10]}"


def object_cells(scene: dict, grid: tuple[int, int], frames: int) -> torch.Tensor:
    """[S] bool: positions of the token grid on an object's path (covered >= 20% in some frame), re-rendered from
    the scene description."""
    objects = [Obj(**o) for o in scene["objects"]]
    sc = Scene(**{**{k: v for k, v in scene.items() if k != "video"}, "objects": objects})
    _, masks, _ = render([sc], frames)  # [1, O, T, H, W]
    cover = torch.nn.functional.adaptive_avg_pool2d(masks[0].float().flatten(0, 1)[:, None], grid)  # [O*T, 1, gh, gw]
    return (cover.reshape(-1, cover.shape[-2] * cover.shape[-1]) >= 0.2).any(0)


def sink_analysis(backbone, folder: Path, records, frames: int) -> dict:
    """Sink score statistics over the videos, and where the persistent high-attention positions sit."""
    scores, by_distractor, on_object, path_share, robust_sinks = [], defaultdict(list), [], [], []
    scenes = {json.loads(x)["video"]: json.loads(x) for x in (folder / "scenes.jsonl").read_text().splitlines()}
    for rec in records:
        clip = read_video(folder / rec.video, num_frames=frames)
        enc = backbone.encode(backbone.prepare(clip.frames, rec.question))
        s = sink_score(enc.tokens.attention)
        robust_sinks.append(int(sink_positions(enc.tokens.attention).sum()))  # what the robust score calls sinks
        scores.append(s)
        path = object_cells(scenes[rec.video], enc.tokens.grid, frames)
        on_object.append(bool(path[int(s.argmax())]))
        path_share.append(float(path.float().mean()))
        by_distractor[scenes[rec.video]["distractor"]].append(s)
        grid = enc.tokens.grid
    all_s = torch.stack(scores)  # [V, S]
    mean_s = all_s.mean(0)
    top = torch.sort(mean_s, descending=True, stable=True).indices[:5].tolist()
    # Persistence: how much of the attention sits on the video's own top-5 sink positions in every frame.
    quantiles = torch.quantile(all_s.flatten(), torch.tensor([0.5, 0.9, 0.99])).tolist()
    return dict(
        grid=list(grid), videos=len(scores),
        sink_score_quantiles={"p50": quantiles[0], "p90": quantiles[1], "p99": quantiles[2]},
        share_of_positions_above_0_5=float((all_s > 0.5).float().mean()),
        mean_sink_score_map=[[round(float(v), 3) for v in row] for row in mean_s.reshape(grid).tolist()],
        top_positions=[dict(position=p, row=p // grid[1], col=p % grid[1], mean_score=round(float(mean_s[p]), 3))
                       for p in top],
        videos_with_a_robust_sink=sum(n > 0 for n in robust_sinks), robust_sink_positions=sum(robust_sinks),
        argmax_agreement=float((all_s.argmax(1) == int(mean_s.argmax())).float().mean()),
        top_position_on_an_object_path=sum(on_object) / len(on_object),
        positions_on_an_object_path=sum(path_share) / len(path_share),  # what a random position would score
        by_distractor={k: dict(videos=len(v), mean_max_position=int(torch.stack(v).mean(0).argmax()))
                       for k, v in by_distractor.items()},
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "stopcli" / "assets" / "stop-tiny-ov"))
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--ratios", default="0,0.75,0.9,0.95")
    ap.add_argument("--pruners", default="uniform,visionzip,fastvid,holitom")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--no-sinks", action="store_true", help="skip the sink analysis (a quick accuracy check)")
    ap.add_argument("--sink-scores", default="minmax", help="SToP's sink scores to run, e.g. minmax,robust")
    ap.add_argument("--json-name", default="embedded.json", help="file written in --out")
    args = ap.parse_args()
    torch.set_num_threads(2)
    out = Path(args.out)
    folder = out / f"embedded-videos-{args.seed}-{args.n}"
    if not (folder / "annotations.jsonl").is_file():
        generate(folder, args.n, seed=args.seed, frames=16)
    records = load_records(folder)
    backbone = load_backbone(args.model, torch.device("cpu"), torch.float32)
    grid = settings_grid([float(r) for r in args.ratios.split(",")], args.pruners.split(","), "both",
                         args.sink_scores.split(","))
    results = folder / f"stop-results-{model_tag(args.model)}.jsonl"  # one file per model (weights), resumable
    con = Console(width=160, stderr=True)
    done = [0]

    def tick(row):
        done[0] += 1
        if done[0] % 200 == 0:
            con.print(f"{done[0]} items", highlight=False)

    run_bench(backbone, folder, records, grid, results, frames=args.frames, max_new_tokens=3,
              skip=done_keys(results), on_item=tick)
    rows = read_rows(results)
    summary = summarise(rows)
    types = sorted({r["type"] for r in rows if r.get("type")})
    table = Table(title=f"embedded model accuracy (%), {len(records)} fresh questions, {args.frames} frames")
    table.add_column("ratio", justify="right")
    table.add_column("method")
    table.add_column("kept", justify="right")
    for t in ["all"] + types:
        table.add_column(t, justify="right")
    by_key = defaultdict(dict)
    for s in summary:
        by_key[(s["ratio"], s["pruner"], s["stop"], s.get("sink_score") or "")][s["type"]] = s
    for (ratio, pruner, stop, score), cols in sorted(by_key.items()):
        name = "no pruning" if pruner == "none" else pruner + (" + SToP" if stop else "")
        name += f" ({score})" if stop and score != "minmax" else ""
        table.add_row(f"{ratio:g}", name, f"{cols['all']['kept']:.0f}",
                      *[f"{100 * cols[t]['accuracy']:.1f}" if t in cols and cols[t]["accuracy"] is not None else "-"
                        for t in ["all"] + types])
    Console(width=200).print(table)
    if args.no_sinks:
        return
    sinks = sink_analysis(backbone, folder, records[:200], args.frames)
    Console(width=160).print_json(json.dumps({k: v for k, v in sinks.items() if k != "mean_sink_score_map"}))
    (out / args.json_name).write_text(json.dumps(dict(model=args.model, n=len(records), seed=args.seed,
                                                       frames=args.frames, sink_scores=args.sink_scores.split(","),
                                                       summary=summary, sinks=sinks), indent=2))
    print(f"wrote {out / args.json_name}")


if __name__ == "__main__":
    main()
