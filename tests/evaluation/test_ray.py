"""`stop bench --workers N` on a local Ray: the same rows as the in-process run, and nothing lost or doubled when a
worker or the driver is killed."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stopcli.cli import app
from stopcli.embedded.world import moving_shape_frames, write_video
from stopcli.evaluation.runner import settings_grid

# One machine: Ray listens on loopback (Ray otherwise binds to the LAN address even when asked for 127.0.0.1).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
ray = pytest.importorskip("ray")
runner = CliRunner()
REPO = str(Path(__file__).resolve().parents[2])
GRID = ["--pruners", "holitom,visionzip", "--ratio", "0,0.9"]
SETTINGS = len(settings_grid([0, 0.9], ["holitom", "visionzip"], "both"))  # 5
TOTAL = 5 * SETTINGS  # 5 records


@pytest.fixture(scope="module")
def local_ray():
    path = os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))  # workers import this tree's stopcli
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
             runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray-bench")
    for name, (shape, color, move) in {"a": ("circle", "red", "right"), "b": ("square", "blue", "down"),
                                       "c": ("triangle", "green", "left")}.items():
        write_video(root / f"{name}.mp4", moving_shape_frames(shape, color, move, frames=8, size=96))
    good = (root / "a.mp4").read_bytes()
    (root / "corrupt.mp4").write_bytes(good[: len(good) // 4])
    records = [
        {"video": "a.mp4", "question": "which direction does the red circle move?", "answer": "right"},
        {"video": "b.mp4", "question": "what color is the square?", "answer": "blue"},
        {"video": "c.mp4", "question": "how many objects are there?", "answer": "one"},
        {"video": "corrupt.mp4", "question": "what?", "answer": "yes"},
        {"video": "missing.mp4", "question": "what?", "answer": "no"},
    ]
    (root / "annotations.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return root


def bench(folder, model, output, *extra):
    return runner.invoke(app, ["bench", str(folder), "--model", model, "--frames", "4", "--max-new-tokens", "4",
                               *GRID, "--output", str(output), *map(str, extra)])


def rows_of(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def same(row):
    """What must not depend on the executor (timings do)."""
    return {k: row[k] for k in ("prediction", "correct", "visual_tokens", "error")}


@pytest.fixture(scope="module")
def reference(folder, tiny_model):
    r = bench(folder, tiny_model, folder / "in-process.jsonl")
    assert r.exit_code == 1, r.output  # the corrupt and missing videos fail
    return {row["key"]: row for row in rows_of(folder / "in-process.jsonl")}


def test_two_workers_give_the_in_process_rows_item_by_item(folder, tiny_model, reference, local_ray):
    out = folder / "two.jsonl"
    r = bench(folder, tiny_model, out, "--workers", 2, "--json")
    assert r.exit_code == 1, r.output  # failed items still make the exit code 1
    rows = rows_of(out)
    assert len(rows) == TOTAL and {row["key"] for row in rows} == set(reference)
    for row in rows:
        assert same(row) == same(reference[row["key"]]), row["key"]
    assert sum(row["error"] is None for row in rows) == 3 * SETTINGS
    # a missing or corrupt video under Ray is a failure line with the reason, not a crash
    assert all("not found" in row["error"] for row in rows if row["video"] == "missing.mp4")
    assert all("damaged" in row["error"] or "truncated" in row["error"] for row in rows
               if row["video"] == "corrupt.mp4")
    report = json.loads(r.stdout)
    assert [w["worker"] for w in report["workers"]] == [0, 1]
    assert sum(w["items"] for w in report["workers"]) == TOTAL
    assert sum(w["videos"] for w in report["workers"]) == 5
    assert report["retried"] == 0 and report["failed"] == 2 * SETTINGS


def test_a_published_benchmark_on_two_workers_gives_the_in_process_rows(tmp_path, tiny_model, local_ray):
    # MVBench as shipped: clip bounds, a frame folder, item-level failures, the official prompt and parser; each
    # worker must get the same clip and the same protocol as the in-process loop.
    from benchmark_layouts import mvbench

    folder = mvbench(tmp_path / "MVBench")
    args = ["bench", str(folder), "--benchmark", "mvbench", "--model", tiny_model, "--frames", "4",
            "--max-new-tokens", "4", "--ratio", "0,0.9", "--pruners", "holitom", "--no-stop"]
    here, there = tmp_path / "in-process.jsonl", tmp_path / "ray.jsonl"
    assert runner.invoke(app, [*args, "--output", str(here)]).exit_code == 1  # two items fail, the run goes on
    r = runner.invoke(app, [*args, "--output", str(there), "--workers", "2"])
    assert r.exit_code == 1, r.output
    want = {row["key"]: row for row in rows_of(here)}
    got = {row["key"]: row for row in rows_of(there)}
    assert got.keys() == want.keys() and len(got) == 12
    for key, row in got.items():
        fields = ("prediction", "correct", "parsed", "prompt", "chat", "clip", "protocol", "visual_tokens", "error")
        assert {k: row.get(k) for k in fields} == {k: want[key].get(k) for k in fields}, key
    assert {row["protocol"] for row in got.values()} == {"official"}


def _workers_under(pid: int) -> list[int]:
    """Live Ray processes running a BenchWorker below process `pid`."""
    parents, found = {}, []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parents[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if (d / "cmdline").read_bytes().startswith(b"ray::BenchWorker"):
                    found.append(int(d.name))
            except (OSError, ValueError, IndexError):
                continue
    def below(p):
        while p > 1:
            p = parents.get(p, 0)
            if p == pid:
                return True
        return False
    return [p for p in found if below(p)]


def test_a_worker_killed_mid_run_loses_and_doubles_nothing(folder, tiny_model, reference, local_ray):
    out = folder / "killed.jsonl"
    killed = []

    def kill_one():
        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            if out.exists() and len(out.read_text().splitlines()) >= 2:
                pids = _workers_under(os.getpid())
                if pids:
                    os.kill(pids[0], signal.SIGKILL)
                    killed.append(pids[0])
            time.sleep(0.02)

    killer = threading.Thread(target=kill_one)
    killer.start()
    r = bench(folder, tiny_model, out, "--workers", 2, "--json")
    killer.join()
    assert killed, "no worker was killed"
    assert r.exit_code == 1, r.output
    rows = rows_of(out)
    keys = [row["key"] for row in rows]
    assert len(keys) == TOTAL and set(keys) == set(reference)  # every item exactly once
    for row in rows:  # the killed worker's video ran again elsewhere, to the same answers
        assert same(row) == same(reference[row["key"]]), row["key"]
    report = json.loads(r.stdout)
    assert sum(w["deaths"] for w in report["workers"]) == 1 and report["retried"] == 1
    assert sum(w["items"] for w in report["workers"]) == TOTAL


def test_a_video_that_kills_every_worker_ends_in_failure_lines_and_the_rest_waits_for_resume(
        folder, tiny_model, reference, local_ray, monkeypatch):
    from stopcli.evaluation import distributed as D

    class Poisoned(D.BenchWorker):  # defined here, so Ray ships it by value to the worker processes
        def run(self, clip_key, todo):
            if clip_key[0] == "b.mp4":  # (video, start, end, frame rate)
                os._exit(1)  # the process dies as if out of memory on this one video
            yield from super().run(clip_key, todo)

    monkeypatch.setattr(D, "BenchWorker", Poisoned)
    out = folder / "poisoned.jsonl"
    r = bench(folder, tiny_model, out, "--workers", 1)
    assert r.exit_code == 1
    # one worker, replaced twice: b.mp4 kills it three times, then its items are failure lines with the reason,
    # and with no worker left the videos after it are left unwritten for --resume
    assert "all 1 workers died" in r.stderr and "--resume" in r.stderr and "Traceback" not in r.output, r.stderr
    rows = rows_of(out)
    assert {row["video"] for row in rows} == {"a.mp4", "b.mp4"} and len(rows) == 2 * SETTINGS
    assert all(row["error"] is None for row in rows if row["video"] == "a.mp4")
    assert all(row["error"].startswith("worker died 3 times on this video") for row in rows
               if row["video"] == "b.mp4")
    monkeypatch.undo()
    r = bench(folder, tiny_model, out, "--resume")  # in-process: the file does not care who wrote it
    assert r.exit_code == 1, r.output
    rows = rows_of(out)
    assert len(rows) == TOTAL and {row["key"] for row in rows} == set(reference)
    for row in rows:
        if row["video"] != "b.mp4":  # b's failures stay recorded: --resume does not redo finished items
            assert same(row) == same(reference[row["key"]]), row["key"]


def test_a_worker_that_cannot_see_the_folder_stops_the_run_with_the_reason(folder, tiny_model, local_ray, tmp_path):
    from stopcli.errors import StopError
    from stopcli.evaluation import distributed as D
    from stopcli.evaluation.annotations import load_records

    records = load_records(folder, None, None)
    gone = tmp_path / "only-on-the-driver"
    with pytest.raises(StopError, match="cannot open the folder .*only-on-the-driver.*file system every worker"):
        D.run_bench_ray(D.ModelSpec(tiny_model, device="cpu"), gone, records, settings_grid([0.0], [], "off"),
                        tmp_path / "out.jsonl", frames=4, max_new_tokens=2, skip=set(), workers=2)
    assert not (tmp_path / "out.jsonl").exists()


def test_bad_worker_counts_and_addresses_are_one_line_errors(folder, tiny_model):
    for extra, says in [(("--workers", 0), "--workers must be at least 1"),
                        (("--ray-address", "nowhere"), "must be auto or HOST:PORT"),
                        (("--ray-address", "127.0.0.1:1"), "no Ray cluster answers there"),
                        (("--workers", 2, "--threads-per-worker", 0), "--threads-per-worker must be at least 1")]:
        r = bench(folder, tiny_model, folder / "never.jsonl", *extra)
        assert r.exit_code == 2 and says in r.stderr and len(r.stderr.strip().splitlines()) == 1, (extra, r.stderr)
    assert not (folder / "never.jsonl").exists()


def test_a_run_that_cannot_start_leaves_an_overwritten_file_alone(folder, tiny_model, local_ray):
    kept = folder / "kept.jsonl"
    kept.write_text('{"key": "finished work"}\n')
    r = bench(folder, tiny_model, kept, "--workers", 3, "--overwrite")  # the local Ray has 2 CPUs
    assert r.exit_code == 2 and "--workers 3 needs 3 CPUs, the Ray cluster has 2" in r.stderr, r.stderr
    assert kept.read_text() == '{"key": "finished work"}\n'


def test_driver_killed_then_resumed_answers_every_item_once(folder, tiny_model, reference, local_ray):
    out = folder / "resumed.jsonl"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])))
    cmd = [sys.executable, "-c", "from stopcli.cli import main; main()", "bench", str(folder), "--model", tiny_model,
           "--frames", "4", "--max-new-tokens", "4", *GRID, "--output", str(out), "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 150
    while time.time() < deadline and proc.poll() is None:
        if out.exists() and len(out.read_text().splitlines()) >= 3:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert 3 <= len(rows_of(out)) < TOTAL
    r = bench(folder, tiny_model, out, "--workers", 1, "--resume")
    assert r.exit_code == 1, r.output
    rows = rows_of(out)
    assert len(rows) == TOTAL and {row["key"] for row in rows} == set(reference)
    for row in rows:
        assert same(row) == same(reference[row["key"]]), row["key"]
