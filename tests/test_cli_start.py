"""The command line answers help, listings and argument errors without loading torch, transformers or ray."""

import subprocess
import sys

import pytest

PROBE = """
import sys
from stopcli.cli import main
sys.argv = ["stop", *{args!r}]
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print("loaded:", sorted(m for m in ("torch", "transformers", "ray") if m in sys.modules), "exit:", code, file=sys.stderr)
"""


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROBE.format(args=list(args))], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("args, code", [
    (("--help",), 0),
    (("ask", "--help"), 0),
    (("bench", "--help"), 0),
    (("presets",), 0),
    (("ask", "samples/red_circle.mp4", "q", "--ratio", "1.5"), 2),
    (("ask", "samples/red_circle.mp4", "q", "--pruner", "nope"), 2),
    (("compare", "samples/red_circle.mp4", "q", "--pruners", "visionzip,nope"), 2),
    (("bench", "samples", "--ratio", "0,2"), 2),
    (("bench", "samples", "--protocol", "nope"), 2),
    (("bench", "samples", "--benchmark", "nope"), 2),
    (("bench", "samples", "--benchmark", "mvbench"), 2),
    (("report", "--help"), 0),
    (("report", "no-such-results.jsonl"), 2),
    (("bench", "samples", "--workers", "0"), 2),
    (("bench", "samples", "--workers", "2", "--ray-address", "nowhere"), 2),
    (("bench", "samples", "--workers", "2", "--threads-per-worker", "0"), 2),
    (("show", "samples/red_circle.mp4", "--ratio", "0"), 2),
    (("ask", "samples/red_circle.mp4", "q", "--preset", "no-such-preset"), 2),
    (("ask", "samples/red_circle.mp4", "q", "--sink-score", "zscore"), 2),
    (("compare", "samples/red_circle.mp4", "q", "--sink-score", "nope"), 2),
    (("show", "samples/red_circle.mp4", "--sink-score", "nope"), 2),
    (("bench", "samples", "--sink-score", "robust,nope"), 2),
    (("sinks", "--help"), 0),
    (("sinks", "samples", "--ratio", "2"), 2),
    (("sinks", "no/such/folder"), 2),
    (("sinks", "samples", "--pruners", "uniform"), 2),
    (("sinks", "samples", "--out", "heat.jpg"), 2),
])
def test_help_listings_and_argument_errors_import_no_torch(args, code):
    r = run(*args)
    assert f"loaded: [] exit: {code}" in r.stderr, r.stderr[-2000:]


def test_pruner_names_are_the_registry():
    import stopcli.pruners as P

    assert tuple(P.PRUNERS) == P.NAMES
    assert all(callable(cls) for cls in P.PRUNERS.values())
    with pytest.raises(KeyError, match="unknown pruner 'nope'"):
        P.get_pruner("nope")
