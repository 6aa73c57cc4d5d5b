"""`stop bench --workers N`: the bench's per-video work (`runner.run_video`) on N model replicas as Ray actors.

The driver plans the work, hands one video at a time to each idle worker, receives that video's rows as a stream
(one per finished item) and is the only writer of the results file, so `--resume`, failure lines and the durability
of each line are exactly those of the in-process run. A worker that dies mid-video is replaced (at most `retries`
times per worker) and the items of its video not yet received run again on a live worker, at most `retries` more
times; then they are failure lines naming the reason. When no worker is left the run stops with the items it could
not run unwritten, so `--resume` runs them later. Ray is imported by this module only, and only
`--workers`/`--ray-address` import this module."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import ray
import ray.exceptions as rx

from ..errors import StopError, UsageError
from .annotations import Record
from .runner import ResultWriter, Setting, failure_row, item_key, plan, run_video

# What Ray raises when the process running a worker is gone (killed, out of memory, node lost).
WORKER_LOST = tuple(getattr(rx, n) for n in ("RayActorError", "WorkerCrashedError", "OutOfMemoryError",
                                               "NodeDiedError", "ObjectLostError") if hasattr(rx, n))


@dataclass(frozen=True)
class ModelSpec:
    """What each worker loads: the model path must be readable on every node (or a hub id each node can fetch)."""

    path: str
    name: str | None = None
    device: str | None = None
    dtype: str | None = None
    trust_remote_code: bool = False


def check_address(address: str) -> None:
    """Refuse an address nothing answers at before handing it to ray.init, which retries a dead one for minutes."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except (OSError, ValueError) as exc:
        raise UsageError(f"--ray-address {address}: no Ray cluster answers there "
                         f"({getattr(exc, 'strerror', None) or exc}); start one with `ray start --head` and pass the "
                         f"address it prints") from None


def connect(address: str | None) -> bool:
    """Join the cluster at `address`, or start a local Ray; True when this call started Ray (and should stop it).
    A Ray already initialised in this process (a notebook, the tests) is used as it is."""
    if address is not None:
        check_address(address)
    if ray.is_initialized():
        return False
    # Workers import the driver's stopcli: a local Ray inherits PYTHONPATH, so point it at this very package.
    here = str(Path(__file__).resolve().parents[2])
    env = {"PYTHONPATH": os.pathsep.join([here, *filter(None, [os.environ.get("PYTHONPATH")])])}
    try:
        local = {} if address else dict(runtime_env={"env_vars": env})
        ray.init(address=address, include_dashboard=False if address is None else None, log_to_driver=False,
                 logging_level=logging.ERROR, **local)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UsageError(f"--ray-address {address}: cannot join the Ray cluster: "
                         f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    return True


def disconnect() -> None:
    ray.shutdown()


def use_gpus(device: str | None) -> bool:
    """One GPU per worker when the cluster has GPUs, unless --device cpu."""
    have = ray.cluster_resources().get("GPU", 0)
    if device == "cuda" and not have:
        raise UsageError("--device cuda: the Ray cluster has no GPUs")
    return device != "cpu" and have > 0


def default_workers(gpus: bool) -> int:
    """--ray-address without --workers: one worker per GPU of the cluster, or one on a cluster without GPUs."""
    return int(ray.cluster_resources().get("GPU", 0)) if gpus else 1


def _problem_with_folder(folder: Path) -> str | None:
    if not folder.is_dir() or not os.access(folder, os.R_OK | os.X_OK):
        return (f"worker on {socket.gethostname()} cannot open the folder {folder}: --workers needs the videos "
                f"(and the model) on a file system every worker reads at the same path, e.g. NFS")
    return None


class BenchWorker:
    """One model replica. It runs `run_video` for whichever video the driver sends, yielding each row as it is done."""

    def __init__(self, spec: ModelSpec, folder: str, frames: int, max_new_tokens: int, threads: int,
                 protocol: str | None = None) -> None:
        self.folder, self.frames, self.max_new_tokens = Path(folder), frames, max_new_tokens
        self.protocol = protocol
        self.backbone, self.problem = None, _problem_with_folder(self.folder)
        if self.problem:
            return
        import torch

        torch.set_num_threads(threads)
        from transformers.utils import logging as hf_logging

        from ..pipeline import auto_device, load_backbone

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        try:
            dev, dt = auto_device(spec.device, spec.dtype)
            self.backbone = load_backbone(spec.path, dev, dt, spec.trust_remote_code)
        except StopError as exc:
            self.problem = f"worker on {socket.gethostname()} cannot load the model: {exc}"
            return
        if spec.name:
            self.backbone.name = spec.name

    def info(self) -> dict:
        return dict(host=socket.gethostname(), pid=os.getpid(), problem=self.problem,
                    device=str(self.backbone.device) if self.backbone is not None else None)

    def run(self, clip_key: tuple, todo: list[tuple[Record, Setting]]):
        """clip_key: (video, start, end, frame rate), as `runner.plan` groups the work."""
        yield from run_video(self.backbone, self.folder, clip_key, todo, frames=self.frames,
                             max_new_tokens=self.max_new_tokens, protocol=self.protocol)


@dataclass
class WorkerStats:
    worker: int
    host: str = "-"
    pid: int = 0
    device: str = "-"
    videos: int = 0
    items: int = 0
    failures: int = 0
    busy_s: float = 0.0
    deaths: int = 0

    def to_json(self) -> dict:
        return dict(worker=self.worker, host=self.host, pid=self.pid, device=self.device, videos=self.videos,
                    items=self.items, failures=self.failures, deaths=self.deaths, busy_s=round(self.busy_s, 2),
                    items_per_s=round(self.items / self.busy_s, 3) if self.busy_s else None)


@dataclass
class _Job:
    clip: tuple  # (video, start, end, frame rate), as runner.plan groups the work
    todo: list[tuple[Record, Setting]]
    attempts: int = 0  # times a worker died while running it
    done: set[str] = field(default_factory=set)

    def left(self) -> list[tuple[Record, Setting]]:
        return [(r, s) for r, s in self.todo if item_key(r.key, s) not in self.done]


@dataclass
class _Slot:
    stats: WorkerStats
    replacements_left: int
    handle: object = None
    starting: object = None  # the ref of info() while the replica loads its model
    job: _Job | None = None
    stream: object = None
    started: float = 0.0


@dataclass
class Outcome:
    rows: list[dict]
    workers: list[WorkerStats]
    retried: int  # videos handed again to a live worker after one died
    startup_s: float = 0.0  # until every replica had loaded its model
    work_s: float = 0.0  # from then to the last row


def _lost(exc: BaseException) -> str:
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def run_bench_ray(spec: ModelSpec, folder: Path, records: list[Record], grid: list[Setting], output: Path, *,
                  frames: int, max_new_tokens: int, skip: set[str], workers: int, threads: int = 1,
                  gpus: bool = False, retries: int = 2, on_item: Callable[[dict], None] | None = None,
                  on_ready: Callable[[], None] | None = None, protocol: str | None = None) -> Outcome:
    """Run every (record, setting) not in `skip` on `workers` Ray actors; this process writes every row.
    `on_ready` runs once every replica is up, before the results file is opened."""
    t_start = time.perf_counter()
    folder = folder.resolve()
    work = plan(records, grid, skip)
    if not work:
        if on_ready:
            on_ready()
        return Outcome([], [], 0)
    need = dict(num_cpus=threads, num_gpus=1 if gpus else 0)
    have = ray.cluster_resources()
    for res, key in (("num_cpus", "CPU"), ("num_gpus", "GPU")):
        if need[res] and workers * need[res] > have.get(key, 0):
            raise UsageError(f"--workers {workers} needs {workers * need[res]} {key}s, the Ray cluster has "
                             f"{have.get(key, 0):g}" + (" (lower --threads-per-worker)" if key == "CPU" else ""))
    actor = ray.remote(max_restarts=0, max_task_retries=0, **need)(BenchWorker)

    def start(slot: _Slot) -> None:
        slot.handle = actor.remote(spec, str(folder), frames, max_new_tokens, threads, protocol)
        slot.starting = slot.handle.info.remote()

    slots = [_Slot(WorkerStats(i), replacements_left=retries) for i in range(workers)]
    for slot in slots:
        start(slot)
    # Every replica must come up once before any work goes out: a folder or model a worker cannot read is the
    # user's to fix, not a fault to retry.
    for slot in slots:
        try:
            info = ray.get(slot.starting)
        except WORKER_LOST + (rx.RayTaskError,) as exc:
            raise StopError(f"worker {slot.stats.worker} did not start: {_lost(exc)}") from None
        if info["problem"]:
            raise StopError(info["problem"])
        slot.starting = None
        slot.stats.host, slot.stats.pid, slot.stats.device = info["host"], info["pid"], info["device"]

    t_up = time.perf_counter()
    if on_ready:
        on_ready()
    writer = ResultWriter(output)
    rows: list[dict] = []
    queue = deque(_Job(v, todo) for v, todo in work)
    retried = 0

    def write(row: dict, slot: _Slot | None) -> None:
        writer.write(row)
        rows.append(row)
        if slot is not None:
            slot.stats.items += 1
            slot.stats.failures += row.get("error") is not None
        if on_item:
            on_item(row)

    def fail(job: _Job, reason: str) -> None:
        for rec, s in job.left():
            write(failure_row(rec, s, item_key(rec.key, s), reason, protocol), None)

    def lose(slot: _Slot, why: str) -> None:
        """The slot's process is gone: its video goes back to the queue (or fails), a fresh replica takes its place."""
        nonlocal retried
        slot.stats.deaths += 1
        job, slot.job, slot.stream = slot.job, None, None
        if job is not None:
            slot.stats.busy_s += time.perf_counter() - slot.started
            job.attempts += 1
            if job.attempts > retries:
                fail(job, f"worker died {job.attempts} times on this video (last: {why})")
            elif job.left():
                queue.appendleft(job)
                retried += 1
        ray.kill(slot.handle, no_restart=True)
        if slot.replacements_left > 0:
            slot.replacements_left -= 1
            start(slot)
        else:
            slot.handle, slot.starting = None, None

    try:
        while True:
            live = [s for s in slots if s.handle is not None]
            for slot in live:
                if slot.job is None and slot.starting is None and queue:
                    slot.job = queue.popleft()
                    slot.stream = slot.handle.run.remote(slot.job.clip, slot.job.left())
                    slot.started = time.perf_counter()
            waiting = {s.stream if s.stream is not None else s.starting: s for s in live
                       if s.stream is not None or s.starting is not None}
            if not waiting:
                break
            ready, _ = ray.wait(list(waiting), num_returns=1)
            for ref in ready:
                slot = waiting[ref]
                if slot.starting is not None:  # a replacement replica finished loading (or died doing so)
                    try:
                        info = ray.get(slot.starting)
                    except WORKER_LOST + (rx.RayTaskError,) as exc:
                        lose(slot, _lost(exc))
                        continue
                    slot.starting = None
                    if info["problem"]:
                        lose(slot, info["problem"])
                    else:
                        slot.stats.pid = info["pid"]
                    continue
                try:
                    row = ray.get(next(slot.stream))
                except StopIteration:
                    slot.stats.videos += 1
                    slot.stats.busy_s += time.perf_counter() - slot.started
                    slot.job, slot.stream = None, None
                    continue
                except WORKER_LOST as exc:
                    lose(slot, _lost(exc))
                    continue
                except rx.RayTaskError as exc:  # an error run_video does not record per item: no point retrying
                    job, slot.job, slot.stream = slot.job, None, None
                    slot.stats.busy_s += time.perf_counter() - slot.started
                    cause = exc.cause if getattr(exc, "cause", None) is not None else exc
                    fail(job, _lost(cause))
                    continue
                slot.job.done.add(row["key"])
                write(row, slot)
        if queue:  # every replica is gone and none may be started again: leave the rest to --resume
            items = sum(len(job.left()) for job in queue)
            raise StopError(f"all {workers} workers died (each replaced {retries} times); {items} items of "
                            f"{len(queue)} videos did not run: run the same command with --resume to finish them")
    finally:
        writer.close()
        for slot in slots:
            if slot.handle is not None:
                ray.kill(slot.handle, no_restart=True)
    return Outcome(rows, [s.stats for s in slots], retried, t_up - t_start, time.perf_counter() - t_up)
