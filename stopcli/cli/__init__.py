"""The `stop` command line: parse, call the library, render. Nothing else lives here.

One module per group of commands; each registers its commands on the one `app`. Importing the command line loads
neither torch nor transformers: each command imports the library when it runs, after checking its arguments, so that
`stop --help` and argument errors answer at once."""

from __future__ import annotations

import sys

from . import answer, bench, embedded, report, sinks  # noqa: F401  (registers the commands)
from .common import app, err

__all__ = ["app", "main"]


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
