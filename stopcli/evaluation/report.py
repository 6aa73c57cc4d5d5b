"""`stop report`: the paper's table from result lines, each benchmark aggregated the way it reports, PDR against
the unpruned rows of the same results, optionally re-scored under another protocol's parser.

PDR (performance drop rate) = (score at ratio 0 - score) / score at ratio 0, per benchmark, then macro-averaged
over the fine-grained group (EventHallusion, VideoComp) and the MCQA group (Video-MME, MVBench, MLVU); lower is
better."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from ..errors import UsageError
from .benchmarks import BENCHMARKS, PROTOCOLS, aggregate
from .benchmarks.base import pooled, result, tally
from .scoring import score_row

GENERIC = "generic"
PDR_GROUPS = ("fine-grained", "mcqa")


def load_rows(paths: list[Path]) -> list[dict]:
    """The result lines of every file, each tagged with the model of its run (from RESULTS.meta.json) so that runs
    of several backbones make one table; a line seen twice (the same file passed twice) counts once."""
    rows: dict[tuple, dict] = {}
    for path in paths:
        if not path.is_file():
            raise UsageError(f"results file not found: {path}")
        meta_path = path.with_suffix(".meta.json")
        try:
            model = json.loads(meta_path.read_text()).get("model") if meta_path.is_file() else None
        except (OSError, json.JSONDecodeError, AttributeError):
            model = None
        got = []
        for line in path.read_text().splitlines():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a kill
                continue
            if isinstance(r, dict) and "key" in r and "ratio" in r:
                r.setdefault("model", model)
                got.append(r)
        if not got:
            raise UsageError(f"no result lines in {path}")
        rows.update({(r["model"], r["key"]): r for r in got})
    return list(rows.values())


def rescore(rows: list[dict], protocol: str | None) -> list[dict]:
    """The rows with parsed/correct/scored recomputed under `protocol` (None: each row's own protocol)."""
    if protocol is not None and protocol not in PROTOCOLS:
        raise UsageError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    out = []
    for r in rows:
        r = dict(r)
        if r.get("error") is None and r.get("prediction") is not None:
            r.update(score_row(r, _protocol_for(r.get("benchmark"), protocol, r.get("protocol"))))
        out.append(r)
    return out


def _protocol_for(name: str | None, asked: str | None, ran: str | None) -> str | None:
    """`asked` where the benchmark has it, else the protocol the line was run with (EventHallusion has no
    lmms-eval task, VideoComp one scorer)."""
    if name not in BENCHMARKS:
        return None
    if asked is not None and asked in BENCHMARKS[name].PROTOCOLS:
        return asked
    return ran or "official"


def _generic(rows: list[dict], protocol: str) -> dict:
    groups = tally(rows, lambda r: r.get("type") or "-")
    return result("generic", protocol, pooled(groups)["accuracy"], "accuracy over all questions", groups)


def method(pruner: str, stop: bool, sink_score: str | None = None) -> str:
    name = "no pruning" if pruner == "none" else pruner + (" + SToP" if stop else "")
    return name + (f" ({sink_score})" if stop and sink_score else "")


def _score_of(row: dict) -> str | None:
    """The sink score of a SToP row when it is not the authors' min-max (None otherwise): a setting of its own."""
    score = row.get("sink_score")
    return score if row.get("stop") and score not in (None, "minmax") else None


def report(rows: list[dict], protocol: str | None = None) -> dict:
    """Per setting (ratio, pruner, SToP) and benchmark: the benchmark's aggregate; per setting: PDR per benchmark
    and per group against the ratio-0 rows."""
    rows = rescore(rows, protocol)
    used = sorted({r.get("protocol") for r in rows if r.get("benchmark")} - {None})
    label = protocol or (used[0] if len(used) == 1 else ", ".join(used) if used else "generic scorer")
    names = list(dict.fromkeys(r.get("benchmark") or GENERIC for r in rows))
    names.sort(key=lambda n: list(BENCHMARKS).index(n) if n in BENCHMARKS else len(BENCHMARKS))
    models = list(dict.fromkeys(r.get("model") for r in rows))
    by: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        by[(r.get("model"), float(r["ratio"]), r["pruner"], bool(r["stop"]), _score_of(r),
            r.get("benchmark") or GENERIC)].append(r)
    settings = sorted({k[:5] for k in by},
                      key=lambda k: (models.index(k[0]), k[1], k[2] != "none", k[2], k[3], k[4] or ""))
    table = []
    for model, ratio, pruner, stop, score in settings:
        results = {}
        for n in names:
            items = by.get((model, ratio, pruner, stop, score, n))
            if items:
                p = _protocol_for(n, protocol, items[0].get("protocol"))
                results[n] = aggregate(n, items, p) if n in BENCHMARKS else _generic(items, "generic")
        name = method(pruner, stop, score)
        shown = name if len(models) == 1 else f"{_short(model)} · {name}"
        table.append(dict(model=model, ratio=ratio, pruner=pruner, stop=stop, sink_score=score, method=shown,
                          results=results))
    bases = {t["model"]: t for t in table if t["ratio"] == 0}  # PDR: each model against its own unpruned run
    for t in table:
        t["pdr"], t["pdr_groups"] = {}, {}
        base = bases.get(t["model"])
        if base is None or t["ratio"] == 0:
            continue
        for n, res in t["results"].items():
            ref = base["results"].get(n, {}).get("score")
            if ref and res.get("score") is not None:
                t["pdr"][n] = (ref - res["score"]) / ref
        for g in PDR_GROUPS:
            vals = [v for n, v in t["pdr"].items() if n in BENCHMARKS and BENCHMARKS[n].GROUP == g]
            if vals:
                t["pdr_groups"][g] = sum(vals) / len(vals)
    return dict(protocol=label, asked=protocol, benchmarks=names, models=models, settings=table,
                has_unpruned=all(m in bases for m in models))


def _short(model: str | None) -> str:
    return "?" if model is None else model.rstrip("/").split("/")[-1]


def _title(name: str) -> str:
    return BENCHMARKS[name].TITLE if name in BENCHMARKS else name


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def tables(rep: dict) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) for the main table and one detail table per benchmark with its groups."""
    names = rep["benchmarks"]
    groups = [g for g in PDR_GROUPS if any(g in t["pdr_groups"] for t in rep["settings"])]
    header = ["ratio", "method"] + [_title(n) for n in names] + [f"PDR {_title(n)}" for n in names] + \
        [f"PDR {g}" for g in groups]
    body = []
    for t in rep["settings"]:
        body.append([f"{t['ratio']:g}", t["method"]] + [_pct(t["results"].get(n, {}).get("score")) for n in names] +
                    [_pct(t["pdr"].get(n)) for n in names] + [_pct(t["pdr_groups"].get(g)) for g in groups])
    out = [(f"protocol: {rep['protocol']}  (accuracy %, PDR %: lower is better)", header, body)]
    for n in names:
        cols: list[str] = []
        for t in rep["settings"]:
            for g in t["results"].get(n, {}).get("groups", {}):
                if g not in cols:
                    cols.append(g)
        if len(cols) < 2:
            continue
        rows = []
        for t in rep["settings"]:
            res = t["results"].get(n)
            if res is None:
                continue
            rows.append([f"{t['ratio']:g}", t["method"], _pct(res["score"])] +
                        [_pct(res["groups"].get(g, {}).get("accuracy")) for g in cols] +
                        [str(res["scored"]), str(res["excluded"]), str(res["failed"]), str(res["judge"])])
        how = next(t["results"][n]["score_name"] for t in rep["settings"] if n in t["results"])
        out.append((f"{_title(n)}: {how}",
                    ["ratio", "method", "score"] + cols + ["scored", "excluded", "failed", "judge"], rows))
    return out


def notes(rep: dict) -> list[str]:
    """One line per benchmark with items that were run but not scored, and when PDR could not be computed."""
    lines = []
    for n in rep["benchmarks"]:
        judged = sum(t["results"].get(n, {}).get("judge", 0) for t in rep["settings"])
        if judged:
            note = next(t["results"][n]["judge_note"] for t in rep["settings"] if t["results"].get(n, {}).get("judge"))
            lines.append(f"{_title(n)}: {judged} replies kept, {note}")
        empty = sum(t["results"].get(n, {}).get("empty", 0) for t in rep["settings"])
        if empty:
            lines.append(f"{_title(n)}: {empty} empty replies (each protocol scores them its own way: see "
                         "docs/benchmarks.md)")
        kept = {t["results"][n]["protocol"] for t in rep["settings"] if n in t["results"]}
        if n in BENCHMARKS and rep["asked"] and rep["asked"] not in kept:
            lines.append(f"{_title(n)} has no {rep['asked']} protocol: scored as run ({', '.join(sorted(kept))})")
    if not rep["has_unpruned"]:
        lines.append("no ratio-0 rows in these results: PDR needs the unpruned run of the same model")
    return lines


def markdown(rep: dict) -> str:
    parts = []
    for title, header, rows in tables(rep):
        parts.append(f"**{title}**\n")
        parts.append("| " + " | ".join(header) + " |")
        parts.append("|" + "|".join("---" if i < 2 else "---:" for i in range(len(header))) + "|")
        parts.extend("| " + " | ".join(r) + " |" for r in rows)
        parts.append("")
    parts.extend(f"- {line}" for line in notes(rep))
    return "\n".join(parts).rstrip() + "\n"


def to_json(rep: dict) -> str:
    return json.dumps(rep, indent=2)


def plot(rep: dict, path: Path) -> Path:
    """Headline score against ratio, one panel per benchmark, one line per model and method (each line starts at
    its model's ratio-0 point)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = rep["benchmarks"]
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.8), squeeze=False)
    def line(t: dict) -> tuple:
        return t["model"], t["pruner"], t["stop"], t.get("sink_score")

    lines = list(dict.fromkeys(line(t) for t in rep["settings"] if t["ratio"] > 0))
    for ax, n in zip(axes[0], names):
        for key in lines:
            model, stop = key[0], key[2]
            base = [t for t in rep["settings"] if t["ratio"] == 0 and t["model"] == model]
            pts = base + sorted((t for t in rep["settings"] if line(t) == key), key=lambda t: t["ratio"])
            ys = [t["results"].get(n, {}).get("score") for t in pts]
            ax.plot([t["ratio"] for t in pts], [100 * y if y is not None else float("nan") for y in ys],
                    "-" if stop else "--", marker="o", label=pts[-1]["method"])
        ax.set(title=_title(n), xlabel="ratio (fraction of visual tokens dropped)", ylabel="score %")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
