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


def test_a_frame_folder_is_a_video_at_its_frame_rate(tmp_path):
    from PIL import Image

    from stopcli.embedded.world import moving_shape_frames

    frames = moving_shape_frames("circle", "red", "right", frames=12, size=32)
    folder = tmp_path / "clip"
    folder.mkdir()
    for i, f in enumerate(frames, 1):  # 1-based numbers that sort wrongly as text past 9
        Image.fromarray(f).save(folder / f"{i}.png")
    clip = read_video(folder, num_frames=4, frame_rate=3.0)
    assert clip.indices.tolist() == [0, 4, 7, 11] and clip.fps == 3.0 and clip.total_frames == 12
    assert np.array_equal(clip.frames[-1], frames[11])  # 12.png, not 9.png
    # clip bounds in seconds at 3 fps: [1 s, 3 s) holds frames 3..8
    assert read_video(folder, num_frames=3, frame_rate=3.0, start=1.0, end=3.0).indices.tolist() == [3, 6, 8]
    (tmp_path / "empty").mkdir()
    with pytest.raises(StopError, match="frame folder has no frames"):
        read_video(tmp_path / "empty", num_frames=4, frame_rate=3.0)
    with pytest.raises(StopError, match="directory"):  # without a frame rate a folder is still not a video
        read_video(folder, num_frames=4)


def test_a_gif_is_read_at_the_given_rate(tmp_path):
    from PIL import Image

    from stopcli.embedded.world import moving_shape_frames

    frames = moving_shape_frames("square", "blue", "down", frames=6, size=32)
    Image.fromarray(frames[0]).save(tmp_path / "a.gif", save_all=True,
                                    append_images=[Image.fromarray(f) for f in frames[1:]], duration=40)
    clip = read_video(tmp_path / "a.gif", num_frames=3, frame_rate=25.0)
    assert clip.num_frames == 3 and clip.total_frames == 6 and clip.frames.shape[1:] == (32, 32, 3)
