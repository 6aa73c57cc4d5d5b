"""How long the command line takes to answer `--help`, a listing and an argument error, and what it imports.

    python bench/cli_start.py [--repeat 5] [--tree PATH ...]

Each probe runs in a fresh interpreter: `python -X importtime -c "<run stop ARGS>"`, so the numbers are the import
cost a user pays on every call. `--tree` measures another checkout too (e.g. a worktree of an older commit), in the
same run, so the two can be compared as a ratio. Prints a table and writes bench/results/cli_start.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBES = {
    "stop --help": ["--help"],
    "stop presets": ["presets"],
    "stop ask (bad ratio)": ["ask", "samples/red_circle.mp4", "q", "--ratio", "1.5"],
}

RUN = """
import sys
from stopcli.cli import main
sys.argv = ["stop", *{args!r}]
try:
    main()
except SystemExit:
    pass
"""


def probe(tree: Path, args: list[str]) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree))
    start = time.perf_counter()
    r = subprocess.run([sys.executable, "-X", "importtime", "-c", RUN.format(args=args)], capture_output=True,
                       text=True, cwd=tree, env=env)
    wall = time.perf_counter() - start
    entries = [(len(m.group(3)) - len(m.group(3).lstrip()), m.group(3).strip(), int(m.group(2)))
               for m in re.finditer(r"^import time:\s+(\d+) \|\s+(\d+) \| (.*)$", r.stderr, re.M)]
    names = {name for _, name, _ in entries}
    # Top-level entries (no indentation) hold their children's time in their cumulative column.
    return dict(wall_s=wall, torch="torch" in names, transformers="transformers" in names,
                import_s=sum(us for depth, _, us in entries if depth == 0) / 1e6)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--tree", action="append", default=[], help="another checkout to measure beside this one")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "cli_start.json"))
    args = ap.parse_args()
    trees = [ROOT] + [Path(t).resolve() for t in args.tree]
    rows = []
    for name, argv in PROBES.items():
        for tree in trees:
            runs = [probe(tree, argv) for _ in range(args.repeat)]
            rows.append(dict(probe=name, tree=str(tree), wall_s=statistics.median(r["wall_s"] for r in runs),
                             import_s=statistics.median(r["import_s"] for r in runs), torch=runs[0]["torch"],
                             transformers=runs[0]["transformers"]))
    print(f"{'probe':<24} {'tree':<28} {'wall s':>7} {'import s':>9} torch transformers")
    for r in rows:
        print(f"{r['probe']:<24} {Path(r['tree']).name[:28]:<28} {r['wall_s']:7.2f} {r['import_s']:9.2f} "
              f"{'yes' if r['torch'] else 'no':>5} {'yes' if r['transformers'] else 'no':>12}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(dict(repeat=args.repeat, rows=rows), indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
