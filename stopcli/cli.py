"""The `stop` command line: parse, call the library, render. Nothing else lives here."""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .errors import StopError, UsageError
from .presets import DEFAULT_PRESET, list_preset_paths, load_preset, validate_pruner, validate_ratio

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Fast Video LLMs with sink-token-aware visual-token pruning (SToP).")
out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False)


def user_errors(fn):
    """Show StopError as one line on stderr and exit with its code; never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except StopError as exc:
            err.print(f"error: {exc}", markup=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None

    return wrapper


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _counts(p, frames: int | None, max_new_tokens: int | None) -> tuple[int, int]:
    n_frames = frames if frames is not None else p.frames
    if n_frames < 1:
        raise UsageError("--frames must be at least 1")
    new_tokens = max_new_tokens if max_new_tokens is not None else p.max_new_tokens
    if new_tokens < 1:
        raise UsageError("--max-new-tokens must be at least 1")
    return n_frames, new_tokens


def _decode(video: Path, n_frames: int, fps, start, end):
    from .video import read_video

    t0 = time.perf_counter()
    clip = read_video(video, num_frames=n_frames, fps=fps, start=start, end=end)
    return clip, (time.perf_counter() - t0) * 1000


def _load(p, origin, model: str | None, device: str | None, dtype: str | None, trust_remote_code: bool):
    from . import pipeline

    dev, dt = pipeline.auto_device(device, dtype)
    _quiet_transformers()
    backbone = pipeline.load_backbone(model or p.resolved_model(origin), dev, dt, trust_remote_code)
    if model is None and p.model.startswith("stopcli:"):
        backbone.name = p.model
    return backbone


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def render_answer(result) -> None:
    out.print(f"[bold]{escape(result.answer) or '(empty answer)'}[/bold]")
    vt = result.visual_tokens
    kept_pct = 100.0 * vt["after"] / max(1, vt["before"])
    method = result.pruner + (" + SToP" if result.stop else "")
    table = Table(title=f"{result.model}  ·  {method}  ·  ratio {result.ratio:g}", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    t = result.timings_ms
    rows = [
        ("frames", str(result.frames)),
        ("visual tokens", f"{vt['before']:,} → {vt['after']:,} ({kept_pct:.1f}%)"),
        ("prompt tokens", f"{result.prompt_tokens:,}"),
        ("decode video ms", _ms(t["decode_video"])),
        ("vision encode ms", _ms(t["vision"])),
        ("pruning ms", _ms(t["prune"])),
        ("prefill ms (time to first token)", _ms(t["prefill"])),
        ("decode ms", _ms(t["decode"])),
        ("tokens/s", "-" if result.tokens_per_s is None else f"{result.tokens_per_s:.1f}"),
        ("total ms", _ms(t["total"])),
        ("peak memory MB", f"{result.peak_memory_mb:,.0f}"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    out.print(table)
    for note in result.notes:
        err.print(f"note: {note}", markup=False)


@app.command()
@user_errors
def ask(
    video: Path = typer.Argument(..., help="Video file."),
    question: str = typer.Argument(..., help="The question to ask about the video."),
    preset: str = typer.Option(DEFAULT_PRESET, "--preset", "-p", help="Preset name or YAML path."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Hub id or local folder (overrides the preset)."),
    pruner: Optional[str] = typer.Option(None, help="none, uniform, visionzip, fastvid, holitom."),
    ratio: Optional[float] = typer.Option(None, help="Fraction of visual tokens dropped, in [0, 1)."),
    stop: Optional[bool] = typer.Option(None, "--stop/--no-stop", help="Wrap the pruner in SToP."),
    mu_s: Optional[float] = typer.Option(None, "--mu-s", help="STSP weight (default: the pruner's)."),
    mu_t: Optional[float] = typer.Option(None, "--mu-t", help="STTP weight (default: the pruner's)."),
    frames: Optional[int] = typer.Option(None, help="Frames sampled uniformly (default: the preset's)."),
    fps: Optional[float] = typer.Option(None, help="Sample this many frames per second instead."),
    start: Optional[float] = typer.Option(None, help="Start of the clip, seconds."),
    end: Optional[float] = typer.Option(None, help="End of the clip, seconds."),
    max_new_tokens: Optional[int] = typer.Option(None, help="Longest answer, in tokens."),
    device: Optional[str] = typer.Option(None, help="cpu or cuda (default: cuda when present)."),
    dtype: Optional[str] = typer.Option(None, help="float32, bfloat16 or float16 (default: bf16 on CUDA)."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Allow the checkpoint's own code."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
    show_png: Optional[Path] = typer.Option(None, "--show", help="Also draw the kept tokens to this PNG."),
) -> None:
    """Answer a question about a video with a pruned Video LLM."""
    from . import pipeline

    started = time.perf_counter()
    p, origin = load_preset(preset)
    settings = pipeline.PruneSettings(
        pruner=validate_pruner(pruner if pruner is not None else p.pruner),
        ratio=validate_ratio(ratio if ratio is not None else p.ratio),
        stop=p.stop if stop is None else stop,
        mu_s=mu_s if mu_s is not None else p.mu_s,
        mu_t=mu_t if mu_t is not None else p.mu_t,
    )
    n_frames, new_tokens = _counts(p, frames, max_new_tokens)
    clip, decode_ms = _decode(video, n_frames, fps, start, end)
    backbone = _load(p, origin, model, device, dtype, trust_remote_code)
    encoded = pipeline.encode(backbone, clip, question, decode_ms)
    result = pipeline.answer(backbone, encoded, settings, new_tokens)
    if show_png is not None:
        _draw(clip, encoded, settings.pruner, settings.ratio, show_png, backbone.name, settings.mu_s, settings.mu_t)
    if as_json:
        data = result.to_json()
        data["wall_ms"] = round((time.perf_counter() - started) * 1000, 2)
        typer.echo(json.dumps(data, indent=2))
    else:
        render_answer(result)


@app.command()
@user_errors
def presets(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the presets that ship with stop."""
    rows = [load_preset(str(path))[0] for path in list_preset_paths()]
    if as_json:
        typer.echo(json.dumps([vars(r) for r in rows], indent=2))
        return
    table = Table(title="presets")
    for col in ("name", "model", "frames", "pruner", "ratio", "SToP", "description"):
        table.add_column(col)
    for r in rows:
        table.add_row(r.name, r.model, str(r.frames), r.pruner, f"{r.ratio:g}", "yes" if r.stop else "no",
                      r.description)
    out.print(table)


def _draw(clip, encoded, pruner: str, ratio: float, path: Path, model: str, mu_s=None, mu_t=None,
          show_frames: int = 8) -> None:
    from .show import show as draw

    if pruner in ("none", "uniform"):
        raise UsageError(f"--show needs a pruner SToP can wrap (visionzip, fastvid, holitom), not {pruner!r}")
    draw(clip.frames, encoded.encoded.tokens, pruner, ratio if ratio > 0 else 0.9, path, model, show_frames,
         mu_s, mu_t)
    err.print(f"wrote {path}", markup=False)


@app.command()
@user_errors
def show(
    video: Path = typer.Argument(..., help="Video file."),
    out_png: Path = typer.Option(Path("tokens.png"), "--out", "-o", help="PNG to write."),
    preset: str = typer.Option(DEFAULT_PRESET, "--preset", "-p", help="Preset name or YAML path."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Hub id or local folder."),
    pruner: Optional[str] = typer.Option(None, help="visionzip, fastvid or holitom (default: the preset's)."),
    ratio: Optional[float] = typer.Option(None, help="Fraction of visual tokens dropped, in [0, 1)."),
    mu_s: Optional[float] = typer.Option(None, "--mu-s", help="STSP weight."),
    mu_t: Optional[float] = typer.Option(None, "--mu-t", help="STTP weight."),
    frames: Optional[int] = typer.Option(None, help="Frames sampled for the model."),
    show_frames: int = typer.Option(8, "--show-frames", help="Frames drawn."),
    device: Optional[str] = typer.Option(None, help="cpu or cuda."),
    dtype: Optional[str] = typer.Option(None, help="float32, bfloat16 or float16."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code"),
) -> None:
    """Draw the sink score and the tokens the base pruner and base + SToP keep, as one PNG."""
    from . import pipeline

    p, origin = load_preset(preset)
    name = validate_pruner(pruner if pruner is not None else p.pruner)
    r = validate_ratio(ratio if ratio is not None else p.ratio)
    if r == 0:
        raise UsageError("--ratio 0 keeps every token: nothing to show")
    if show_frames < 1:
        raise UsageError("--show-frames must be at least 1")
    n_frames, _ = _counts(p, frames, None)
    clip, decode_ms = _decode(video, n_frames, None, None, None)
    backbone = _load(p, origin, model, device, dtype, trust_remote_code)
    encoded = pipeline.encode(backbone, clip, "describe this video.", decode_ms)
    _draw(clip, encoded, name, r, out_png, backbone.name, mu_s, mu_t, show_frames)


def _split(text: str, what: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise UsageError(f"{what} must not be empty")
    return items


@app.command()
@user_errors
def compare(
    video: Path = typer.Argument(..., help="Video file."),
    question: str = typer.Argument(..., help="The question to ask about the video."),
    preset: str = typer.Option(DEFAULT_PRESET, "--preset", "-p", help="Preset name or YAML path."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Hub id or local folder."),
    pruners: Optional[str] = typer.Option(None, help="Comma-separated base pruners (default: the preset's)."),
    ratio: Optional[float] = typer.Option(None, help="Fraction of visual tokens dropped, in [0, 1)."),
    frames: Optional[int] = typer.Option(None, help="Frames sampled uniformly."),
    max_new_tokens: Optional[int] = typer.Option(None, help="Longest answer, in tokens."),
    device: Optional[str] = typer.Option(None, help="cpu or cuda."),
    dtype: Optional[str] = typer.Option(None, help="float32, bfloat16 or float16."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code"),
    as_json: bool = typer.Option(False, "--json", help="Print the rows as a JSON list."),
    show_png: Optional[Path] = typer.Option(None, "--show", help="Also draw the kept tokens (first pruner)."),
) -> None:
    """No pruning, each base pruner, and each with SToP, side by side (one decode, one vision pass)."""
    from . import pipeline

    p, origin = load_preset(preset)
    bases = [validate_pruner(b) for b in _split(pruners or p.pruner, "--pruners")]
    r = validate_ratio(ratio if ratio is not None else p.ratio)
    n_frames, new_tokens = _counts(p, frames, max_new_tokens)
    clip, decode_ms = _decode(video, n_frames, None, None, None)
    backbone = _load(p, origin, model, device, dtype, trust_remote_code)
    encoded = pipeline.encode(backbone, clip, question, decode_ms)
    rows = [pipeline.PruneSettings("none", 0.0, False)]
    for b in bases:
        if b == "none":
            continue
        rows.append(pipeline.PruneSettings(b, r, False))
        if b != "uniform":
            rows.append(pipeline.PruneSettings(b, r, True))
    results = [pipeline.answer(backbone, encoded, s, new_tokens) for s in rows]
    if show_png is not None:
        _draw(clip, encoded, next((b for b in bases if b not in ("none", "uniform")), bases[0]), r, show_png,
              backbone.name)
    ref = results[0].timings_ms["prefill"]
    if as_json:
        data = []
        for res in results:
            row = res.to_json()
            row["prefill_speedup"] = round(ref / res.timings_ms["prefill"], 3) if res.timings_ms["prefill"] else None
            data.append(row)
        typer.echo(json.dumps(data, indent=2))
        return
    table = Table(title=f"{backbone.name}  ·  ratio {r:g}  ·  {clip.num_frames} frames  ·  {escape(question)}",
                  title_justify="left")
    for col, just in (("method", "left"), ("answer", "left"), ("visual tokens", "right"), ("prefill ms", "right"),
                      ("total ms", "right"), ("prefill speed-up", "right")):
        table.add_column(col, justify=just)
    for res in results:
        vt = res.visual_tokens
        name = "no pruning" if res.pruner == "none" else res.pruner + (" + SToP" if res.stop else "")
        table.add_row(name, escape(res.answer) or "(empty)", f"{vt['after']:,} / {vt['before']:,}",
                      _ms(res.timings_ms["prefill"]), _ms(res.timings_ms["total"]),
                      f"{ref / res.timings_ms['prefill']:.2f}x" if res.timings_ms["prefill"] else "-")
    out.print(table)
    for note in clip.notes:
        err.print(f"note: {note}", markup=False)


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
) -> None:
    """Accuracy, kept tokens and prefill time over a folder, for a ratio sweep, with and without SToP."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from . import bench as B
    from .records import load_records

    if not folder.is_dir():
        raise UsageError(f"not a folder: {folder}")
    p, origin = load_preset(preset)
    ratios = [validate_ratio(_float(x, "--ratio")) for x in _split(ratio or str(p.ratio), "--ratio")]
    bases = [validate_pruner(b) for b in _split(pruners or p.pruner, "--pruners")]
    if stop_mode not in ("both", "on", "off"):
        raise UsageError("--stop-mode must be both, on or off")
    if both and stop_flag is not None:
        raise UsageError("--both cannot be combined with --stop or --no-stop")
    mode = "both" if both else stop_mode if stop_flag is None else ("on" if stop_flag else "off")
    n_frames, new_tokens = _counts(p, frames, max_new_tokens)
    out_path = output or folder / "stop-results.jsonl"
    if out_path.is_file() and out_path.stat().st_size and not (resume or overwrite):
        raise UsageError(f"{out_path} already holds results: pass --resume to continue it or --overwrite")
    if overwrite and out_path.is_file():
        out_path.unlink()
    records = load_records(folder, annotations, question)
    grid = B.settings_grid(ratios, bases, mode)
    skip = B.done_keys(out_path) if resume else set()
    total = sum(1 for r in records for s in grid if B.item_key(r.key, s) not in skip)
    backbone = _load(p, origin, model, device, dtype, trust_remote_code)
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
            table.add_row(f"{r['ratio']:g}", name, r["type"], str(r["items"]), str(r["failed"]),
                          "-" if r["accuracy"] is None else f"{100 * r['accuracy']:.1f}%",
                          "-" if r["kept"] is None else f"{r['kept']:.0f}", _ms(r["prefill_ms"]),
                          "-" if r["speedup"] is None else f"{r['speedup']:.2f}x")
        out.print(table)
    for r in failed[:5]:
        err.print(f"failed: {r['video']}: {r['error']}", markup=False)
    if failed:
        raise typer.Exit(1)


@app.command()
@user_errors
def synth(
    out_dir: Path = typer.Argument(..., help="Folder to write videos and annotations.jsonl into."),
    n: int = typer.Option(200, "--n", help="Number of videos (one question each, types in turn)."),
    seed: int = typer.Option(0, help="Random seed: the same seed writes the same videos."),
    frames: int = typer.Option(16, help="Frames per video."),
    fps: int = typer.Option(8, help="Frames per second of the files."),
) -> None:
    """Write synthetic videos of the embedded model's world, with questions and answers in the bench format."""
    from .synth import generate

    if n < 1 or frames < 2 or fps < 1:
        raise UsageError("--n must be >= 1, --frames >= 2 and --fps >= 1")
    path = generate(out_dir, n, seed=seed, frames=frames, fps=fps)
    out.print(f"wrote {n} videos and {path}")


@app.command()
@user_errors
def train(
    ctx: typer.Context,
    out_dir: Path = typer.Argument(..., help="Folder for the trained model (HF format)."),
    config: Optional[Path] = typer.Option(None, "--config",
                                          help="Take a run's settings from its training_config.json (e.g. the shipped "
                                               "model's); options given on the command line override them."),
    steps: int = typer.Option(4000, help="Optimiser steps."),
    batch: int = typer.Option(16, help="Videos per step."),
    seed: int = typer.Option(0, help="Random seed (data and initialisation)."),
    threads: int = typer.Option(2, help="CPU threads."),
    lr: float = typer.Option(2e-3, help="Peak learning rate."),
    warmup: int = typer.Option(150, help="Warm-up steps."),
    init_from: Optional[Path] = typer.Option(None, "--init-from", help="Continue from this checkpoint."),
    keep_choices: str = typer.Option("1", "--keep-choices",
                                     help="Fractions of visual tokens kept per batch, drawn at random, e.g. 1,0.1."),
    vision_steps: int = typer.Option(0, "--vision-steps",
                                     help="Stage 0: steps in which the vision tower alone learns colour and shape."),
    vision_batch: int = typer.Option(8, "--vision-batch", help="Videos per stage-0 step."),
    vision_frames: int = typer.Option(0, "--vision-frames",
                                      help="Frames per video in stage 0 (0: as many as in training); fewer frames "
                                           "show more videos for the same price."),
    vision_place_from: int = typer.Option(1, "--vision-place-from",
                                          help="Stage-0 step from which the place losses are on (shape first)."),
    vision_cosine: bool = typer.Option(False, "--vision-cosine/--vision-constant",
                                       help="Stage 0's learning rate decays to zero, or stays constant."),
    vision_lr_scale: float = typer.Option(1.0, "--vision-lr-scale",
                                          help="The vision tower's learning rate relative to --lr after stage 0."),
    track_weight: float = typer.Option(0.0, "--track-weight",
                                       help="Weight of the attention supervision that links an object across frames."),
    option_weight: float = typer.Option(0.0, "--option-weight",
                                        help="Weight of the attention supervision from a multiple-choice answer to the "
                                             "correct option."),
    position_weight: float = typer.Option(1.0, "--position-weight",
                                          help="Weight of the loss that makes every visual token tell its row and "
                                               "column (motion needs places)."),
    readout_weight: float = typer.Option(0.0, "--readout-weight",
                                         help="Weight of the loss that reads, below the last layer, the answer's word "
                                              "at the answer and each option word's letter."),
    coordinate_weight: float = typer.Option(0.0, "--coordinate-weight",
                                            help="Weight of the loss that makes every visual token tell its place as "
                                                 "two numbers (column, row in [-1, 1])."),
    endpoint_weight: float = typer.Option(0.0, "--endpoint-weight",
                                          help="Weight of the attention supervision from an answer to its object's "
                                               "first and last sighting (direction)."),
    centroid_weight: float = typer.Option(0.0, "--centroid-weight",
                                          help="Weight of the loss that makes those heads read where the object began "
                                               "and ended, and the answer position hold the difference."),
    centre_weight: float = typer.Option(0.0, "--centre-weight",
                                        help="Weight of the loss that makes every visual token of an object tell "
                                             "where that object's centre is (two numbers)."),
    identity_weight: float = typer.Option(0.0, "--identity-weight",
                                          help="Weight of the loss that makes the focus head's reading at an answer "
                                               "tell its object's colour and shape."),
    mc_share: float = typer.Option(0.3, "--mc-share",
                                   help="How often colour/shape/direction questions take their multiple-choice form."),
    branch_turns: int = typer.Option(0, "--branch-turns",
                                     help="Ask each training video up to this many questions (every one that applies), "
                                          "each seeing the video alone, as if asked first (0: one conversation of "
                                          "1-6 turns)."),
) -> None:
    """Train the embedded tiny model on the synthetic world (CPU; see stopcli/train.py)."""
    from .train import TrainConfig
    from .train import train as run_training

    chosen = dict(steps=steps, batch=batch, seed=seed, threads=threads, lr=lr, warmup=warmup,
                  keep_choices=tuple(_float(k, "--keep-choices") for k in _split(keep_choices, "--keep-choices")),
                  init_from=str(init_from) if init_from else None, vision_steps=vision_steps, mc_share=mc_share,
                  vision_lr_scale=vision_lr_scale, track_weight=track_weight, option_weight=option_weight,
                  position_weight=position_weight, readout_weight=readout_weight, endpoint_weight=endpoint_weight,
                  coordinate_weight=coordinate_weight, centroid_weight=centroid_weight, centre_weight=centre_weight,
                  vision_batch=vision_batch, vision_frames=vision_frames, vision_place_from=vision_place_from,
                  vision_cosine=vision_cosine, identity_weight=identity_weight, branch_turns=branch_turns)
    if config is not None:
        settings = _training_config(config, TrainConfig)
        given = {k for k in chosen if ctx.get_parameter_source(k).name == "COMMANDLINE"}  # typer vendors click's enum
        settings.update({k: v for k, v in chosen.items() if k in given})
        chosen = settings
    cfg = TrainConfig(**chosen)
    small = [f"--{k.replace('_', '-')}" for k in ("steps", "batch", "threads", "warmup", "vision_batch")
             if getattr(cfg, k) < 1]
    if small:
        raise UsageError(f"{', '.join(small)} must be at least 1")
    small = [f"--{k.replace('_', '-')}" for k in ("vision_steps", "vision_frames", "branch_turns")
             if getattr(cfg, k) < 0]
    if small:
        raise UsageError(f"{', '.join(small)} must not be negative")
    weights = ("vision_lr_scale", "track_weight", "option_weight", "position_weight", "readout_weight",
               "endpoint_weight", "coordinate_weight", "centroid_weight", "centre_weight", "identity_weight")
    negative = [f"--{k.replace('_', '-')}" for k in weights if getattr(cfg, k) < 0]
    if negative:
        raise UsageError(f"{', '.join(negative)} must not be negative")
    if not 0 <= cfg.mc_share <= 1:
        raise UsageError("--mc-share must be a fraction in [0, 1]")
    if not cfg.keep_choices or not all(0 < k <= 1 for k in cfg.keep_choices):
        raise UsageError("--keep-choices must be fractions in (0, 1]")
    if cfg.init_from is not None and not (Path(cfg.init_from) / "config.json").is_file():
        raise UsageError(f"--init-from: no checkpoint in {cfg.init_from}")
    _quiet_transformers()
    path = run_training(out_dir, cfg, log=lambda line: err.print(line, markup=False, soft_wrap=True))
    out.print(f"saved {path}")


def _training_config(path: Path, config_type) -> dict:
    """The settings in a training_config.json, checked against the fields of TrainConfig."""
    try:
        settings = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"--config: cannot read {path}: {exc}") from None
    if not isinstance(settings, dict):
        raise UsageError(f"--config: {path} is not a JSON object of settings")
    fields = {f.name: f for f in dataclasses.fields(config_type)}
    unknown = sorted(set(settings) - set(fields))
    if unknown:
        raise UsageError(f"--config: {path} has unknown settings: {', '.join(unknown)}")
    for name, value in settings.items():
        default = fields[name].default
        if name == "keep_choices":
            ok = isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
            settings[name] = tuple(value) if ok else value
        elif default is None:  # init_from: a folder or nothing
            ok = value is None or isinstance(value, str)
        elif isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        else:
            ok = isinstance(value, type(default)) and not isinstance(value, bool)
        if not ok:
            raise UsageError(f"--config: {name} in {path} has the wrong type: {value!r}")
        # Sizes and counts the command line does not check: a zero would fail deep inside training.
        counts = ("seed", "vision_steps", "vision_frames", "vision_place_from")  # 0 is meaningful for these
        if type(default) is int and name not in counts and value < 1:
            raise UsageError(f"--config: {name} in {path} must be at least 1, not {value!r}")
    return settings


def _float(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"{what}: not a number: {text!r}") from None


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
