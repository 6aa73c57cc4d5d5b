import numpy as np
import pytest

from stopcli.errors import StopError
from stopcli.video import read_video, sample_indices


def test_uniform_sampling_decodes_only_the_sampled_frames(videos):
    clip = read_video(videos["good"], num_frames=4)
    assert clip.frames.shape == (4, 128, 128, 3) and clip.frames.dtype == np.uint8
    assert clip.indices.tolist() == [0, 4, 7, 11]  # linspace(0, 11, 4).round()
    assert clip.total_frames == 12 and clip.fps == pytest.approx(8.0)
    # the red circle moves right: its centre of mass in the last frame is right of the first
    red = lambda f: np.argwhere((f[..., 0] > 150) & (f[..., 1] < 90))[:, 1].mean()  # noqa: E731
    assert red(clip.frames[-1]) > red(clip.frames[0]) + 30


def test_fps_and_time_range():
    assert sample_indices(100, 10.0, None, 2.0, None, None).tolist() == list(range(0, 100, 5))
    assert sample_indices(100, 10.0, 3, None, 2.0, 4.0).tolist() == [20, 30, 39]
    # --frames caps --fps: 50 frames at 5 fps, 4 of them evenly spread
    assert sample_indices(100, 10.0, 4, 5.0, None, None).tolist() == [0, 32, 66, 98]


def test_fewer_frames_than_asked_uses_what_exists_and_says_so(videos):
    clip = read_video(videos["short"], num_frames=32)
    assert clip.num_frames == 3
    assert "asked for 32 frames" in clip.notes[0]


@pytest.mark.parametrize("kind, message", [
    ("missing", "video not found"),
    ("dir", "directory"),
    ("empty", "empty"),
    ("text", "not a video"),
    ("truncated", "truncated|damaged|not a video"),
    ("audio", "no video stream|not a video"),
])
def test_bad_files_give_one_line_reasons(videos, kind, message):
    with pytest.raises(StopError, match=message) as info:
        read_video(videos[kind], num_frames=4)
    assert "\n" not in str(info.value)


def test_bad_ranges(videos):
    with pytest.raises(StopError, match="past the end"):
        read_video(videos["good"], num_frames=4, start=100.0)
    with pytest.raises(StopError, match="empty time range"):
        read_video(videos["good"], num_frames=4, start=1.0, end=0.5)
