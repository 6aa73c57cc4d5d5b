"""Commands that answer about one video: ask, compare, show, and the preset listing."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from ..errors import UsageError
from ..presets import (DEFAULT_PRESET, list_preset_paths, load_preset, validate_pruner, validate_ratio,
                       validate_sink_score)
from ..pruners import NAMES as PRUNER_NAMES
from ..pruners import WRAPPABLE
from .common import SINK_HELP, app, counts, decode, draw, err, load, ms, out, split, user_errors


def render_answer(result) -> None:
    out.print(f"[bold]{escape(result.answer) or '(empty answer)'}[/bold]")
    vt = result.visual_tokens
    kept_pct = 100.0 * vt["after"] / max(1, vt["before"])
    method = result.pruner + (" + SToP" if result.stop else "")
    method += f" ({result.sink_score} sink score)" if result.stop and result.sink_score != "minmax" else ""
    table = Table(title=f"{result.model}  ·  {method}  ·  ratio {result.ratio:g}", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    t = result.timings_ms
    rows = [
        ("frames", str(result.frames)),
        ("visual tokens", f"{vt['before']:,} → {vt['after']:,} ({kept_pct:.1f}%)"),
        ("prompt tokens", f"{result.prompt_tokens:,}"),
        ("decode video ms", ms(t["decode_video"])),
        ("vision encode ms", ms(t["vision"])),
        ("pruning ms", ms(t["prune"])),
        ("prefill ms (time to first token)", ms(t["prefill"])),
        ("decode ms", ms(t["decode"])),
        ("tokens/s", "-" if result.tokens_per_s is None else f"{result.tokens_per_s:.1f}"),
        ("total ms", ms(t["total"])),
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
    pruner: Optional[str] = typer.Option(None, help=", ".join(PRUNER_NAMES) + "."),
    ratio: Optional[float] = typer.Option(None, help="Fraction of visual tokens dropped, in [0, 1)."),
    stop: Optional[bool] = typer.Option(None, "--stop/--no-stop", help="Wrap the pruner in SToP."),
    mu_s: Optional[float] = typer.Option(None, "--mu-s", help="STSP weight (default: the pruner's)."),
    mu_t: Optional[float] = typer.Option(None, "--mu-t", help="STTP weight (default: the pruner's)."),
    sink_score: Optional[str] = typer.Option(None, "--sink-score", help=SINK_HELP),
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
    started = time.perf_counter()
    p, origin = load_preset(preset)
    name = validate_pruner(pruner if pruner is not None else p.pruner)
    r = validate_ratio(ratio if ratio is not None else p.ratio)
    score = validate_sink_score(sink_score or p.sink_score)
    n_frames, new_tokens = counts(p, frames, max_new_tokens)

    from .. import pipeline

    settings = pipeline.PruneSettings(pruner=name, ratio=r, stop=p.stop if stop is None else stop,
                                      mu_s=mu_s if mu_s is not None else p.mu_s,
                                      mu_t=mu_t if mu_t is not None else p.mu_t, sink_score=score)
    clip, decode_ms = decode(video, n_frames, fps, start, end)
    backbone = load(p, origin, model, device, dtype, trust_remote_code)
    encoded = pipeline.encode(backbone, clip, question, decode_ms)
    result = pipeline.answer(backbone, encoded, settings, new_tokens)
    if show_png is not None:
        draw(clip, encoded, settings.pruner, settings.ratio, show_png, backbone.name, settings.mu_s, settings.mu_t,
             sink_score=score)
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
        table.add_row(r.name, r.model, str(r.frames), r.pruner, f"{r.ratio:g}",
                      f"yes ({r.sink_score})" if r.stop else "no",
                      r.description)
    out.print(table)


@app.command()
@user_errors
def show(
    video: Path = typer.Argument(..., help="Video file."),
    out_png: Path = typer.Option(Path("tokens.png"), "--out", "-o", help="PNG to write."),
    preset: str = typer.Option(DEFAULT_PRESET, "--preset", "-p", help="Preset name or YAML path."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Hub id or local folder."),
    pruner: Optional[str] = typer.Option(None, help="A pruner SToP wraps: " + ", ".join(WRAPPABLE) + " (default: the preset's)."),
    ratio: Optional[float] = typer.Option(None, help="Fraction of visual tokens dropped, in [0, 1)."),
    mu_s: Optional[float] = typer.Option(None, "--mu-s", help="STSP weight."),
    mu_t: Optional[float] = typer.Option(None, "--mu-t", help="STTP weight."),
    sink_score: Optional[str] = typer.Option(None, "--sink-score", help=SINK_HELP),
    frames: Optional[int] = typer.Option(None, help="Frames sampled for the model."),
    show_frames: int = typer.Option(8, "--show-frames", help="Frames drawn."),
    device: Optional[str] = typer.Option(None, help="cpu or cuda."),
    dtype: Optional[str] = typer.Option(None, help="float32, bfloat16 or float16."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code"),
) -> None:
    """Draw the sink score and the tokens the base pruner and base + SToP keep, as one PNG."""
    p, origin = load_preset(preset)
    name = validate_pruner(pruner if pruner is not None else p.pruner)
    r = validate_ratio(ratio if ratio is not None else p.ratio)
    if r == 0:
        raise UsageError("--ratio 0 keeps every token: nothing to show")
    if show_frames < 1:
        raise UsageError("--show-frames must be at least 1")
    score = validate_sink_score(sink_score or p.sink_score)
    n_frames, _ = counts(p, frames, None)
    from .. import pipeline

    clip, decode_ms = decode(video, n_frames, None, None, None)
    backbone = load(p, origin, model, device, dtype, trust_remote_code)
    encoded = pipeline.encode(backbone, clip, "describe this video.", decode_ms)
    draw(clip, encoded, name, r, out_png, backbone.name, mu_s, mu_t, show_frames, score)


@app.command()
@user_errors
def compare(
    video: Path = typer.Argument(..., help="Video file."),
    question: str = typer.Argument(..., help="The question to ask about the video."),
    preset: str = typer.Option(DEFAULT_PRESET, "--preset", "-p", help="Preset name or YAML path."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Hub id or local folder."),
    pruners: Optional[str] = typer.Option(None, help="Comma-separated base pruners (default: the preset's)."),
    ratio: Optional[float] = typer.Option(None, help="Fraction of visual tokens dropped, in [0, 1)."),
    sink_score: Optional[str] = typer.Option(None, "--sink-score", help=SINK_HELP),
    frames: Optional[int] = typer.Option(None, help="Frames sampled uniformly."),
    max_new_tokens: Optional[int] = typer.Option(None, help="Longest answer, in tokens."),
    device: Optional[str] = typer.Option(None, help="cpu or cuda."),
    dtype: Optional[str] = typer.Option(None, help="float32, bfloat16 or float16."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code"),
    as_json: bool = typer.Option(False, "--json", help="Print the rows as a JSON list."),
    show_png: Optional[Path] = typer.Option(None, "--show", help="Also draw the kept tokens (first pruner)."),
) -> None:
    """No pruning, each base pruner, and each with SToP, side by side (one decode, one vision pass)."""
    p, origin = load_preset(preset)
    bases = [validate_pruner(b) for b in split(pruners or p.pruner, "--pruners")]
    r = validate_ratio(ratio if ratio is not None else p.ratio)
    score = validate_sink_score(sink_score or p.sink_score)
    n_frames, new_tokens = counts(p, frames, max_new_tokens)
    from .. import pipeline

    clip, decode_ms = decode(video, n_frames, None, None, None)
    backbone = load(p, origin, model, device, dtype, trust_remote_code)
    encoded = pipeline.encode(backbone, clip, question, decode_ms)
    rows = [pipeline.PruneSettings("none", 0.0, False)]
    for b in bases:
        if b == "none":
            continue
        rows.append(pipeline.PruneSettings(b, r, False))
        if b in WRAPPABLE:
            rows.append(pipeline.PruneSettings(b, r, True, sink_score=score))
    results = [pipeline.answer(backbone, encoded, s, new_tokens) for s in rows]
    if show_png is not None:
        draw(clip, encoded, next((b for b in bases if b in WRAPPABLE), bases[0]), r, show_png,
             backbone.name, sink_score=score)
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
        name += f" ({res.sink_score})" if res.stop and res.sink_score != "minmax" else ""
        table.add_row(name, escape(res.answer) or "(empty)", f"{vt['after']:,} / {vt['before']:,}",
                      ms(res.timings_ms["prefill"]), ms(res.timings_ms["total"]),
                      f"{ref / res.timings_ms['prefill']:.2f}x" if res.timings_ms["prefill"] else "-")
    out.print(table)
    for note in clip.notes:
        err.print(f"note: {note}", markup=False)
