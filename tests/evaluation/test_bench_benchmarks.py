"""`stop bench --benchmark` and `stop report` through the real CLI: end to end on the embedded model for
EventHallusion and MVBench, re-scoring, the paper's table, and one-line errors for bad folders and arguments."""

import json

import pytest
from typer.testing import CliRunner

from benchmark_layouts import eventhallusion, mvbench, row, videomme
from stopcli.cli import app
from stopcli.evaluation import benchmarks as BM

runner = CliRunner()
SMALL = ["--frames", "4", "--max-new-tokens", "4", "--pruners", "holitom", "--no-stop"]


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_eventhallusion_end_to_end_on_the_embedded_model(tmp_path):
    folder = eventhallusion(tmp_path / "EventHallusion")
    r = runner.invoke(app, ["bench", str(folder), *SMALL, "--ratio", "0.9", "--json"])  # layout detected
    assert r.exit_code == 0, r.output
    rows = lines(folder / "stop-results.jsonl")
    assert len(rows) == 7 and all(x["error"] is None for x in rows)
    assert {x["protocol"] for x in rows} == {"official"} and {x["benchmark"] for x in rows} == {"eventhallusion"}
    binary = [x for x in rows if not x["judge"]]
    assert all(x["prompt"].endswith("\nPlease answer yes or no:") and x["prompt"] in x["chat"] for x in binary)
    for x in binary:  # the verdict stored is the official parser's on the raw reply
        assert x["correct"] == BM.score(x, "official")["correct"]
    meta = json.loads((folder / "stop-results.meta.json").read_text())
    assert (meta["benchmark"], meta["protocol"], meta["frames"]) == ("eventhallusion", "official", 4)
    rep = json.loads(r.stdout)["report"]
    eh = rep["settings"][0]["results"]["eventhallusion"]
    assert eh["judge"] == 3 and eh["scored"] == 4 and set(eh["groups"]) == {"entire", "interleave", "misleading"}
    assert eh["score"] == pytest.approx(sum(x["correct"] for x in binary) / 4) and not rep["has_unpruned"]

    md = runner.invoke(app, ["report", str(folder / "stop-results.jsonl"), "--markdown"])
    assert md.exit_code == 0, md.output
    assert "| ratio | method | EventHallusion |" in md.stdout and "| 0.9 | holitom |" in md.stdout
    assert "descriptions: not scored (judge needed)" in md.stdout and "PDR needs the unpruned run" in md.stdout
    # re-scored under the authors' parser without generating: same replies, their verdicts
    again = runner.invoke(app, ["report", str(folder / "stop-results.jsonl"), "--protocol", "authors", "--json"])
    rep2 = json.loads(again.stdout)
    want = sum(BM.score(x, "authors")["correct"] for x in binary) / 4
    assert rep2["protocol"] == "authors"
    assert rep2["settings"][0]["results"]["eventhallusion"]["score"] == pytest.approx(want)
    lm = runner.invoke(app, ["report", str(folder / "stop-results.jsonl"), "--protocol", "lmms-eval"])
    assert lm.exit_code == 0 and "EventHallusion has no lmms-eval protocol: scored as run (official)" in lm.stdout
    # --resume under another protocol would mix prompts in one file
    bad = runner.invoke(app, ["bench", str(folder), *SMALL, "--ratio", "0.9", "--resume", "--protocol", "authors"])
    assert bad.exit_code == 2 and "protocol=official" in bad.stderr


def test_mvbench_end_to_end_with_frames_bounds_and_failures(tmp_path):
    folder = mvbench(tmp_path / "MVBench")
    r = runner.invoke(app, ["bench", str(folder), "--benchmark", "mvbench", *SMALL, "--ratio", "0.9", "--json",
                            "--plot", str(tmp_path / "mvbench.png")])
    assert r.exit_code == 1, r.output  # two items fail, the run goes on
    rows = {x["key"].split("::")[-1].split("@")[0]: x for x in lines(folder / "stop-results.jsonl")}
    assert len(rows) == 6
    assert "not among the candidates" in rows["fine_grained_pose/0"]["error"]
    assert "frame folder has no frames" in rows["episodic_reasoning/1"]["error"]
    frames = rows["episodic_reasoning/0"]
    assert frames["error"] is None and frames["clip"] == {"start": 0.0, "end": 3.0, "frame_rate": 3.0}
    seq = rows["action_sequence/0"]
    assert seq["clip"]["end"] == 0.75 and seq["visual_tokens"]["before"] > 0
    assert seq["chat"].endswith("<|im_start|>assistant\nBest option:(")  # the prefix after the generation prompt
    assert seq["chat"].startswith("<|im_start|>system\nCarefully watch the video")  # the system turn
    rep = json.loads(r.stdout)["report"]["settings"][0]["results"]["mvbench"]
    assert rep["failed"] == 2 and rep["scored"] == 4 and rep["score_name"] == "mean of task accuracies"
    assert (tmp_path / "mvbench.png").stat().st_size > 1000


def test_report_table_from_hand_written_rows(tmp_path):
    folder = videomme(tmp_path / "Video-MME", videos=False)
    recs = BM.load("videomme", folder, "official")
    rows = [row(r, r.answer, "official") for r in recs]  # 3/3 unpruned
    rows += [row(r, r.answer if i == 0 else "Z is wrong", "official", 0.9, "visionzip", True)
             for i, r in enumerate(recs)]
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(x) + "\n" for x in rows))
    r = runner.invoke(app, ["report", str(results), "--json", "--plot", str(tmp_path / "table.png")])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    pruned = rep["settings"][1]
    # official: "Z is wrong" has no A-D letter: unparsed, left out of the denominator -> 1/1
    assert pruned["results"]["videomme"]["score"] == 1.0 and pruned["results"]["videomme"]["excluded"] == 2
    lm = json.loads(runner.invoke(app, ["report", str(results), "--json", "--protocol", "lmms-eval"]).stdout)
    assert lm["settings"][1]["results"]["videomme"]["score"] == pytest.approx(1 / 3)
    assert lm["settings"][1]["pdr"]["videomme"] == pytest.approx(2 / 3)
    assert lm["settings"][1]["pdr_groups"]["mcqa"] == pytest.approx(2 / 3)
    text = runner.invoke(app, ["report", str(results), "--protocol", "lmms-eval"]).stdout
    assert "visionzip + SToP" in text and "66.7" in text and "33.3" in text
    assert (tmp_path / "table.png").stat().st_size > 1000


@pytest.mark.parametrize("args, message", [
    (["bench", "{empty}", "--benchmark", "mvbench"], "no MVBench task files"),
    (["bench", "{empty}"], "matches no benchmark layout"),
    (["bench", "{empty}", "--benchmark", "nope"], "unknown benchmark 'nope'"),
    (["bench", "{empty}", "--protocol", "nope"], "--protocol must be one of"),
    (["bench", "{nextqa}", "--benchmark", "nextqa", "--split", "test"], "NExT-QA split file missing"),
    (["report", "{empty}/missing.jsonl"], "results file not found"),
    (["report", "{empty}/empty.jsonl"], "no result lines"),
    (["report", "{empty}/empty.jsonl", "--protocol", "nope"], "--protocol must be one of"),
])
def test_bad_folders_and_arguments_are_one_line_usage_errors(tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "empty.jsonl").write_text("not json\n")
    (tmp_path / "nextqa" / "dataset" / "nextqa").mkdir(parents=True)
    (tmp_path / "nextqa" / "dataset" / "nextqa" / "val.csv").write_text("video,question\n")
    args = [a.format(empty=tmp_path / "empty", nextqa=tmp_path / "nextqa") for a in args]
    r = runner.invoke(app, args)
    assert r.exit_code == 2, r.output
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_report_on_generic_rows_uses_the_generic_scorer(tmp_path):
    q = "what moves? (a) a circle (b) a square"
    rows = [dict(key=f"k{i}@{ratio:g}/none/base", video="v.mp4", question=q, answer="a", options=None, type="mc",
                 prediction=pred, correct=None, ratio=ratio, pruner="none" if ratio == 0 else "holitom", stop=False,
                 error=None)
            for i, (ratio, pred) in enumerate([(0.0, "(a)"), (0.0, "A."), (0.9, "(b)"), (0.9, "a")])]
    path = tmp_path / "generic.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rep = json.loads(runner.invoke(app, ["report", str(path), "--json"]).stdout)
    assert rep["benchmarks"] == ["generic"]
    assert [t["results"]["generic"]["score"] for t in rep["settings"]] == [1.0, 0.5]  # gold "a" is a letter
    assert rep["settings"][1]["pdr"]["generic"] == pytest.approx(0.5)


def test_report_over_two_backbones_keeps_them_apart(tmp_path):
    folder = videomme(tmp_path / "Video-MME", videos=False)
    recs = BM.load("videomme", folder, "official")
    paths = []
    for model, right in (("org/model-a", (3, 2)), ("org/model-b", (2, 2))):  # questions right at ratio 0 / 0.9
        rows = [row(r, r.answer if i < right[0] else "D", "official") for i, r in enumerate(recs)]
        rows += [row(r, r.answer if i < right[1] else "D", "official", 0.9, "holitom", True)
                 for i, r in enumerate(recs)]
        path = tmp_path / f"{model.split('/')[1]}.jsonl"
        path.write_text("".join(json.dumps(x) + "\n" for x in rows))
        path.with_suffix(".meta.json").write_text(json.dumps(dict(model=model, protocol="official")))
        paths.append(str(path))
    r = runner.invoke(app, ["report", *paths, paths[0], "--json"])  # the first file twice: counted once
    rep = json.loads(r.stdout)
    assert rep["models"] == ["org/model-a", "org/model-b"] and len(rep["settings"]) == 4
    got = {(t["model"], t["ratio"]): (t["results"]["videomme"]["score"], t["pdr"].get("videomme"))
           for t in rep["settings"]}
    assert got[("org/model-a", 0.9)] == (pytest.approx(2 / 3), pytest.approx(1 / 3))  # against model-a's 3/3
    assert got[("org/model-b", 0.9)] == (pytest.approx(2 / 3), pytest.approx(0.0))  # against model-b's 2/3
    assert got[("org/model-a", 0.0)][0] == 1.0 and rep["settings"][1]["method"] == "model-a · holitom + SToP"


def test_report_keeps_sink_scores_apart(tmp_path):
    # One run with min-max and robust SToP rows at the same ratio: two settings, not one pooled row.
    q = "what moves? (a) a circle (b) a square"
    grid = [(0.0, "none", False, None, "(a)"), (0.9, "holitom", True, "minmax", "(b)"),
            (0.9, "holitom", True, "robust", "(a)")]
    rows = [dict(key=f"k@{ratio:g}/{pruner}/{score}", video="v.mp4", question=q, answer="a", options=None, type="mc",
                 prediction=pred, correct=None, ratio=ratio, pruner=pruner, stop=stop, sink_score=score, error=None)
            for ratio, pruner, stop, score, pred in grid]
    path = tmp_path / "scores.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rep = json.loads(runner.invoke(app, ["report", str(path), "--json"]).stdout)
    got = {t["method"]: t["results"]["generic"]["score"] for t in rep["settings"]}
    assert got == {"no pruning": 1.0, "holitom + SToP": 0.0, "holitom + SToP (robust)": 1.0}
