"""Commands of the embedded model's world: write synthetic videos, train the tiny model."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Optional

import typer

from ..errors import UsageError
from .common import app, err, number, out, quiet_transformers, split, user_errors


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
    from ..embedded.world import generate

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
    """Train the embedded tiny model on the synthetic world (CPU; see stopcli/embedded/train.py)."""
    from ..embedded.train import TrainConfig
    from ..embedded.train import train as run_training

    chosen = dict(steps=steps, batch=batch, seed=seed, threads=threads, lr=lr, warmup=warmup,
                  keep_choices=tuple(number(k, "--keep-choices") for k in split(keep_choices, "--keep-choices")),
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
    quiet_transformers()
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
