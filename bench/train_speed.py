"""Seconds per training step of `stop train` on this machine, for stage 0 and for the joint phase, read off the
training log of a short run (steps after the first `--skip` are timed, so start-up and warm-up are left out).

    python bench/train_speed.py --steps 40 --vision-steps 60 [--set option_weight=1 ...]

Prints a table and writes JSON (default bench/results/train_speed.json). Compare code versions by running the same
command in a worktree of each, back to back on an idle machine: only ratios from one sitting mean anything."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import fields
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from stopcli.embedded.train import TrainConfig, train  # noqa: E402


def per_step(rows: list[dict], skip: int) -> float | None:
    """Seconds per step between log row `skip` and the last row (rows carry cumulative minutes)."""
    rows = [r for r in rows if r["step"] >= skip]
    if len(rows) < 2:
        return None
    return (rows[-1]["minutes"] - rows[0]["minutes"]) * 60 / (rows[-1]["step"] - rows[0]["step"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=40, help="joint steps")
    ap.add_argument("--vision-steps", type=int, default=60, help="stage-0 steps (0: none)")
    ap.add_argument("--skip", type=int, default=10, help="steps left out of the timing at the start of each stage")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="any TrainConfig field, e.g. option_weight=1 or keep_choices=0.25 (repeatable)")
    ap.add_argument("--out", default="bench/results/train_speed.json")
    args = ap.parse_args()
    kinds = {f.name: f.type for f in fields(TrainConfig)}
    settings = dict(steps=args.steps, vision_steps=args.vision_steps, log_every=1, eval_every=10 ** 6, seed=0)
    for item in args.set:
        name, _, value = item.partition("=")
        if name not in kinds:
            sys.exit(f"error: --set {item}: no TrainConfig field {name!r}")
        settings[name] = (tuple(float(v) for v in value.split(",")) if name == "keep_choices"
                          else float(value) if "." in value or "e" in value else int(value))
    with tempfile.TemporaryDirectory() as tmp:
        train(tmp, TrainConfig(**settings), log=lambda line: None)
        rows = [json.loads(line) for line in (Path(tmp) / "training_log.jsonl").read_text().splitlines()]
    vision = per_step([r for r in rows if r.get("stage") == "vision"], args.skip)
    joint = per_step([r for r in rows if "stage" not in r], args.skip)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    result = dict(commit=commit, settings=settings, seconds_per_vision_step=vision, seconds_per_joint_step=joint)
    table = Table(title=f"training step price at {commit}")
    for col in ("stage", "steps timed", "s / step"):
        table.add_column(col)
    table.add_row("stage 0", str(max(0, args.vision_steps - args.skip)), f"{vision:.3f}" if vision else "-")
    table.add_row("joint", str(max(0, args.steps - args.skip)), f"{joint:.3f}" if joint else "-")
    Console().print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
