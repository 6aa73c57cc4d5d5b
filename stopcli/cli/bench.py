"""`stop bench`: a folder of videos and questions, a ratio sweep, pruners with and without SToP."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..errors import UsageError
from ..presets import DEFAULT_PRESET, load_preset, validate_pruner, validate_ratio
from .common import app, counts, err, load, ms, number, out, split, user_errors


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
    question: Optional[str] = typer.Option(None, help="Without annotations: ask this of every video."),
    preset: str = typer.Option(DEFAULT_PRESET, "--preset", "-p", help="Preset name or YAML path."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Hub id or local folder."),
    pruners: Optional[str] = typer.Option(None, help="Comma-separated base pruners (default: the preset's)."),
    ratio: Optional[str] = typer.Option(None, help="A ratio or a sweep, e.g. 0,0.5,0.75,0.9,0.95."),
    stop_mode: str = typer.Option("both", "--stop-mode", help="both, on or off (see also --stop/--no-stop)."),
    stop_flag: Optional[bool] = typer.Option(None, "--stop/--no-stop", help="Only with / only without SToP."),
    both: bool = typer.Option(False, "--both", help="With and without SToP (the default)."),
    frames: Optional[int] = typer.Option(None, help="Frames sampled uniformly."),
    max_new_tokens: Optional[int] = typer.Option(None, help="Longest answer, in tokens."),
    output: Optional[Path] = typer.Option(None, help="JSONL results (default FOLDER/stop-results.jsonl)."),
    resume: bool = typer.Option(False, "--resume", help="Skip items already in the results file."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start the results file afresh."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write accuracy and prefill vs ratio as a PNG."),
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
    ratios = [validate_ratio(number(x, "--ratio")) for x in split(ratio or str(p.ratio), "--ratio")]
    bases = [validate_pruner(b) for b in split(pruners or p.pruner, "--pruners")]
    if stop_mode not in ("both", "on", "off"):
        raise UsageError("--stop-mode must be both, on or off")
    if both and stop_flag is not None:
        raise UsageError("--both cannot be combined with --stop or --no-stop")
    mode = "both" if both else stop_mode if stop_flag is None else ("on" if stop_flag else "off")
    n_frames, new_tokens = counts(p, frames, max_new_tokens)
    distributed = workers is not None or ray_address is not None
    if workers is not None and workers < 1:
        raise UsageError("--workers must be at least 1")
    if threads_per_worker < 1:
        raise UsageError("--threads-per-worker must be at least 1")
    if ray_address is not None and not valid_address(ray_address):
        raise UsageError(f"--ray-address must be auto or HOST:PORT (e.g. 10.0.0.1:6379), not {ray_address!r}")

    from ..evaluation import runner as B
    from ..evaluation.annotations import load_records

    out_path = output or folder / "stop-results.jsonl"
    if out_path.is_file() and out_path.stat().st_size and not (resume or overwrite):
        raise UsageError(f"{out_path} already holds results: pass --resume to continue it or --overwrite")

    def start_afresh() -> None:  # only once the model (or every worker) is up: a failed start keeps the old file
        if overwrite and out_path.is_file():
            out_path.unlink()

    records = load_records(folder, annotations, question)
    grid = B.settings_grid(ratios, bases, mode)
    skip = B.done_keys(out_path) if resume and not overwrite else set()
    total = sum(1 for r in records for s in grid if B.item_key(r.key, s) not in skip)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        console=err, transient=True)
    outcome = None
    if distributed:
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
                                              on_item=lambda row: progress.advance(task), on_ready=start_afresh)
            finally:
                if started:
                    D.disconnect()
    else:
        backbone = load(p, origin, model, device, dtype, trust_remote_code)
        model_name = backbone.name
        start_afresh()
        with progress:
            task = progress.add_task("bench", total=total)
            B.run_bench(backbone, folder, records, grid, out_path, frames=n_frames, max_new_tokens=new_tokens,
                        skip=skip, on_item=lambda row: progress.advance(task))
    rows = B.read_rows(out_path)
    summary = B.summarise(rows)
    if plot is not None:
        B.plot(summary, plot)
    failed = [r for r in rows if r.get("error")]
    if as_json:
        extra = {} if outcome is None else dict(workers=[w.to_json() for w in outcome.workers],
                                                 retried=outcome.retried)
        typer.echo(json.dumps(dict(results=str(out_path), items=len(rows), failed=len(failed), summary=summary,
                                   **extra), indent=2))
    else:
        table = Table(title=f"{model_name}  ·  {len(records)} records  ·  results in {out_path}",
                      title_justify="left")
        for col in ("ratio", "method", "type", "items", "failed", "accuracy", "tokens kept", "prefill ms",
                    "speed-up"):
            table.add_column(col, justify="left" if col in ("method", "type") else "right")
        for r in summary:
            name = "no pruning" if r["pruner"] == "none" else r["pruner"] + (" + SToP" if r["stop"] else "")
            table.add_row(f"{r['ratio']:g}", name, r["type"], str(r["items"]), str(r["failed"]),
                          "-" if r["accuracy"] is None else f"{100 * r['accuracy']:.1f}%",
                          "-" if r["kept"] is None else f"{r['kept']:.0f}", ms(r["prefill_ms"]),
                          "-" if r["speedup"] is None else f"{r['speedup']:.2f}x")
        out.print(table)
        if outcome is not None:
            out.print(worker_table(outcome))
    for r in failed[:5]:
        err.print(f"failed: {r['video']}: {r['error']}", markup=False)
    if failed:
        raise typer.Exit(1)
