"""The `stop` command line: parse, call the library, render. Nothing else lives here."""

from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
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


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def render_answer(result) -> None:
    out.print(f"[bold]{result.answer or '(empty answer)'}[/bold]")
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
    n_frames = frames if frames is not None else p.frames
    if n_frames < 1:
        raise UsageError("--frames must be at least 1")
    new_tokens = max_new_tokens if max_new_tokens is not None else p.max_new_tokens
    if new_tokens < 1:
        raise UsageError("--max-new-tokens must be at least 1")
    dev, dt = pipeline.auto_device(device, dtype)

    t0 = time.perf_counter()
    clip = pipeline.read_video(video, num_frames=n_frames, fps=fps, start=start, end=end)
    decode_ms = (time.perf_counter() - t0) * 1000
    _quiet_transformers()
    backbone = pipeline.load_backbone(model or p.resolved_model(origin), dev, dt, trust_remote_code)
    if model is None and p.model.startswith("stopcli:"):
        backbone.name = p.model
    encoded = pipeline.encode(backbone, clip, question, decode_ms)
    result = pipeline.answer(backbone, encoded, settings, new_tokens)
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


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
