"""Items per second of `stop bench` in-process, on 1 Ray worker and on 2, over the same folder, in one run.

    python bench/scaling.py [--videos 40] [--threads 1] [--reps 1] [--pruners holitom,visionzip] [--ratios 0,0.9]

Writes `--videos` synthetic videos (`stop synth`, one question each), then runs the same grid three times on the
embedded model (`default` preset): in this process with `--threads` torch threads, and through
`runner.run_bench`'s Ray twin with 1 and with 2 workers of `--threads` threads each on a local Ray. Items/s counts
the work only (every replica loaded); start-up (Ray and the model in each worker) is shown apart. Also checks that
the three runs give the same prediction and kept-token count item by item. With --reps R the three runs repeat R
times in turn (so that a burst of load elsewhere hits each alike); the table shows the best (least disturbed) and
the median work time, and the 2-over-1 ratio of each. Prints a table and writes
bench/results/scaling.json, with the load average before and after (other processes on the machine skew it)."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=40)
    ap.add_argument("--threads", type=int, default=1, help="torch threads in-process and per worker")
    ap.add_argument("--pruners", default="holitom,visionzip")
    ap.add_argument("--ratios", default="0,0.9")
    ap.add_argument("--max-new-tokens", type=int, default=None)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "scaling.json"))
    args = ap.parse_args()

    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # one machine: Ray on loopback
    import ray
    import torch
    from rich.console import Console
    from rich.table import Table

    from stopcli.cli.common import load, quiet_transformers
    from stopcli.embedded.world import generate
    from stopcli.evaluation import distributed as D
    from stopcli.evaluation import runner as B
    from stopcli.evaluation.annotations import load_records
    from stopcli.presets import load_preset

    torch.set_num_threads(args.threads)
    quiet_transformers()
    p, origin = load_preset("default")
    frames, new_tokens = p.frames, args.max_new_tokens or p.max_new_tokens
    load_before = os.getloadavg()
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "videos"
        generate(folder, args.videos, seed=0, frames=16)
        records = load_records(folder, None, None)
        grid = B.settings_grid([float(r) for r in args.ratios.split(",")], args.pruners.split(","), "both")

        t0 = time.perf_counter()
        backbone = load(p, origin, None, "cpu", None, False)
        up = time.perf_counter() - t0
        t0 = time.perf_counter()
        ray.init(num_cpus=2 * args.threads, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                 runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
        ray_up = time.perf_counter() - t0
        spec = D.ModelSpec(path=p.resolved_model(origin), name=p.model, device="cpu")
        for rep in range(args.reps):
            t0 = time.perf_counter()
            rows = B.run_bench(backbone, folder, records, grid, Path(tmp) / f"in-process-{rep}.jsonl",
                               frames=frames, max_new_tokens=new_tokens, skip=set())
            run = runs.setdefault("in-process", dict(items=len(rows), startup_s=up, work=[], rows=rows))
            run["work"].append(time.perf_counter() - t0)
            for n in (1, 2):
                out = D.run_bench_ray(spec, folder, records, grid, Path(tmp) / f"workers-{n}-{rep}.jsonl",
                                      frames=frames, max_new_tokens=new_tokens, skip=set(), workers=n,
                                      threads=args.threads)
                run = runs.setdefault(f"--workers {n}", dict(items=len(out.rows), work=[], rows=out.rows,
                                                             startup_s=out.startup_s + (ray_up if n == 1 else 0),
                                                             workers=[w.to_json() for w in out.workers]))
                run["work"].append(out.work_s)
        ray.shutdown()
    load_after = os.getloadavg()

    def key(rows):
        return {r["key"]: (r["prediction"], (r["visual_tokens"] or {}).get("after"), r["error"]) for r in rows}

    ref = key(runs["in-process"]["rows"])
    same = {name: key(run["rows"]) == ref for name, run in runs.items()}
    for run in runs.values():
        run["work_s"], run["median_work_s"] = min(run["work"]), statistics.median(run["work"])
        run["items_per_s"] = run["items"] / run["work_s"]
        run["median_items_per_s"] = run["items"] / run["median_work_s"]
        run["ms_per_item"] = 1000 * run["work_s"] / run["items"]
    w1, w2 = runs["--workers 1"]["items_per_s"], runs["--workers 2"]["items_per_s"]
    m1, m2 = runs["--workers 1"]["median_items_per_s"], runs["--workers 2"]["median_items_per_s"]
    table = Table(title=f"stop bench on {args.videos} synthetic videos x {len(grid)} settings = "
                        f"{runs['in-process']['items']} items, {args.threads} thread(s) each, {os.cpu_count()} cores, "
                        f"best of {args.reps}; "
                        f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after", title_justify="left")
    for col in ("run", "items", "start-up s", "work s", "items/s", "ms/item", "vs in-process", "median items/s",
                "same rows"):
        table.add_column(col, justify="left" if col == "run" else "right")
    base = runs["in-process"]["items_per_s"]
    for name, run in runs.items():
        table.add_row(name, str(run["items"]), f"{run['startup_s']:.1f}", f"{run['work_s']:.1f}",
                      f"{run['items_per_s']:.2f}", f"{run['ms_per_item']:.1f}", f"{run['items_per_s'] / base:.2f}x",
                      f"{run['median_items_per_s']:.2f}", "yes" if same[name] else "NO")
    console = Console(width=140)
    console.print(table)
    console.print(f"2 workers / 1 worker: {w2 / w1:.2f}x best, {m2 / m1:.2f}x median (target >= 1.6x)")
    result = dict(videos=args.videos, settings=len(grid), threads=args.threads, cores=os.cpu_count(), reps=args.reps,
                  load_average_before=load_before, load_average_after=load_after,
                  scaling_2_over_1=w2 / w1, median_scaling_2_over_1=m2 / m1,
                  same_rows=same, runs={k: {f: v for f, v in run.items() if f != "rows"} for k, run in runs.items()})
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
