"""The synthetic world follows its contract, and training makes progress (a smoke test, never the full run)."""

import json
import random

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from stopcli.cli import app
from stopcli.embedded.world import COLORS, MOVES, SHAPES, questions, render, sample_scene
from stopcli.video import read_video
from stopcli.presets import ASSET_DIR

EMBEDDED = ASSET_DIR / "stop-tiny-ov"


def test_scenes_follow_the_contract():
    rng = random.Random(0)
    for _ in range(200):
        sc = sample_scene(rng)
        assert 1 <= len(sc.objects) <= 3 and min(sc.height, sc.width) >= 64
        assert len({(o.color, o.shape) for o in sc.objects}) == len(sc.objects)
        assert all(40 <= v <= 220 for v in sc.background[:1])
        for o in sc.objects:
            assert 0.10 <= o.size <= 0.25 and o.shape in SHAPES and o.color in COLORS
            assert all(abs(c - p) <= 30 for c, p in zip(o.rgb, COLORS[o.color]))
            for x in (o.x0, o.x1):
                assert o.size / 2 <= x <= 1 - o.size / 2


def test_render_paints_objects_where_the_scene_says():
    rng = random.Random(3)
    sc = sample_scene(rng, 96, 96)
    video, masks, cls = render([sc], 8)
    assert video.shape == (1, 8, 96, 96, 3) and video.dtype == torch.uint8
    for j, o in enumerate(sc.objects):
        for t in (0, 7):
            visible = o.visible_at(t / 7)
            assert bool(masks[0, j, t].any()) == visible
            if visible:
                ys, xs = masks[0, j, t].nonzero(as_tuple=True)
                f = t / 7
                assert abs(xs.float().mean() / 96 - (o.x0 + (o.x1 - o.x0) * f)) < 0.05
                colour = video[0, t][masks[0, j, t]].float().mean(0)
                assert (colour - torch.tensor(o.rgb)).abs().max() < 12


def test_questions_have_one_word_answers_from_the_templates():
    rng = random.Random(1)
    kinds = set()
    for _ in range(100):
        sc = sample_scene(rng)
        for qa in questions(sc, rng):
            kinds.add(qa.type)
            assert len(qa.answer.split()) == 1 and qa.question == qa.question.lower()
            if qa.type == "count":
                assert qa.answer == ["one", "two", "three"][len(sc.objects) - 1]
            if qa.options:
                assert qa.answer in "abcd" and "answer with the letter." in qa.question
    assert kinds >= {"exist", "color", "shape", "direction", "count", "visible_end"}


def test_synth_command_writes_real_videos_and_bench_records(tmp_path):
    r = CliRunner().invoke(app, ["synth", str(tmp_path), "--n", "9", "--seed", "5", "--frames", "8"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in (tmp_path / "annotations.jsonl").read_text().splitlines()]
    assert len(rows) == 9 and len({r["type"] for r in rows}) == 9
    clip = read_video(tmp_path / rows[0]["video"], num_frames=8)
    assert clip.frames.shape[0] == 8 and clip.frames.dtype == np.uint8
    again = tmp_path / "again"
    CliRunner().invoke(app, ["synth", str(again), "--n", "9", "--seed", "5", "--frames", "8"])
    assert (again / "annotations.jsonl").read_text() == (tmp_path / "annotations.jsonl").read_text()


def test_training_smoke_loss_goes_down(tmp_path):
    from stopcli.embedded.train import TrainConfig, train

    cfg = TrainConfig(steps=40, batch=4, warmup=5, lr=3e-3, eval_every=1000, log_every=1, threads=1, frames=4,
                      max_turns=3)
    train(tmp_path / "m", cfg, log=lambda s: None)
    rows = [json.loads(x) for x in (tmp_path / "m" / "training_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 41))
    mean = lambda key, part: sum(r[key] for r in part) / len(part)  # noqa: E731
    for key in ("answer_loss", "grounding_loss"):  # the focus loss is too spiky to judge in 40 steps
        assert mean(key, rows[-10:]) < 0.75 * mean(key, rows[:5]), key
    assert (tmp_path / "m" / "model.safetensors").is_file()
    from stopcli.backbones import load_backbone

    load_backbone(str(tmp_path / "m"), torch.device("cpu"), torch.float32)  # loads through the normal path


def test_training_is_reproducible_from_its_seed(tmp_path):
    from safetensors.torch import load_file

    from stopcli.embedded.train import TrainConfig, train

    cfg = TrainConfig(steps=3, batch=2, warmup=1, eval_every=2, eval_videos=2, log_every=1, threads=1, frames=4,
                      max_turns=3, vision_steps=3, vision_batch=4, vision_frames=2, vision_place_from=2,
                      vision_cosine=True, keep_choices=(1.0, 0.25), option_weight=1.0, readout_weight=1.0,
                      coordinate_weight=1.0, endpoint_weight=1.0, centroid_weight=1.0, centre_weight=1.0, identity_weight=1.0,
                      branch_turns=6, seed=7)  # the shipped recipe's shape: every loss, pruning, branches
    runs = [train(tmp_path / name, cfg, log=lambda s: None) for name in ("a", "b")]
    weights = [load_file(run / "model.safetensors") for run in runs]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    logs = [[{k: v for k, v in json.loads(x).items() if k != "minutes"}
             for x in (run / "training_log.jsonl").read_text().splitlines()] for run in runs]
    assert logs[0] == logs[1] and len(logs[0]) == 6
    other = train(tmp_path / "c", TrainConfig(**{**cfg.__dict__, "seed": 8}), log=lambda s: None)
    embed = "language_model.model.embed_tokens.weight"
    assert not torch.equal(load_file(other / "model.safetensors")[embed], weights[0][embed])  # the seed matters


def test_a_stopped_run_keeps_its_last_checkpoint(tmp_path):
    from stopcli.embedded.train import TrainConfig, train

    def log(line):
        if line.startswith("step=3 "):
            raise KeyboardInterrupt  # the user stops the run at step 3
    cfg = TrainConfig(steps=6, batch=2, warmup=1, eval_every=2, eval_videos=2, log_every=1, threads=1, frames=4,
                      max_turns=2)
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path / "m", cfg, log=log)
    from stopcli.backbones import load_backbone

    load_backbone(str(tmp_path / "m"), torch.device("cpu"), torch.float32)  # the step-2 checkpoint, as `stop ask` would
    assert json.loads((tmp_path / "m" / "training_config.json").read_text())["steps"] == 6
    rows = [json.loads(x) for x in (tmp_path / "m" / "training_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3] and "accuracy" in rows[1]  # the log up to the stop survives


def test_peak_cells_mark_where_objects_surely_are():
    from stopcli.embedded.train import Batcher, TrainConfig, load_model

    model, processor = load_model(EMBEDDED)
    batcher = Batcher(processor, model.config, TrainConfig(frames=1), seed=0)  # 96 px, patch 8: 6x6 cells of 16 px
    masks = torch.zeros(1, 3, 1, 96, 96, dtype=torch.bool)
    masks[0, 0, 0, 20:30, 36:46] = True  # small, inside cell (1, 2)
    masks[0, 1, 0, 64:96, 0:32] = True  # covers cells (4, 0), (4, 1), (5, 0), (5, 1) fully
    masks[0, 2, 0, 40:50, 60:70] = True  # straddles (2, 3), (2, 4), (3, 3), (3, 4); most of it in (2, 4)
    marked = batcher.peak_cells(batcher.coverage(masks))[0].nonzero().flatten().tolist()
    assert marked == sorted([1 * 6 + 2, 2 * 6 + 4, 4 * 6 + 0, 4 * 6 + 1, 5 * 6 + 0, 5 * 6 + 1])


def test_vision_stage_runs_first_and_its_loss_goes_down(tmp_path):
    from stopcli.embedded.train import TrainConfig, train

    cfg = TrainConfig(steps=2, batch=2, vision_steps=40, vision_batch=4, vision_lr=3e-3, frames=4, log_every=1,
                      eval_every=1000, threads=1, warmup=5)
    train(tmp_path / "m", cfg, log=lambda s: None)
    rows = [json.loads(x) for x in (tmp_path / "m" / "training_log.jsonl").read_text().splitlines()]
    stages = [r.get("stage", "main") for r in rows]
    assert stages == ["vision"] * 40 + ["main"] * 2
    loss = [r["vision_loss"] for r in rows[:40]]  # colour + shape
    assert sum(loss[-10:]) / 10 < 0.75 * sum(loss[:5]) / 5
    # The tokens' places are learned in the same stage (they take ~150 steps to start falling: not judged here).
    assert all(0 < r["position_loss"] < 2 * np.log(6) + 0.5 for r in rows[:40])


def test_vision_stage_learns_shape_first_then_place_on_short_videos_with_a_decaying_rate(tmp_path):
    from stopcli.embedded.train import TrainConfig, train

    cfg = TrainConfig(steps=1, batch=2, vision_steps=20, vision_batch=4, vision_frames=2, vision_place_from=11,
                      vision_cosine=True, vision_lr=3e-3, frames=4, log_every=1, eval_every=1000, eval_videos=2,
                      threads=1, warmup=1, coordinate_weight=1.0)
    train(tmp_path / "m", cfg, log=lambda s: None)
    rows = [json.loads(x) for x in (tmp_path / "m" / "training_log.jsonl").read_text().splitlines()][:20]
    assert [("position_loss" in r, "coordinate_loss" in r) for r in rows] == [(False, False)] * 10 + [(True, True)] * 10
    lr = [r["lr"] for r in rows]
    assert lr[0] == pytest.approx(3e-3) and all(a > b for a, b in zip(lr, lr[1:])) and lr[-1] < 0.01 * lr[0]
    assert 0 <= rows[-1]["held_out_shape"] <= 1 and "held_out_shape" not in rows[0]


def test_a_vision_batch_of_short_videos_has_their_frames_and_tokens():
    from stopcli.embedded.train import Batcher, TrainConfig, load_model

    model, processor = load_model(EMBEDDED)
    batcher = Batcher(processor, model.config, TrainConfig(frames=8), seed=0)
    b = batcher.batch(3, single=True, frames=2)
    assert b["pixels"].shape == (3, 2, 3, 96, 96)
    assert b["cells"].shape[:2] == b["sure"].shape == (3, 2 * 36) and int(b["kept"].max()) < 2 * 36
    assert int((b["ids"] == model.config.video_token_id).sum(1)[0]) == 2 * 36 + 1


def test_track_loss_rewards_looking_back_at_the_same_object():
    from stopcli.embedded.train import Attention, track_loss

    # 2 frames of 2 cells: object 0 in cell 0 of both frames, object 1 in cell 1 of frame 1 only.
    kept = torch.tensor([[0, 1, 2, 3]])  # [B, n], per_frame = 2
    cover = torch.tensor([[[1, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]]], dtype=torch.bool)  # [B, O, n]
    b = {"kept": kept, "cover": cover}
    # Only token 2 (object 0, frame 1) has an earlier token of its object (token 0). Head 1 is the supervised one.
    perfect = torch.zeros(1, 2, 4, 4)
    perfect[0, 1, 2, 0] = 1.0
    assert float(track_loss(Attention(perfect), b, per_frame=2)) < 1e-5
    assert float(track_loss(Attention(perfect.flip(1)), b, per_frame=2)) > 10  # head 0 looking there does not count
    half = torch.zeros(1, 2, 4, 4)
    half[0, 1, 2, :3] = torch.tensor([0.5, 0.25, 0.25])
    assert abs(float(track_loss(Attention(half), b, per_frame=2)) - 0.6931) < 1e-3  # -log 0.5
    elsewhere = torch.zeros(1, 2, 4, 4)
    elsewhere[0, 1, 2, 1] = 1.0  # looks at background in frame 0
    assert float(track_loss(Attention(elsewhere), b, per_frame=2)) > 10


def test_option_targets_point_at_the_correct_options_word():
    from stopcli.embedded.train import Attention, Batcher, TrainConfig, load_model, option_loss

    model, processor = load_model(EMBEDDED)
    batcher = Batcher(processor, model.config, TrainConfig(frames=2, max_turns=6), seed=3)
    b = batcher.batch(8)
    tok = processor.tokenizer
    assert b["options"].shape[0] > 0
    for row, at, word in b["options"].tolist():
        letter = tok.convert_ids_to_tokens([int(b["labels"][row, at + 1])])[0]  # the answer the position predicts
        assert tok.convert_ids_to_tokens(b["ids"][row, word - 3:word].tolist()) == ["(", letter, ")"]
    assert b["letters"].shape[0] >= b["options"].shape[0]
    for row, word, letter in b["letters"].tolist():  # every option's word and its own letter
        assert tok.convert_ids_to_tokens(b["ids"][row, [letter - 1, letter + 1]].tolist()) == ["(", ")"]
        words = {*COLORS, *SHAPES, *MOVES, "star"}  # star: the filler option of shape questions
        assert tok.convert_ids_to_tokens([int(b["ids"][row, word])])[0] in words
    attn = torch.zeros(b["ids"].shape[0], 2, b["ids"].shape[1], b["ids"].shape[1])  # head 1 is the supervised one
    o = b["options"]
    attn[o[:, 0], 1, o[:, 1], o[:, 2]] = 1.0
    assert float(option_loss(Attention(attn), b)) < 1e-5
    attn[o[:, 0], 1, o[:, 1], o[:, 2]] = 0.25
    assert abs(float(option_loss(Attention(attn), b)) - 1.3863) < 1e-3  # -log 0.25


def test_multiple_choice_share_sets_the_form_of_templates_two_to_four():
    rng = random.Random(4)
    scenes = [sample_scene(rng) for _ in range(60)]
    for share, mc in ((1.0, True), (0.0, False)):
        for sc in scenes:
            for qa in questions(sc, rng, mc=share):
                if qa.type.split("_")[0] in ("color", "shape", "direction"):
                    assert (qa.options is not None) == mc and qa.type.endswith("_mc") == mc


def test_motion_is_labelled_only_where_the_object_was_seen_before():
    from stopcli.embedded.train import Batcher, TrainConfig, load_model

    model, processor = load_model(EMBEDDED)
    batcher = Batcher(processor, model.config, TrainConfig(frames=3), seed=0)  # 6x6 cells of 16 px
    masks = torch.zeros(1, 3, 3, 96, 96, dtype=torch.bool)
    masks[0, 0, :, 0:16, 0:16] = True  # object 0 in cell 0 of frames 0-2
    masks[0, 1, 1:, 80:96, 80:96] = True  # object 1 in the last cell, from frame 1 on
    cls = torch.tensor([[[0, 0], [1, 1], [-1, -1]]])
    moves = torch.tensor([[1, 3, 0]])  # right, down
    cells = batcher.cell_labels(masks, batcher.coverage(masks), cls, moves)  # [1, 3 * 36, 4]
    motion = cells[0, :, 2].reshape(3, 36)
    assert motion[:, 0].tolist() == [-100, 1, 1]  # first sighting: nothing earlier to compare with
    assert motion[:, 35].tolist() == [5, -100, 3]  # frame 0: background ("none"); frame 1: first sighting
    assert set(motion[:, 1:35].flatten().tolist()) == {5}


@torch.no_grad()
def test_position_head_loss_reads_rows_and_columns():
    from stopcli.embedded.train import PositionHead

    head = PositionHead(dim=12, grid=6)
    torch.nn.init.zeros_(head.linear.weight)
    torch.nn.init.zeros_(head.linear.bias)
    visual = torch.zeros(2, 72, 12)  # 2 frames of 6x6 cells
    assert abs(float(head.loss(visual)) - 2 * np.log(6)) < 1e-5  # knows nothing: chance on rows and on columns
    cell = torch.arange(72) % 36
    visual[:, :, :6] = 20 * torch.nn.functional.one_hot(cell // 6, 6)  # tokens that carry their place
    visual[:, :, 6:] = 20 * torch.nn.functional.one_hot(cell % 6, 6)
    with torch.no_grad():
        head.linear.weight.copy_(torch.eye(12))
    assert float(head.loss(visual)) < 1e-6
    with torch.no_grad():
        head.linear.weight.copy_(torch.eye(12)[[1, 0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]])  # rows 0 and 1 swapped
    assert float(head.loss(visual)) > 5


def test_readout_targets_are_the_answers_word_and_each_options_letter():
    from stopcli.embedded.train import Batcher, TrainConfig, load_model, readout_loss

    model, processor = load_model(EMBEDDED)
    batcher = Batcher(processor, model.config, TrainConfig(frames=2, max_turns=6, mc_share=0.5), seed=5)
    b = batcher.batch(8)
    tok = processor.tokenizer
    n_turns = int(((b["labels"][:, 1:] != -100) & (b["labels"][:, :-1] == -100)).sum())
    assert b["content"].shape[0] == n_turns  # one content target per question
    mc = 0
    for row, at, word in b["content"].tolist():
        answer = tok.convert_ids_to_tokens([int(b["labels"][row, at + 1])])[0]
        word = tok.convert_ids_to_tokens([word])[0]
        if answer in "abcd" and b["ids"][row, :at].tolist().count(tok.convert_tokens_to_ids("(")) >= 4:
            mc += 1  # multiple choice: the word after "( answer )" in this turn's prompt
            prompt = b["ids"][row, :at + 1].tolist()
            k = max(i for i in range(len(prompt) - 2)
                    if tok.convert_ids_to_tokens(prompt[i:i + 3]) == ["(", answer, ")"])
            assert tok.convert_ids_to_tokens([prompt[k + 3]])[0] == word
        else:
            assert word == answer
    assert mc > 0
    # The read-out loss reads the input of the last layer through the output layer: it is low when those places hold
    # the targets' words and high when they hold other words.
    from stopcli.embedded.train import _forward

    with torch.no_grad():
        taps = _forward(model, b, layer=2)
        embed = model.get_input_embeddings().weight
        words = b["content"][:, 2]
        letters = b["ids"][b["letters"][:, 0], b["letters"][:, 2]]

        def planted(content_ids, letter_ids):
            h = taps.states[-2].clone()
            h[b["content"][:, 0], b["content"][:, 1]] = embed[content_ids]
            h[b["letters"][:, 0], b["letters"][:, 1]] = embed[letter_ids]
            return float(readout_loss(model, taps.states[:-2] + (h, taps.states[-1]), b))

        right, wrong = planted(words, letters), planted(words.roll(1), letters.roll(1))
        assert wrong > right + 2, (right, wrong)


def test_endpoint_loss_wants_the_objects_first_and_last_sighting():
    from stopcli.embedded.train import Attention, endpoint_loss

    # 3 frames of 2 cells; object 0 in cell 0 of frames 0-2, object 1 in cell 1 of frames 1-2; query at position 5.
    kept = torch.tensor([[0, 1, 2, 3, 4, 5]])
    cover = torch.tensor([[[1, 0, 1, 0, 1, 0], [0, 0, 0, 1, 0, 1], [0, 0, 0, 0, 0, 0]]], dtype=torch.bool)
    b = {"kept": kept, "cover": cover, "focus": torch.tensor([[0, 5, 1], [0, 5, -1]])}  # about object 1; "how many"
    attn = torch.zeros(1, 4, 6, 6)
    attn[0, 2, 5, 3] = 1.0  # head 2: object 1's first sighting (frame 1)
    attn[0, 3, 5, 5] = 1.0  # head 3: its last (frame 2)
    assert float(endpoint_loss(Attention(attn), b, per_frame=2)) < 1e-5
    swapped = attn[:, [0, 1, 3, 2]]
    assert float(endpoint_loss(Attention(swapped), b, per_frame=2)) > 20
    half = torch.zeros(1, 4, 6, 6)
    half[0, 2, 5, [1, 3]] = 0.5  # half on the background
    half[0, 3, 5, 5] = 1.0
    assert abs(float(endpoint_loss(Attention(half), b, per_frame=2)) - 0.6931) < 1e-3
    b["kept"], b["cover"] = kept[:, :2], cover[:, :, :2]  # pruned: object 1 has no token left, nothing to ask
    assert float(endpoint_loss(Attention(attn), b, per_frame=2, visual=slice(0, 2))) == 0.0


def test_centroids_are_each_objects_centre_per_frame_in_frame_coordinates():
    from stopcli.embedded.train import Batcher

    masks = torch.zeros(1, 2, 2, 5, 9, dtype=torch.bool)  # 2 objects, 2 frames, 5 x 9 pixels
    masks[0, 0, 0, 0:2, 0:2] = True  # top-left 2x2 block: centre at pixel (0.5, 0.5)
    masks[0, 0, 1, 4, 8] = True  # bottom-right pixel
    masks[0, 1, 1, 2, 3:6] = True  # middle row, columns 3-5: centre (4, 2), the frame's centre
    c = Batcher.centroids(masks)
    assert c.shape == (1, 2, 2, 2)
    assert torch.allclose(c[0, 0, 0], torch.tensor([0.5 / 8 * 2 - 1, 0.5 / 4 * 2 - 1]))
    assert torch.allclose(c[0, 0, 1], torch.tensor([1.0, 1.0]))
    assert torch.allclose(c[0, 1, 1], torch.tensor([0.0, 0.0]), atol=1e-6)
    assert torch.equal(c[0, 1, 0], torch.zeros(2))  # not visible


def test_each_cell_takes_the_centre_of_the_object_covering_most_of_it():
    from stopcli.embedded.train import Batcher

    coverage = torch.zeros(1, 2, 2, 3)  # 2 objects, 2 frames, 3 cells
    coverage[0, 0, 0] = torch.tensor([0.9, 0.3, 0.0])
    coverage[0, 1, 0] = torch.tensor([0.0, 0.6, 0.0])  # object 1 covers more of cell 1 than object 0
    coverage[0, 0, 1] = torch.tensor([0.0, 0.0, 0.5])
    centroids = torch.tensor([[[[-0.5, 0.1], [0.7, 0.2]], [[0.3, -0.9], [0.0, 0.0]]]])  # [1, O, T, 2]
    c = Batcher.cell_centres(coverage, centroids)
    assert c.shape == (1, 6, 2)
    assert torch.equal(c[0, 0], centroids[0, 0, 0]) and torch.equal(c[0, 1], centroids[0, 1, 0])
    assert torch.equal(c[0, 5], centroids[0, 0, 1])  # frame 1, cell 2: object 0 in frame 1


@torch.no_grad()
def test_centre_loss_asks_only_object_cells_for_their_objects_centre():
    from stopcli.embedded.train import PositionHead

    head = PositionHead(dim=3, grid=2)
    head.centre.weight.copy_(torch.eye(2, 3))
    head.centre.bias.zero_()
    centres = torch.tensor([[[0.5, -0.5], [0.2, 0.1], [9.0, 9.0]]])  # [1, 3 cells, 2]; the last cell is background
    holds = torch.tensor([[True, True, False]])
    visual = torch.zeros(1, 3, 3)
    visual[0, :2, :2] = centres[0, :2]
    assert float(head.centre_loss(visual, centres, holds)) < 1e-12  # background cells are not asked
    visual[0, 1, 0] = -0.8  # one coordinate off by 1
    assert abs(float(head.centre_loss(visual, centres, holds)) - 1 / 4) < 1e-6
    assert float(head.centre_loss(visual, centres, torch.zeros_like(holds))) == 0.0


@torch.no_grad()
def test_centroid_loss_reads_first_and_last_place_from_heads_2_and_3_and_their_difference():
    from stopcli.embedded.train import CentroidHead

    # 3 frames of 2 cells; object 1 in cell 1 of frames 1-2 (first / last sighting: frames 1 / 2); query at 5.
    kept = torch.tensor([[0, 1, 2, 3, 4, 5]])
    cover = torch.tensor([[[1, 0, 1, 0, 1, 0], [0, 0, 0, 1, 0, 1], [0, 0, 0, 0, 0, 0]]], dtype=torch.bool)
    centroids = torch.zeros(1, 3, 3, 2)
    centroids[0, 1, 1] = torch.tensor([-0.5, 0.25])  # where object 1 is in frame 1 ...
    centroids[0, 1, 2] = torch.tensor([0.5, 0.25])  # ... and in frame 2: it moved right
    b = {"kept": kept, "cover": cover, "focus": torch.tensor([[0, 5, 1], [0, 5, -1]]), "centroids": centroids}
    head = CentroidHead(head_dim=2, dim=4)
    for linear in (head.first, head.last, head.shift):
        linear.bias.zero_()
    head.first.weight.copy_(torch.eye(2))
    head.last.weight.copy_(torch.eye(2))
    head.shift.weight.copy_(torch.eye(2, 4))
    context = torch.zeros(1, 6, 8)  # 4 heads of 2
    context[0, 5, 4:6] = centroids[0, 1, 1]  # head 2 read the first sighting's place
    context[0, 5, 6:8] = centroids[0, 1, 2]  # head 3 the last
    output = torch.zeros(1, 6, 4)
    output[0, 5, :2] = centroids[0, 1, 2] - centroids[0, 1, 1]
    assert float(head.loss(context, output, b, per_frame=2)) < 1e-9
    swapped = context[..., [0, 1, 2, 3, 6, 7, 4, 5]]  # heads 2 and 3 read each other's sighting
    assert abs(float(head.loss(swapped, output, b, per_frame=2)) - 2 * 0.5) < 1e-6  # (1^2 + 0) / 2 for each
    assert abs(float(head.loss(context, -output, b, per_frame=2)) - 2.0) < 1e-6  # moved left instead: (2^2 + 0) / 2
    b["kept"], b["cover"] = kept[:, :2], cover[:, :, :2]  # pruned away: nothing to ask
    assert float(head.loss(context, output, b, per_frame=2)) == 0.0


@torch.no_grad()
def test_coordinate_loss_is_the_places_squared_error_in_a_linear_code():
    from stopcli.embedded.train import PositionHead

    head = PositionHead(dim=2, grid=3)  # 3x3 cells: columns and rows at -1, 0, 1
    head.coords.weight.copy_(torch.eye(2))
    head.coords.bias.zero_()
    cell = torch.arange(18) % 9  # 2 frames
    exact = torch.stack([cell % 3, cell // 3], -1).float() - 1  # [N, 2] column, row
    assert float(head.coordinate_loss(exact[None])) < 1e-9
    assert abs(float(head.coordinate_loss(torch.zeros(1, 18, 2))) - 6 / 9) < 1e-6  # mean of x^2 over -1, 0, 1
    mirrored = exact.clone()
    mirrored[:, 0] *= -1  # left and right swapped
    assert float(head.coordinate_loss(mirrored[None])) > 1


def test_recomputed_attention_is_the_eager_attention_and_trains_the_same():
    """Training keeps SDPA and recomputes the supervised attention rows from each tapped layer's queries and keys:
    they must be transformers' own eager probabilities, and their loss must send the same gradients."""
    from stopcli.embedded.train import Attention, Batcher, TrainConfig, _forward, focus_loss, load_model, option_loss, track_loss

    model, processor = load_model(EMBEDDED)
    model.train()
    batcher = Batcher(processor, model.config, TrainConfig(frames=2, max_turns=6, mc_share=1.0), seed=5)
    b = batcher.batch(4)
    taps = _forward(model, b, layer=2)
    att, visual = taps.attention, taps.visual
    assert sorted(att) == [0, 1, 2, 3]
    lm = model.model.language_model
    lm.set_attn_implementation("eager")
    try:
        eager = model(input_ids=b["ids"], attention_mask=b["mask"], output_attentions=True,
                      pixel_values_videos=b["pixels"]).attentions  # layers x [B, H, L, L]
    finally:
        lm.set_attn_implementation("sdpa")
    f = b["focus"]
    for layer in (0, 2, 3):
        for head in range(4):
            rows = att[layer].rows(head, f[:, 0], f[:, 1])
            assert torch.allclose(rows, eager[layer][f[:, 0], head, f[:, 1]], atol=1e-5)
    assert torch.allclose(att[1].among(1, visual), eager[1][:, 1, visual, visual], atol=1e-5)
    assert torch.allclose(taps.logits, model(input_ids=b["ids"], attention_mask=b["mask"],
                                             pixel_values_videos=b["pixels"]).logits, atol=1e-4)

    def grads(loss):
        model.zero_grad(set_to_none=True)
        loss.backward()
        return torch.cat([p.grad.flatten() for p in lm.layers[2].self_attn.q_proj.parameters()]
                         + [p.grad.flatten() for p in lm.layers[0].self_attn.k_proj.parameters()])

    def total(a, vis):
        return (focus_loss(a[2], b, vis) + option_loss(a[3], b) + option_loss(a[0], b, "letters")
                + track_loss(a[1], b, batcher.pooled ** 2, vis))

    recomputed = grads(total(att, visual))
    lm.set_attn_implementation("eager")
    try:
        out = model(input_ids=b["ids"], attention_mask=b["mask"], output_attentions=True,
                    pixel_values_videos=b["pixels"])
    finally:
        lm.set_attn_implementation("sdpa")
    dense = {i: Attention(a) for i, a in enumerate(out.attentions)}
    reference = grads(total(dense, visual))
    assert recomputed.abs().max() > 0
    assert torch.allclose(recomputed, reference, atol=1e-5, rtol=1e-3)


@torch.no_grad()
def test_identity_loss_wants_the_focus_heads_reading_to_name_the_asked_objects_colour_and_shape():
    from stopcli.embedded.train import GroundingHeads, IdentityHead, load_model

    model, processor = load_model(EMBEDDED)
    heads = GroundingHeads(model, processor.tokenizer, model.config.text_config.hidden_size)
    heads.scale.fill_(20.0)
    embed = model.get_input_embeddings().weight
    word = lambda w: embed[processor.tokenizer.convert_tokens_to_ids(w)]  # noqa: E731
    head = IdentityHead(head_dim=2, dim=embed.shape[1])
    head.linear.bias.zero_()
    # A one-hot reading [1, 0] means "a red circle", [0, 1] "a blue square".
    head.linear.weight.copy_(torch.stack([word("red") + word("circle"), word("blue") + word("square")], 1))
    objects = torch.tensor([[[list(COLORS).index("red"), SHAPES.index("circle")],
                             [list(COLORS).index("blue"), SHAPES.index("square")], [-1, -1]]])  # [1, O, 2]
    cover = torch.tensor([[[1, 0, 1, 0], [0, 1, 0, 1], [0, 0, 0, 0]]], dtype=torch.bool)  # [1, O, n]
    b = {"objects": objects, "cover": cover, "focus": torch.tensor([[0, 5, 1], [0, 5, -1]])}  # about object 1
    context = torch.zeros(1, 6, 8)  # 4 heads of 2
    context[0, 5, :2] = torch.tensor([0.0, 1.0])  # head 0 read the blue square
    right = float(head.loss(context, heads, b))
    wrong = float(head.loss(context[..., [1, 0, 2, 3, 4, 5, 6, 7]], heads, b))  # it read the red circle
    elsewhere = context.clone()
    elsewhere[0, 5, :2] = 0.0
    elsewhere[0, 5, 2:4] = torch.tensor([0.0, 1.0])  # head 1 read it: does not count
    assert right < 0.05 and wrong > right + 5, (right, wrong)
    assert float(head.loss(elsewhere, heads, b)) > right + 1
    b["cover"] = cover.clone()
    b["cover"][0, 1] = False  # object 1 pruned away: nothing to read, nothing asked
    assert float(head.loss(context, heads, b)) == 0.0


def test_every_question_asks_each_template_about_each_object_with_true_answers():
    from stopcli.embedded.world import every_question

    rng = random.Random(7)
    for _ in range(100):
        sc = sample_scene(rng)
        objs = sc.objects
        qas = every_question(sc, rng, mc=0.5)
        assert len({qa.question for qa in qas}) == len(qas)  # no question twice
        by = lambda kind: [qa for qa in qas if qa.type.removesuffix("_mc") == kind]  # noqa: E731
        exist = by("exist")
        assert sorted(qa.answer for qa in exist) == ["no"] * len(objs) + ["yes"] * len(objs)
        present = {f"is there a {o.color} {o.shape} in the video?" for o in objs}
        assert all((qa.question in present) == (qa.answer == "yes") for qa in exist)
        assert len(by("direction")) == len(by("visible_end")) == len(objs) and len(by("count")) == 1
        shapes, colours = [o.shape for o in objs], [o.color for o in objs]
        assert len(by("color")) == sum(shapes.count(s) == 1 for s in shapes)
        assert len(by("shape")) == sum(colours.count(c) == 1 for c in colours)
        for qa in qas:
            if qa.type in ("exist", "count") or qa.target is None:
                continue
            o = objs[qa.target]
            word = qa.answer if qa.options is None else qa.options["abcd".index(qa.answer)]
            truth = dict(color=o.color, shape=o.shape, direction=o.move,
                         visible_end="yes" if o.visible_at(1.0) else "no")[qa.type.removesuffix("_mc")]
            assert word == truth


def test_a_question_among_many_branches_is_computed_as_if_asked_alone():
    """Branch training asks a video many questions in one sequence: each must see the video and itself only, at the
    positions of a first question, i.e. get the same tokens, logits and supervised attention as the question alone."""
    from stopcli.embedded.train import Batcher, TrainConfig, _forward, load_model

    model, processor = load_model(EMBEDDED)
    model.eval()
    cfg = TrainConfig(frames=2, branch_turns=8, mc_share=0.5)
    batcher = Batcher(processor, model.config, cfg, seed=5)
    b = batcher.batch(2)
    assert all(1 < len(q) <= 8 for q in b["qas"])
    with torch.no_grad():
        taps = _forward(model, b, layer=2)
    n_video = b["kept"].shape[1] + 1
    lm = model.model.language_model
    checked = 0
    for row in range(2):
        seg = b["segments"][row]
        for i, qa in enumerate(b["qas"][row]):
            alone = torch.tensor([batcher.turns([qa], True, n_video)[0]])
            where = torch.cat([(seg == 0).nonzero()[:, 0], (seg == i + 1).nonzero()[:, 0]])  # its tokens in the row
            assert b["ids"][row, where].tolist() == alone[0].tolist()
            assert b["positions"][row, where].tolist() == list(range(alone.shape[1]))
            lm.set_attn_implementation("eager")
            try:
                with torch.no_grad():
                    out = model(input_ids=alone, attention_mask=torch.ones_like(alone), output_attentions=True,
                                pixel_values_videos=b["pixels"][row:row + 1])
            finally:
                lm.set_attn_implementation("sdpa")
            assert torch.allclose(taps.logits[row, where], out.logits[0], atol=1e-4)
            query = torch.tensor([int(where[-4])])  # predicts the answer word (then <|im_end|> and a newline)
            for layer in (0, 2, 3):
                rows = taps.attention[layer].rows(0, torch.tensor([row]), query)[0]  # [L] over the whole row
                assert torch.allclose(rows[where], out.attentions[layer][0, 0, -4], atol=1e-5)
                assert float(rows.sum()) == pytest.approx(float(rows[where].sum()), abs=1e-6)  # nothing elsewhere
            checked += 1
    assert checked == sum(len(q) for q in b["qas"])
