"""Synthetic videos: coloured shapes moving over a plain background, written as real mp4 files (PyAV/libx264)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

COLORS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "yellow": (230, 220, 30)}
MOVES = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1), "still": (0, 0)}


def draw_shape(frame: np.ndarray, shape: str, color: tuple[int, int, int], cx: float, cy: float, r: float) -> None:
    """Fill a circle, square or triangle of radius r centred at (cx, cy), in place. [H, W, 3] uint8."""
    h, w, _ = frame.shape
    yy, xx = np.mgrid[0:h, 0:w]
    if shape == "circle":
        mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= r ** 2
    elif shape == "square":
        mask = (np.abs(xx - cx) <= r) & (np.abs(yy - cy) <= r)
    elif shape == "triangle":  # apex up: inside when below the two slanted edges and above the base
        mask = (yy <= cy + r) & (yy >= cy - r) & (np.abs(xx - cx) <= (yy - (cy - r)) / 2)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    frame[mask] = color


def moving_shape_frames(shape: str = "circle", color: str = "red", move: str = "right", frames: int = 16,
                        size: int = 128, background: int = 128, logo: bool = False) -> np.ndarray:
    """[frames, size, size, 3] uint8: one shape crossing the frame at constant speed (or standing still)."""
    r = size * 0.09
    dx, dy = MOVES[move]
    span = size - 4 * r
    out = np.full((frames, size, size, 3), background, dtype=np.uint8)
    for t in range(frames):
        f = t / max(1, frames - 1)
        cx = size / 2 + dx * (f - 0.5) * span
        cy = size / 2 + dy * (f - 0.5) * span
        if logo:
            out[t, 4:4 + size // 10, size - 4 - size // 6:size - 4] = 215  # static light-gray corner logo
        draw_shape(out[t], shape, COLORS[color], cx, cy, r)
    return out


def write_video(path: str | Path, frames: np.ndarray, fps: int = 8, crf: int = 18) -> Path:
    """Encode [T, H, W, 3] uint8 RGB frames as H.264 mp4 (even sizes required by yuv420p)."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf)}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
