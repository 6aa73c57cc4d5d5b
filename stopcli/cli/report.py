"""`stop report`: the paper's table from one or more results files, optionally re-scored under another protocol."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from ..errors import UsageError
from ..evaluation.benchmarks import PROTOCOLS
from .common import app, err, out, user_errors


def print_report(rep: dict) -> None:
    from ..evaluation.report import notes, tables

    for title, header, rows in tables(rep):
        table = Table(title=title, title_justify="left")
        for i, col in enumerate(header):
            table.add_column(col, justify="left" if i < 2 else "right")
        for r in rows:
            table.add_row(*r)
        out.print(table)
    for line in notes(rep):
        out.print(line, markup=False)


@app.command()
@user_errors
def report(
    results: List[Path] = typer.Argument(..., help="Results files (JSONL) written by stop bench."),
    protocol: Optional[str] = typer.Option(None, "--protocol", help="Re-score with this protocol's parser: "
                                           "official, lmms-eval or authors (default: the protocol each run used)."),
    as_markdown: bool = typer.Option(False, "--markdown", help="Print Markdown tables."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write score vs ratio per benchmark as a PNG."),
) -> None:
    """Each benchmark aggregated as it reports (per split / task / duration), PDR against the unpruned rows, as the
    paper's table: rows are methods with and without SToP per ratio, columns benchmarks and their sub-scores."""
    if protocol is not None and protocol not in PROTOCOLS:
        raise UsageError(f"--protocol must be one of {', '.join(PROTOCOLS)}")
    if as_markdown and as_json:
        raise UsageError("--markdown and --json cannot be combined")
    missing = [str(p) for p in results if not p.is_file()]
    if missing:
        raise UsageError(f"results file not found: {missing[0]}")
    from ..evaluation import report as R

    rep = R.report(R.load_rows(results), protocol)
    if plot is not None:
        R.plot(rep, plot)
        err.print(f"wrote {plot}", markup=False)
    if as_json:
        typer.echo(R.to_json(rep))
    elif as_markdown:
        typer.echo(R.markdown(rep), nl=False)
    else:
        print_report(rep)
