"""`stop sinks`: whether a model's vision encoder has attention sinks, over one video or a folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..errors import StopError, UsageError
from ..evaluation.annotations import VIDEO_EXTENSIONS
from ..presets import DEFAULT_PRESET, load_preset, validate_pruner, validate_ratio
from ..pruners import WRAPPABLE
from .common import app, counts, decode, err, load, out, split, user_errors


def _videos(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise UsageError(f"not a video or a folder: {path}")
    found = sorted(p for p in path.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())
    if not found:
        raise UsageError(f"no videos ({', '.join(VIDEO_EXTENSIONS)}) in {path}")
    return found


def _kept_cell(modes: dict) -> str:
    """Kept tokens on sink positions, then (in brackets) on the most attended position: base → SToP / robust."""
    sinks, top = (f"{modes['base'][k]} → {modes['minmax'][k]} / {modes['robust'][k]}" for k in ("on_sinks", "on_top"))
    return f"{sinks}  ({top})"


@app.command()
@user_errors
def sinks(
    path: Path = typer.Argument(..., help="A video file or a folder of videos."),
    preset: str = typer.Option(DEFAULT_PRESET, "--preset", "-p", help="Preset name or YAML path."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Hub id or local folder (overrides the preset)."),
    out_png: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the heat map over the grid to this PNG."),
    ratio: Optional[float] = typer.Option(None, help="Fraction of visual tokens dropped when counting kept tokens "
                                                    "on sinks (default: the preset's)."),
    pruners: Optional[str] = typer.Option(None, help="Comma-separated pruners SToP wraps (" + ", ".join(WRAPPABLE)
                                                     + "; default: the preset's)."),
    frames: Optional[int] = typer.Option(None, help="Frames sampled uniformly (default: the preset's)."),
    device: Optional[str] = typer.Option(None, help="cpu or cuda."),
    dtype: Optional[str] = typer.Option(None, help="float32, bfloat16 or float16."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code"),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (per video and over the folder)."),
) -> None:
    """Where the vision encoder's attention goes: persistent attention per grid position, the positions that are
    sinks (>= 6x the frame's median in >= 75% of frames), and the kept tokens on them without and with SToP.
    One vision pass per video, no generation."""
    p, origin = load_preset(preset)
    r = validate_ratio(ratio if ratio is not None else p.ratio)
    if r == 0:
        raise UsageError("--ratio 0 keeps every token: give the ratio to count kept tokens at")
    names = [validate_pruner(b) for b in split(pruners or p.pruner, "--pruners")]
    for name in names:
        if name not in WRAPPABLE:
            raise UsageError(f"--pruners takes pruners SToP wraps ({', '.join(WRAPPABLE)}), not {name!r}")
    n_frames, _ = counts(p, frames, None)
    if out_png is not None and out_png.suffix.lower() != ".png":
        raise UsageError(f"--out must be a .png file, got {out_png}")
    videos = _videos(path)

    from .. import pipeline
    from .. import sinks as S

    backbone = load(p, origin, model, device, dtype, trust_remote_code)
    results, failed = [], []
    for video in videos:
        try:
            clip, decode_ms = decode(video, n_frames, None, None, None)
        except StopError as exc:
            if len(videos) == 1:
                raise
            failed.append(dict(video=str(video), error=str(exc)))  # one bad file in a folder: report it, go on
            continue
        tokens = pipeline.encode(backbone, clip, "describe this video.", decode_ms).encoded.tokens
        stats = S.attention_stats(str(video), tokens)
        S.kept_on_sinks(stats, tokens, names, 1.0 - r)
        results.append(stats)
    summary = S.folder_summary(results)
    summary["failed"] = len(failed)
    title = f"{backbone.name} · {len(results)} video(s) · {n_frames} frames"
    png = S.render_heatmap(summary, out_png, title) if out_png is not None and results else None
    if as_json:
        data = dict(model=backbone.name, path=str(path), frames=n_frames, ratio=r, pruners=names,
                    sink_ratio=S.SINK_RATIO, sink_persistence=S.SINK_PERSISTENCE,
                    videos=[S.video_json(v) for v in results] + [dict(f, frames=None) for f in failed],
                    folder=summary, png=str(png) if png else None)
        typer.echo(json.dumps(data, indent=2))
    else:
        table = Table(title=f"{title}  ·  sinks: >= {S.SINK_RATIO:g}x the frame's median in >= "
                            f"{S.SINK_PERSISTENCE:.0%} of frames", title_justify="left")
        for col in ("video", "top / median", "max robust z", "top-3 share", "sinks (row, col)",
                    *[f"{n} at {r:g}: kept on sinks (on the top) base → SToP / robust" for n in names]):
            table.add_column(col, justify="left" if col in ("video", "sinks (row, col)") else "right")
        for v in results:
            d = S.video_json(v)
            table.add_row(Path(v.video).name, f"{d['top_over_median']:.1f}x",
                          "-" if d["max_robust_z"] is None else f"{d['max_robust_z']:.1f}",
                          f"{100 * v.top_k_share:.0f}%",
                          ", ".join(f"({s['row']}, {s['col']})" for s in d["sinks"]) or "none",
                          *[_kept_cell(v.kept[n]) for n in names])
        out.print(table)
        if results:
            t = summary["top_position"]
            out.print(f"{summary['videos_with_sinks']} of {len(results)} video(s) have a sink; most attended "
                      f"position over the folder: row {t['row']}, col {t['col']} (the top in "
                      f"{100 * t['share_of_videos_where_it_is_the_top']:.0f}% of videos); top / median "
                      f"{summary['top_over_median']['min']:.1f}-{summary['top_over_median']['max']:.1f}x",
                      highlight=False)
    if png:
        err.print(f"wrote {png}", markup=False)
    for f in failed:
        err.print(f"failed: {f['video']}: {f['error']}", markup=False)
    if not results:
        raise typer.Exit(1)
