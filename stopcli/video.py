"""Decoding the frames a Video LLM sees, with decord: only the sampled frames are decoded."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import StopError


@dataclass(frozen=True)
class Clip:
    """frames: [T, H, W, 3] uint8 RGB; indices: [T] frame numbers in the file; fps of the file."""

    frames: np.ndarray
    indices: np.ndarray
    fps: float
    total_frames: int
    path: str
    notes: list[str] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])


def _open(path: Path):
    import decord

    if not path.exists():
        raise StopError(f"video not found: {path}")
    if path.is_dir():
        raise StopError(f"expected a video file, got a directory: {path}")
    if path.stat().st_size == 0:
        raise StopError(f"video file is empty: {path}")
    try:
        return decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    except Exception as exc:  # decord raises its own DECORDError, or RuntimeError, for anything unreadable
        text = str(exc).lower()
        if "video stream" in text or "stream" in text and "video" in text:
            raise StopError(f"no video stream in {path} (audio-only or not a video)") from None
        raise StopError(f"cannot decode {path}: not a video or the file is damaged") from None


def sample_indices(total: int, fps: float, num_frames: int | None, sample_fps: float | None,
                   start: float | None, end: float | None) -> np.ndarray:
    """Frame numbers to decode: `num_frames` evenly spaced over [start, end) (the authors' linspace(...).round()),
    or one every 1/sample_fps seconds. Never more frames than the range holds; duplicates removed."""
    first = 0 if start is None else int(math.floor(start * fps))
    last = total if end is None else min(total, int(math.ceil(end * fps)))
    if start is not None and start < 0 or end is not None and end <= 0:
        raise StopError("--start/--end must be positive seconds")
    if first >= total:
        raise StopError(f"--start {start}s is past the end of the video ({total / fps:.2f}s)")
    if last <= first:
        raise StopError(f"empty time range: --start {start} --end {end}")
    if sample_fps is not None:
        if sample_fps <= 0:
            raise StopError("--fps must be positive")
        step = fps / sample_fps
        idx = np.arange(first, last, step)
        if num_frames is not None and len(idx) > num_frames:  # --frames caps an --fps sampling
            idx = idx[np.linspace(0, len(idx) - 1, num_frames).round().astype(int)]
    else:
        if num_frames is None or num_frames < 1:
            raise StopError("the number of frames must be at least 1")
        idx = np.linspace(first, last - 1, num_frames)
    return np.unique(np.clip(np.round(idx).astype(np.int64), first, last - 1))


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def frame_files(folder: Path) -> list[Path]:
    """The images of a frame folder in frame order (names sort as numbers where they are numbers: 2.jpg < 10.jpg)."""
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    return sorted(files, key=lambda p: (int(p.stem) if p.stem.isdigit() else float("inf"), p.name))


def _read_frame_folder(path: Path, num_frames: int | None, fps: float | None, start: float | None,
                       end: float | None, frame_rate: float) -> Clip:
    """A folder of frames is a video at `frame_rate` frames per second: sampled exactly like a file."""
    from PIL import Image

    files = frame_files(path)
    if not files:
        raise StopError(f"frame folder has no frames (.jpg/.png): {path}")
    idx = sample_indices(len(files), frame_rate, num_frames, fps, start, end)
    try:
        images = [np.asarray(Image.open(files[i]).convert("RGB")) for i in idx]
    except OSError:
        raise StopError(f"cannot read the frames of {path}: an image is damaged") from None
    if len({im.shape for im in images}) != 1:
        raise StopError(f"the frames of {path} differ in size")
    notes = [f"asked for {num_frames} frames but the range holds {len(idx)}; using {len(idx)}"] \
        if fps is None and num_frames is not None and len(idx) < num_frames else []
    return Clip(frames=np.stack(images), indices=idx, fps=frame_rate, total_frames=len(files), path=str(path),
                notes=notes)


def _read_gif(path: Path, num_frames: int | None, fps: float | None, start: float | None, end: float | None,
              frame_rate: float) -> Clip:
    from PIL import Image, ImageSequence

    try:
        with Image.open(path) as im:
            frames = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)]
    except OSError:
        raise StopError(f"cannot decode {path}: not a GIF or the file is damaged") from None
    if not frames:
        raise StopError(f"video has no frames: {path}")
    idx = sample_indices(len(frames), frame_rate, num_frames, fps, start, end)
    return Clip(frames=np.stack([frames[i] for i in idx]), indices=idx, fps=frame_rate, total_frames=len(frames),
                path=str(path))


def read_video(path: str | Path, num_frames: int | None = 32, fps: float | None = None, start: float | None = None,
               end: float | None = None, frame_rate: float | None = None) -> Clip:
    """Decode `num_frames` uniformly sampled frames (or `fps` frames per second) of `path`, optionally within
    [start, end) seconds. With `frame_rate`, `path` may also be a folder of frames (or a GIF) played at that rate.
    Raises StopError with a one-line reason for anything that is not a readable video."""
    path = Path(path)
    if frame_rate is not None and (path.is_dir() or path.suffix.lower() == ".gif"):
        if frame_rate <= 0:
            raise StopError("a frame rate must be positive")
        if not path.exists():
            raise StopError(f"video not found: {path}")
        reader = _read_frame_folder if path.is_dir() else _read_gif
        return reader(path, num_frames, fps, start, end, frame_rate)
    vr = _open(path)
    total = len(vr)
    if total == 0:
        raise StopError(f"video has no frames: {path}")
    file_fps = float(vr.get_avg_fps() or 0.0) or 25.0
    idx = sample_indices(total, file_fps, num_frames, fps, start, end)
    notes = []
    if fps is None and num_frames is not None and len(idx) < num_frames:
        notes.append(f"asked for {num_frames} frames but the range holds {len(idx)}; using {len(idx)}")
    try:
        frames = vr.get_batch(idx.tolist()).asnumpy()
    except Exception:
        raise StopError(f"cannot decode frames of {path}: the file looks truncated or damaged") from None
    if frames.ndim != 4 or frames.shape[0] == 0:
        raise StopError(f"video has no decodable frames: {path}")
    return Clip(frames=frames, indices=idx, fps=file_fps, total_frames=total, path=str(path), notes=notes)
