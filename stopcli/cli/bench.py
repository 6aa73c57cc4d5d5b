"""`stop bench`: a folder of videos and questions, a ratio sweep, pruners with and without SToP."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..errors import UsageError
from ..evaluation.benchmarks import NAMES as BENCHMARK_NAMES
from ..evaluation.benchmarks import PROTOCOLS
from ..presets import DEFAULT_PRESET, load_preset, validate_pruner, validate_ratio, validate_sink_score
from .common import SINK_HELP, app, counts, err, load, ms, number, out, split as split_list, user_errors
from .report import print_report


def valid_address(address: str) -> bool:
    host, _, port = address.removeprefix("ray://").rpartition(":")
    return address == "auto" or bool(host) and port.isdigit()


def worker_table(outcome) -> Table:
    table = Table(title=f"{len(outcome.workers)} Ray workers  ·  {outcome.retried} videos retried after a worker died",
                  title_justify="left")
    for col in ("worker", "host", "device", "videos", "items", "items/s", "failures", "deaths"):
        table.add_column(col, justify="left" if col in ("host", "device") else "right")
    for w in (s.to_json() for s in outcome.workers):
        table.add_row(str(w["worker"]), w["host"], w["device"] or "-", str(w["videos"]), str(w["items"]),
                      "-" if w["items_per_s"] is None else f"{w['items_per_s']:.2f}", str(w["failures"]),
                      str(w["deaths"]))
    return table


@app.command()
@user_errors
def bench(
    folder: Path = typer.Argument(..., help="Folder of videos (and annotations)."),
    annotations: Optional[Path] = typer.Option(None, help="Annotations file (default: the folder's)."),
    benchmark: Optional[str] = typer.Option(None, "--benchmark", "-b", help=f"Read FOLDER as a published benchmark: "
                                            f"{', '.join(BENCHMARK_NAMES)} (default: detected from the layout)."),
    protocol: str = typer.Option("official", "--protocol", help="Prompts and answer parser: official, lmms-eval "
                                 "or authors (see docs/benchmarks.md)."),
    split: Optional[str] = typer.Option(None, "--split", help="Benchmark split, task(s) or duration, e.g. val, "
                                        "action_sequence,object_shuffle, short."),
    bounds: bool = typer.Option(True, "--bounds/--no-bounds", help="Honour clip bounds where the protocol does "
                                "(--no-bounds samples the whole video, as the authors did)."),
    question: Optional[str] = typer.Option(None, help="Without annotations: ask this of every video."),
    preset: str = typer.Option(DEFAULT_PRESET, "--preset", "-p", help="Preset name or YAML path."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Hub id or local folder."),
    pruners: Optional[str] = typer.Option(None, help="Comma-separated base pruners (default: the preset's)."),
    ratio: Optional[str] = typer.Option(None, help="A ratio or a sweep, e.g. 0,0.5,0.75,0.9,0.95."),
    stop_mode: str = typer.Option("both", "--stop-mode", help="both, on or off (see also --stop/--no-stop)."),
    stop_flag: Optional[bool] = typer.Option(None, "--stop/--no-stop", help="Only with / only without SToP."),
    both: bool = typer.Option(False, "--both", help="With and without SToP (the default)."),
    sink_score: Optional[str] = typer.Option(None, "--sink-score", help=SINK_HELP + " Comma-separated: one SToP "
                                             "run per score."),
    frames: Optional[int] = typer.Option(None, help="Frames sampled uniformly."),
    max_new_tokens: Optional[int] = typer.Option(None, help="Longest answer, in tokens."),
    output: Optional[Path] = typer.Option(None, help="JSONL results (default FOLDER/stop-results.jsonl)."),
    resume: bool = typer.Option(False, "--resume", help="Skip items already in the results file."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start the results file afresh."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write score vs ratio as a PNG (generic: and prefill)."),
    device: Optional[str] = typer.Option(None, help="cpu or cuda."),
    dtype: Optional[str] = typer.Option(None, help="float32, bfloat16 or float16."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code"),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Run on N model replicas as Ray actors (one GPU "
                                          "each when the cluster has GPUs). Needs the ray extra."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Join a running Ray cluster: auto or "
                                              "HOST:PORT (videos and model on a shared file system)."),
    threads_per_worker: int = typer.Option(1, "--threads-per-worker", help="CPU threads (and Ray CPUs) per worker."),
) -> None:
    """Accuracy, kept tokens and prefill time over a folder, for a ratio sweep, with and without SToP."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    if not folder.is_dir():
        raise UsageError(f"not a folder: {folder}")
    p, origin = load_preset(preset)
    ratios = [validate_ratio(number(x, "--ratio")) for x in split_list(ratio or str(p.ratio), "--ratio")]
    bases = [validate_pruner(b) for b in split_list(pruners or p.pruner, "--pruners")]
    if stop_mode not in ("both", "on", "off"):
        raise UsageError("--stop-mode must be both, on or off")
    if both and stop_flag is not None:
        raise UsageError("--both cannot be combined with --stop or --no-stop")
    mode = "both" if both else stop_mode if stop_flag is None else ("on" if stop_flag else "off")
    scores = list(dict.fromkeys(validate_sink_score(s) for s in split_list(sink_score or p.sink_score, "--sink-score")))
    n_frames, new_tokens = counts(p, frames, max_new_tokens)
    if protocol not in PROTOCOLS:
        raise UsageError(f"--protocol must be one of {', '.join(PROTOCOLS)}")
    distributed = workers is not None or ray_address is not None
    if workers is not None and workers < 1:
        raise UsageError("--workers must be at least 1")
    if threads_per_worker < 1:
        raise UsageError("--threads-per-worker must be at least 1")
    if ray_address is not None and not valid_address(ray_address):
        raise UsageError(f"--ray-address must be auto or HOST:PORT (e.g. 10.0.0.1:6379), not {ray_address!r}")

    from ..evaluation import benchmarks as BM
    from ..evaluation.annotations import ANNOTATION_NAMES, load_records

    if benchmark is not None:
        name = BM.get(benchmark).NAME
        if annotations is not None or question is not None:
            raise UsageError("--annotations and --question do not apply to --benchmark runs")
    elif annotations is None and question is None and not any((folder / n).is_file() for n in ANNOTATION_NAMES):
        name = BM.detect(folder)
        if name is None:
            raise UsageError(f"{folder} has no annotations file ({', '.join(ANNOTATION_NAMES)}) and matches no "
                             f"benchmark layout; pass --benchmark NAME, --annotations FILE or --question TEXT")
    else:
        name = None
    if name is None and (split is not None or not bounds):
        raise UsageError("--split and --no-bounds apply to --benchmark runs")
    out_path = output or folder / "stop-results.jsonl"
    meta_path = out_path.with_suffix(".meta.json")
    meta = dict(benchmark=name, protocol=protocol if name else None, split=split, bounds=bounds if name else None)
    if out_path.is_file() and out_path.stat().st_size and not (resume or overwrite):
        raise UsageError(f"{out_path} already holds results: pass --resume to continue it or --overwrite")
    if resume and meta_path.is_file():
        before = json.loads(meta_path.read_text())
        changed = [k for k in meta if before.get(k) != meta[k]]
        if changed:
            raise UsageError(f"{out_path} was run with {', '.join(f'{k}={before.get(k)}' for k in changed)}; "
                             "--resume needs the same settings (or --overwrite, or another --output)")
    records = BM.load(name, folder, protocol, bounds, split) if name else load_records(folder, annotations, question)
    if not records:
        raise UsageError(f"no questions to run in {folder}")
    from ..evaluation import runner as B  # loads torch: only once the arguments and the folder are known good

    run_protocol = protocol if name else None
    grid = B.settings_grid(ratios, bases, mode, scores)
    skip = B.done_keys(out_path) if resume and not overwrite else set()
    total = sum(1 for r in records for s in grid if B.item_key(r.key, s) not in skip)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        console=err, transient=True)

    def start_afresh(model_name: str) -> None:
        # Only once the model (or every worker) is up: a run that cannot start keeps the old file and its settings.
        if overwrite and out_path.is_file():
            out_path.unlink()
        out_path.parent.mkdir(parents=True, exist_ok=True)
        meta_path.write_text(json.dumps(dict(meta, folder=str(folder), model=model_name, frames=n_frames,
                                             max_new_tokens=new_tokens), indent=2) + "\n")

    outcome = None
    if distributed:
        if ray_address is None:  # a Ray of this machine alone: its processes talk over loopback, not the LAN address
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        from ..evaluation import distributed as D

        # Ray prints the raylet's notices (a worker died, ...) on stdout; the summary below reports them, and stdout
        # must stay the table or the JSON, so they go to stderr until Ray is shut down.
        with contextlib.redirect_stdout(sys.stderr):
            started = D.connect(ray_address)
            try:
                gpus = D.use_gpus(device)
                spec = D.ModelSpec(path=model or p.resolved_model(origin), dtype=dtype,
                                   device="cuda" if gpus else "cpu", trust_remote_code=trust_remote_code,
                                   name=p.model if model is None and p.model.startswith("stopcli:") else None)
                model_name = spec.name or spec.path
                with progress:
                    task = progress.add_task("bench", total=total)
                    outcome = D.run_bench_ray(spec, folder, records, grid, out_path, frames=n_frames,
                                              max_new_tokens=new_tokens, skip=skip, gpus=gpus,
                                              workers=workers or D.default_workers(gpus), threads=threads_per_worker,
                                              on_item=lambda row: progress.advance(task),
                                              on_ready=lambda: start_afresh(model_name), protocol=run_protocol)
            finally:
                if started:
                    D.disconnect()
    else:
        backbone = load(p, origin, model, device, dtype, trust_remote_code)
        model_name = backbone.name
        start_afresh(model_name)
        with progress:
            task = progress.add_task("bench", total=total)
            B.run_bench(backbone, folder, records, grid, out_path, frames=n_frames, max_new_tokens=new_tokens,
                        skip=skip, on_item=lambda row: progress.advance(task), protocol=run_protocol)
    rows = B.read_rows(out_path)
    summary = B.summarise(rows)
    failed = [r for r in rows if r.get("error")]
    rep = None
    if name:
        from ..evaluation import report as R

        rep = R.report(rows)
    if plot is not None and rep:  # a benchmark run plots its score per method
        R.plot(rep, plot)
    elif plot is not None:  # a generic run: accuracy and prefill time
        B.plot(summary, plot)
    if as_json:
        extra = {} if outcome is None else dict(workers=[w.to_json() for w in outcome.workers],
                                                 retried=outcome.retried)
        typer.echo(json.dumps(dict(results=str(out_path), items=len(rows), failed=len(failed), summary=summary,
                                   **({"report": rep} if rep else {}), **extra), indent=2))
    else:
        table = Table(title=f"{model_name}  ·  {len(records)} records  ·  results in {out_path}",
                      title_justify="left")
        for col in ("ratio", "method", "type", "items", "failed", "accuracy", "tokens kept", "prefill ms",
                    "speed-up"):
            table.add_column(col, justify="left" if col in ("method", "type") else "right")
        for r in summary:
            label = "no pruning" if r["pruner"] == "none" else r["pruner"] + (" + SToP" if r["stop"] else "")
            label += f" ({r['sink_score']})" if r["stop"] and r.get("sink_score") not in (None, "minmax") else ""
            table.add_row(f"{r['ratio']:g}", label, r["type"], str(r["items"]), str(r["failed"]),
                          "-" if r["accuracy"] is None else f"{100 * r['accuracy']:.1f}%",
                          "-" if r["kept"] is None else f"{r['kept']:.0f}", ms(r["prefill_ms"]),
                          "-" if r["speedup"] is None else f"{r['speedup']:.2f}x")
        out.print(table)
        if rep:
            print_report(rep)
        if outcome is not None:
            out.print(worker_table(outcome))
    for r in failed[:5]:
        err.print(f"failed: {r['video']}: {r['error']}", markup=False)
    if failed:
        raise typer.Exit(1)
