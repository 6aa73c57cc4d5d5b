"""Shared fixtures: a tiny random LLaVA-OneVision built locally and real mp4 files, made once per session."""

import numpy as np
import pytest
import torch

from stopcli.embedded.world import moving_shape_frames, write_video
from stopcli.embedded.tiny_models import build_llava_onevision

torch.set_num_threads(1)  # tiny models time and behave steadier on one thread of a shared 2-core machine


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    return str(build_llava_onevision(tmp_path_factory.mktemp("models") / "tiny-ov"))


@pytest.fixture(scope="session")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    good = write_video(root / "red_circle.mp4", moving_shape_frames("circle", "red", "right", frames=12))
    short = write_video(root / "short.mp4", moving_shape_frames("square", "blue", "up", frames=3))
    truncated = root / "truncated.mp4"
    data = good.read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    text = root / "notes.mp4"
    text.write_text("this is not a video\n")
    empty = root / "empty.mp4"
    empty.write_bytes(b"")
    audio = root / "audio_only.m4a"
    _write_audio(audio)
    return dict(good=good, short=short, truncated=truncated, text=text, empty=empty, audio=audio, dir=root,
                missing=root / "nope.mp4")


def _write_audio(path):
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=16000)
        samples = (np.sin(np.linspace(0, 400, 16000)) * 0.3).astype(np.float32)[None]
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
