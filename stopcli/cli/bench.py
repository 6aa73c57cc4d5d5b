"""`stop bench`: a folder of videos and questions, a ratio sweep, pruners with and without SToP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..errors import UsageError
from ..presets import DEFAULT_PRESET, load_preset, validate_pruner, validate_ratio, validate_sink_score
from .common import SINK_HELP, app, counts, err, load, ms, number, out, split, user_errors


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
    sink_score: Optional[str] = typer.Option(None, "--sink-score", help=SINK_HELP + " Comma-separated: one SToP "
                                             "run per score."),
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
    scores = list(dict.fromkeys(validate_sink_score(s) for s in split(sink_score or p.sink_score, "--sink-score")))
    n_frames, new_tokens = counts(p, frames, max_new_tokens)

    from ..evaluation import runner as B
    from ..evaluation.annotations import load_records

    out_path = output or folder / "stop-results.jsonl"
    if out_path.is_file() and out_path.stat().st_size and not (resume or overwrite):
        raise UsageError(f"{out_path} already holds results: pass --resume to continue it or --overwrite")
    if overwrite and out_path.is_file():
        out_path.unlink()
    records = load_records(folder, annotations, question)
    grid = B.settings_grid(ratios, bases, mode, scores)
    skip = B.done_keys(out_path) if resume else set()
    total = sum(1 for r in records for s in grid if B.item_key(r.key, s) not in skip)
    backbone = load(p, origin, model, device, dtype, trust_remote_code)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=err, transient=True) as progress:
        task = progress.add_task("bench", total=total)
        B.run_bench(backbone, folder, records, grid, out_path, frames=n_frames, max_new_tokens=new_tokens,
                    skip=skip, on_item=lambda row: progress.advance(task))
    rows = B.read_rows(out_path)
    summary = B.summarise(rows)
    if plot is not None:
        B.plot(summary, plot)
    failed = [r for r in rows if r.get("error")]
    if as_json:
        typer.echo(json.dumps(dict(results=str(out_path), items=len(rows), failed=len(failed), summary=summary),
                              indent=2))
    else:
        table = Table(title=f"{backbone.name}  ·  {len(records)} records  ·  results in {out_path}",
                      title_justify="left")
        for col in ("ratio", "method", "type", "items", "failed", "accuracy", "tokens kept", "prefill ms",
                    "speed-up"):
            table.add_column(col, justify="left" if col in ("method", "type") else "right")
        for r in summary:
            name = "no pruning" if r["pruner"] == "none" else r["pruner"] + (" + SToP" if r["stop"] else "")
            name += f" ({r['sink_score']})" if r["stop"] and r.get("sink_score") not in (None, "minmax") else ""
            table.add_row(f"{r['ratio']:g}", name, r["type"], str(r["items"]), str(r["failed"]),
                          "-" if r["accuracy"] is None else f"{100 * r['accuracy']:.1f}%",
                          "-" if r["kept"] is None else f"{r['kept']:.0f}", ms(r["prefill_ms"]),
                          "-" if r["speedup"] is None else f"{r['speedup']:.2f}x")
        out.print(table)
    for r in failed[:5]:
        err.print(f"failed: {r['video']}: {r['error']}", markup=False)
    if failed:
        raise typer.Exit(1)
