"""What every command shares: the consoles, one-line user errors, and the few steps each command takes the same
way (counting frames, decoding, loading a backbone, drawing kept tokens)."""

from __future__ import annotations

import functools
import sys
import time
from pathlib import Path

import typer
from rich.console import Console

from ..errors import StopError, UsageError
from ..pruners import WRAPPABLE
SINK_HELP = ("SToP's sink score: minmax (the authors'), robust (only positions that are sinks) or gated (min-max on "
             "videos with a sink); default: the preset's. See docs/sinks.md.")

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


def quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def counts(p, frames: int | None, max_new_tokens: int | None) -> tuple[int, int]:
    n_frames = frames if frames is not None else p.frames
    if n_frames < 1:
        raise UsageError("--frames must be at least 1")
    new_tokens = max_new_tokens if max_new_tokens is not None else p.max_new_tokens
    if new_tokens < 1:
        raise UsageError("--max-new-tokens must be at least 1")
    return n_frames, new_tokens


def decode(video: Path, n_frames: int, fps, start, end):
    from ..video import read_video

    t0 = time.perf_counter()
    clip = read_video(video, num_frames=n_frames, fps=fps, start=start, end=end)
    return clip, (time.perf_counter() - t0) * 1000


def load(p, origin, model: str | None, device: str | None, dtype: str | None, trust_remote_code: bool):
    from .. import pipeline

    dev, dt = pipeline.auto_device(device, dtype)
    quiet_transformers()
    backbone = pipeline.load_backbone(model or p.resolved_model(origin), dev, dt, trust_remote_code)
    if model is None and p.model.startswith("stopcli:"):
        backbone.name = p.model
    return backbone


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def draw(clip, encoded, pruner: str, ratio: float, path: Path, model: str, mu_s=None, mu_t=None,
          show_frames: int = 8, sink_score: str = "minmax") -> None:
    from ..show import show as draw_png

    if pruner not in WRAPPABLE:
        raise UsageError(f"--show needs a pruner SToP can wrap ({', '.join(WRAPPABLE)}), not {pruner!r}")
    draw_png(clip.frames, encoded.encoded.tokens, pruner, ratio if ratio > 0 else 0.9, path, model, show_frames,
         mu_s, mu_t, sink_score)
    err.print(f"wrote {path}", markup=False)


def split(text: str, what: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise UsageError(f"{what} must not be empty")
    return items


def number(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"{what}: not a number: {text!r}") from None
